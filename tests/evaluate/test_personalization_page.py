"""The run page leads with the personalization figures, each on its own line with n."""

from __future__ import annotations

import json

from persrm_utils.evaluate.results_page import _personalization_section
from persrm_utils.profiles import get_profile
from persrm_utils.train.commands import sft_pairs


def test_the_page_states_user_swap_and_exemplar_effect_as_value_interval_n(tmp_path):
    data = {
        "user_swap_items": 100,
        "unseen_pairs": 110,
        "final": "SFT + GRPO",
        "models": {
            "SFT + GRPO": {
                "exemplar_effect": {"n_pairs": 110, "effect": 0.026, "ci_low": -0.02,
                                    "ci_high": 0.07},
                "user_swap": {"n_pairs": 100, "accuracy": 0.5, "ci_low": 0.49, "ci_high": 0.52,
                              "both_right": 0.0},
            }
        },
    }  # fmt: skip
    (tmp_path / "personalization.json").write_text(json.dumps(data))
    lines = _personalization_section(tmp_path)
    assert (
        "- user-swap accuracy: 0.500 [0.490, 0.520], n=100 (right under both users: 0.000)" in lines
    )
    assert "- exemplar effect: 0.026 [-0.020, 0.070], n=110" in lines
    assert any(line.startswith("LEARNED, BUT NOT THE PERSON") for line in lines)
    assert "Not measured" in " ".join(_personalization_section(tmp_path / "none"))


def test_sft_user_swap_items_are_added_only_when_the_profile_asks(tmp_path):
    from persrm_utils.records import Exemplar

    by_id = {
        f"au{a}/{t}": Exemplar(author_id=f"au{a}", text_id=f"au{a}/{t}", prompt="O.",
                               output=f"text {a} {t}.", source="seed", meta={"split": "train"})
        for a in range(3)
        for t in range(3)
    }  # fmt: skip
    assert sft_pairs([], get_profile("smoke"), by_id) == []
    added = sft_pairs([], get_profile("smoke", sft_user_swap_items=4), by_id)
    assert len(added) == 8 and {p.negative_type for p in added} == {"user_swap"}


def test_the_sft_judge_is_measured_on_user_swap_only_when_the_profile_asks(
    tmp_path, monkeypatch, runs_root
):
    """Run cpu-f measured only the final judge (SFT + GRPO) on the user-swap test, so a run
    could not tell a lever that SFT learned and GRPO lost from one that never took:
    ``eval_user_swap_sft`` judges the same items with the SFT adapter too."""
    from smoke_run import build_smoke_run

    from persrm_utils.evaluate.held_out import GRPO, SFT
    from persrm_utils.evaluate.likelihood import LIKELIHOOD_NAME
    from persrm_utils.evaluate.personalization import NGRAMS, measure_personalization
    from persrm_utils.models.loader import add_lora, load_model
    from persrm_utils.records import Exemplar, Pair, read_jsonl
    from persrm_utils.train.trainer import ADAPTER

    monkeypatch.setenv("PERSRM_CACHE_DIR", str(tmp_path / "cache"))
    profile = get_profile("smoke", max_completion_length=4)
    run = build_smoke_run("swap").path
    loaded = load_model(profile)
    add_lora(loaded, profile)
    for folder in ("sft", "grpo"):
        loaded.model.save_pretrained(run / folder / ADAPTER)
    del loaded
    by_id = {e.text_id: e for e in read_jsonl(run / "exemplars.jsonl", Exemplar)}
    pairs = read_jsonl(run / "pairs" / "test.jsonl", Pair)
    judged = {SFT: [], GRPO: []}  # the main judging is notebook 05's; here only user-swap runs

    summary, extra, swap = measure_personalization(profile, run, pairs, by_id, judged, 2)
    assert summary["final"] == GRPO
    assert list(summary["models"]) == [SFT, GRPO, NGRAMS, LIKELIHOOD_NAME]
    pmi = summary["models"][LIKELIHOOD_NAME]
    assert pmi["exemplar_effect"] is None and pmi["user_swap"]["n_pairs"] == 2
    verdicts = extra[f"{LIKELIHOOD_NAME}, user-swap"]
    assert len(verdicts) == 2 * len(swap) and verdicts[0].completion.startswith("pmi A=")
    for name in (SFT, GRPO):
        assert summary["models"][name]["user_swap"]["n_pairs"] == 2
        assert summary["models"][name]["exemplar_effect"] is None  # no k = 0 run was given
        assert len(extra[f"{name}, user-swap"]) == 2 * len(swap)  # both orders of each pair
    assert len(swap) == 4  # 2 items x 2 users
    # each user-swap measurement is timed: run cpu-long-b could not say what the likelihood cost
    timed = {f"{SFT}, user-swap", f"{GRPO}, user-swap", f"{LIKELIHOOD_NAME}, user-swap"}
    assert set(summary["seconds"]) == timed and min(summary["seconds"].values()) > 0

    cheap = profile.override(eval_user_swap_sft=False, eval_likelihood=False)
    summary, extra, _ = measure_personalization(cheap, run, pairs, by_id, judged, 2)
    assert list(summary["models"]) == [GRPO, NGRAMS] and f"{SFT}, user-swap" not in extra
    assert list(summary["seconds"]) == [f"{GRPO}, user-swap"]
