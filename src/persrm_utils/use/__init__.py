"""Notebook 06 and after: the trained judge as a tool, exporting it, best-of-N with it.

The names below are what the notebooks use; everything else is in the modules of this package.
"""

from persrm_utils.use.best_of_n import (
    PersRMReward,
    bon_tasks,
    bt_real_preferred,
    collect_drafts,
    comparison_plan,
    draft_requests,
    policy_rows,
    random_picks,
    records,
    run_tournaments,
    style_distances,
    stylometric_picks,
    summary_table,
)

__all__ = [
    "PersRMReward",
    "bon_tasks",
    "bt_real_preferred",
    "collect_drafts",
    "comparison_plan",
    "draft_requests",
    "policy_rows",
    "random_picks",
    "records",
    "run_tournaments",
    "style_distances",
    "stylometric_picks",
    "summary_table",
]
