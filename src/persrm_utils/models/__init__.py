"""One loader for every profile: the tiny random model, SmolLM2-135M from PyPI, Qwen2.5 through
Unsloth.

The names below are what the notebooks use; everything else is in the modules of this package.
"""

from persrm_utils.models.loader import load_model, release_memory

__all__ = ["load_model", "release_memory"]
