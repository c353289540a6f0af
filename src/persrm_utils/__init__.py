"""persrm_utils: the helper package behind the PersRM-R1 tutorial series.

The notebooks in ``notebooks/`` show the few lines that matter and call this package for the rest,
so that every step a notebook teaches is also importable, testable and runnable from the command
line (``persrm``).
"""

from persrm_utils.errors import (
    ConfigError,
    DataError,
    ManifestError,
    MissingInputsError,
    ModelUnavailableError,
    PersRMError,
)

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DataError",
    "ManifestError",
    "MissingInputsError",
    "ModelUnavailableError",
    "PersRMError",
    "__version__",
]
