"""Run folders and the series as data: manifests, stages, the first and last lines of every
notebook, the notebook runner, measured figures.

The names below are what the notebooks use; everything else is in the modules of this package.
"""

from persrm_utils.run.session import start_stage

__all__ = ["start_stage"]
