"""Notebook 05: held-out evaluation, metrics with honest intervals, baselines, the results page.

The names below are what the notebooks use; everything else is in the modules of this package.
"""

from persrm_utils.evaluate.baselines import (
    bt_baseline,
    bt_rows,
    load_bt,
    random_baseline,
    stylometric_baseline,
    train_bt,
)
from persrm_utils.evaluate.held_out import eval_pairs, judge_with_adapters, predictions_records
from persrm_utils.evaluate.metrics import (
    accuracy_table,
    exemplar_effect,
    format_accuracy,
    format_interval,
    predictions_frame,
    user_swap_summary,
)
from persrm_utils.evaluate.personalization import (
    cross_author_set_table,
    exemplar_effect_by_type,
    measure_personalization,
)
from persrm_utils.evaluate.results_page import write_results_page
from persrm_utils.evaluate.signal import signal_grid, signal_table

__all__ = [
    "accuracy_table",
    "bt_baseline",
    "bt_rows",
    "cross_author_set_table",
    "eval_pairs",
    "exemplar_effect",
    "exemplar_effect_by_type",
    "format_accuracy",
    "format_interval",
    "judge_with_adapters",
    "load_bt",
    "measure_personalization",
    "predictions_frame",
    "predictions_records",
    "random_baseline",
    "signal_grid",
    "signal_table",
    "stylometric_baseline",
    "train_bt",
    "user_swap_summary",
    "write_results_page",
]
