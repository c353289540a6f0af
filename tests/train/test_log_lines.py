"""The training output a learner reads: one short line per step, not the trainer's raw dicts."""

from __future__ import annotations

from persrm_utils.profiles import get_profile
from persrm_utils.train.log_lines import format_log
from persrm_utils.train.sft import train_sft


def test_a_log_line_shows_the_step_and_the_values_that_matter():
    sft = {"loss": 6.2351, "grad_norm": 0.1223, "learning_rate": 0.0009045, "entropy": 6.23,
           "num_tokens": 2740.0, "mean_token_accuracy": 0.01733, "epoch": 0.0588}  # fmt: skip
    assert format_log(sft, 3, 17) == (
        "step 3/17 · loss 6.235 · token acc 0.01733 · grad norm 0.1223 · lr 0.0009045"
    )
    grpo = {"loss": 0.0, "reward": 0.5, "reward_std": 0.25, "kl": 0.0012,
            "clip_ratio/region_mean": 0.0, "completions/clipped_ratio": 1.0}  # fmt: skip
    assert format_log(grpo, 2, 0) == (
        "step 2 · loss 0 · reward 0.5 · reward sd 0.25 · kl 0.0012 · clipped (PPO) 0 · truncated 1"
    )
    held_out = {"eval_trained_types_loss": 0.6931, "eval_trained_types_runtime": 3.1}
    assert format_log(held_out, 5, 31) == "step 5/31 · eval trained types loss 0.6931"
    done = {"train_runtime": 41.23, "train_loss": 6.2291, "epoch": 1.0}
    assert format_log(done, 17, 17) == "done: 17 steps in 41.2 s, mean loss 6.229"


def test_training_prints_log_lines_instead_of_dicts(tmp_path, monkeypatch, capsys):
    """transformers' PrinterCallback printed every log as a dict of a dozen string values
    ({'loss': '6.235', 'grad_norm': '0.1223', 'learning_rate': '0', 'entropy': ...}) into the
    executed notebooks 03, 04 and 05."""
    monkeypatch.setenv("PERSRM_CACHE_DIR", str(tmp_path / "cache"))
    rows = [{"messages": [{"role": "user", "content": f"Pair {i}: A or B?"},
                          {"role": "assistant", "content": "<answer>[[A]]</answer>"}]}
            for i in range(4)]  # fmt: skip
    train_sft(get_profile("smoke", sft_max_steps=2), rows, tmp_path / "sft", resume=False)
    out = capsys.readouterr().out
    assert "step 1/2 · loss " in out and "step 2/2 · loss " in out
    assert "done: 2 steps in " in out
    assert "{'loss'" not in out and "'grad_norm'" not in out
