"""Is this machine ready? The doctor, the pins, the Colab cell, clean notebooks, the offline
wheelhouse (notebook 00).

The names below are what the notebooks use; everything else is in the modules of this package.
"""

from persrm_utils.setup.doctor import render, run_checks
from persrm_utils.setup.import_order import unsloth_first

__all__ = ["render", "run_checks", "unsloth_first"]
