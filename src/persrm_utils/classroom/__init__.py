"""The exercises of every notebook (one module per notebook), knob experiments and the notebooks'
plots.

Every notebook closes, before its recap, with three exercises (warm-up, core, stretch). The learner
puts the answer in ``answer`` and calls the check, e.g. ``check_05_core(answer, session.path)``.
A check:

* prints one line, ``OK: ...``, and returns True when the answer is right;
* prints ``Not answered yet: <hint>`` and returns False when ``answer`` is None. It never raises
  then: ``persrm run`` executes the notebooks with the exercises unanswered, and they must pass;
* raises :class:`ExerciseError` when the answer is wrong, saying what was expected and how to get
  there. The error is an ``AssertionError``, so a wrong solution fails a notebook run and CI.

A check never compares with a number written down here: it recomputes the expected value from the
run folder or with the package's own functions. Whatever a run produced (another profile, another
seed, a changed filter), the check agrees with that run. The solutions live in
``notebooks/NN_name_solutions.ipynb`` and open the run folder with :func:`solution_run`, which
only reads.

The names below are what the notebooks use; everything else is in the modules of this package.
"""

from persrm_utils.classroom.checks import (
    GROUP_04,
    MODEL_03,
    REWARDS_04,
    ExerciseError,
    solution_run,
)
from persrm_utils.classroom.exercises_00 import check_00_core, check_00_stretch, check_00_warmup
from persrm_utils.classroom.exercises_01 import check_01_core, check_01_stretch, check_01_warmup
from persrm_utils.classroom.exercises_02 import check_02_core, check_02_stretch, check_02_warmup
from persrm_utils.classroom.exercises_03 import (
    check_03_core,
    check_03_lora,
    check_03_nf4,
    check_03_stretch,
    check_03_warmup,
)
from persrm_utils.classroom.exercises_04 import (
    check_04_core,
    check_04_stretch,
    check_04_surrogate,
    check_04_warmup,
)
from persrm_utils.classroom.exercises_05 import check_05_core, check_05_stretch, check_05_warmup
from persrm_utils.classroom.exercises_06 import check_06_core, check_06_stretch, check_06_warmup
from persrm_utils.classroom.knobs import (
    KNOB_MEASURES,
    TYPE_MODEL_05,
    check_05_knob_k,
    check_05_knob_type,
    check_knob,
    curve,
    experiments,
    grpo_experiment,
    knob_effect,
    knob_values,
    read_experiment,
    sft_experiment,
)

__all__ = [
    "GROUP_04",
    "KNOB_MEASURES",
    "MODEL_03",
    "REWARDS_04",
    "TYPE_MODEL_05",
    "ExerciseError",
    "check_00_core",
    "check_00_stretch",
    "check_00_warmup",
    "check_01_core",
    "check_01_stretch",
    "check_01_warmup",
    "check_02_core",
    "check_02_stretch",
    "check_02_warmup",
    "check_03_core",
    "check_03_lora",
    "check_03_nf4",
    "check_03_stretch",
    "check_03_warmup",
    "check_04_core",
    "check_04_stretch",
    "check_04_surrogate",
    "check_04_warmup",
    "check_05_core",
    "check_05_knob_k",
    "check_05_knob_type",
    "check_05_stretch",
    "check_05_warmup",
    "check_06_core",
    "check_06_stretch",
    "check_06_warmup",
    "check_knob",
    "curve",
    "experiments",
    "grpo_experiment",
    "knob_effect",
    "knob_values",
    "read_experiment",
    "sft_experiment",
    "solution_run",
]
