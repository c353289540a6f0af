"""Notebooks 03 and 04: reasoning traces, SFT, GRPO with its rewards, and the two stage commands.

The names below are what the notebooks use; everything else is in the modules of this package.
"""

from persrm_utils.train.commands import grpo_pairs, load_stage_inputs, make_traces, sft_pairs
from persrm_utils.train.grpo import CURVES, grpo_rows, load_policy, preflight, train_grpo
from persrm_utils.train.rewards import (
    advantages,
    correctness_reward,
    format_reward,
    group_signal,
    reward_funcs,
)
from persrm_utils.train.sft import adapter_tensor_norms, load_with_adapter, train_sft
from persrm_utils.train.teacher import describe_traces, teacher_traces
from persrm_utils.train.traces import (
    accept_teacher,
    fit_to_budget,
    teacher_max_new_tokens,
    teacher_requests,
    to_sft_rows,
)
from persrm_utils.train.user_swap_items import choose_user_swap_items

__all__ = [
    "CURVES",
    "accept_teacher",
    "adapter_tensor_norms",
    "advantages",
    "choose_user_swap_items",
    "correctness_reward",
    "describe_traces",
    "fit_to_budget",
    "format_reward",
    "group_signal",
    "grpo_pairs",
    "grpo_rows",
    "load_policy",
    "load_stage_inputs",
    "load_with_adapter",
    "make_traces",
    "preflight",
    "reward_funcs",
    "sft_pairs",
    "teacher_max_new_tokens",
    "teacher_requests",
    "teacher_traces",
    "to_sft_rows",
    "train_grpo",
    "train_sft",
]
