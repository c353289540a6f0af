"""The run page leads with the personalization figures, each on its own line with n."""

from __future__ import annotations

import json

import pytest

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


def test_the_page_gives_each_form_of_the_cross_author_set_signed_paired_figures(tmp_path):
    """Run cpu-long-d's exemplar effect is -0.046 with the opening and +0.237 without: on the
    page the sign is the news, so effects and leads are written signed, and the plot follows."""
    eval_dir, figures = tmp_path / "eval", tmp_path / "figures"
    eval_dir.mkdir()
    figures.mkdir()
    effect = {"n_pairs": 120, "effect": 0.237, "ci_low": 0.167, "ci_high": 0.308,
              "accuracy_k": 0.746, "accuracy_0": 0.508}  # fmt: skip
    lead = {"n_pairs": 120, "difference": 0.287, "ci_low": 0.188, "ci_high": 0.388}
    rows = [
        {"form": "no opening", "model": "SFT + GRPO", "n_pairs": 120, "accuracy": 0.746,
         "ci_low": 0.683, "ci_high": 0.804, "exemplar_effect": effect, "final_minus": None},
        {"form": "no opening", "model": "stylometric (char n-grams)", "n_pairs": 120,
         "accuracy": 0.458, "ci_low": 0.375, "ci_high": 0.55, "exemplar_effect": None,
         "final_minus": lead},
    ]  # fmt: skip
    cross = {"items": 120, "splits": ["test"], "k": 1, "rows": rows}
    data = {"user_swap_items": 100, "final": "SFT + GRPO", "models": {}, "cross_author_set": cross}
    (eval_dir / "personalization.json").write_text(json.dumps(data))
    lines = _personalization_section(eval_dir)
    assert "**No opening**" in lines and "**With the opening**" not in lines
    assert (
        "- SFT + GRPO: accuracy 0.746 [0.683, 0.804], n=120; exemplar effect +0.237 "
        "[+0.167, +0.308], n=120 (k = 0: 0.508)" in lines
    )
    assert any(
        line.endswith("SFT + GRPO minus this +0.287 [+0.188, +0.388], n=120") for line in lines
    )
    assert "![cross-author set](figures/05_cross_author_set.png)" not in lines  # no plot file
    (figures / "05_cross_author_set.png").write_bytes(b"png")
    assert "![cross-author set](figures/05_cross_author_set.png)" in _personalization_section(
        eval_dir
    )


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
    from persrm_utils.evaluate.personalization import (
        CROSS_SET,
        NGRAMS,
        measure_personalization,
    )
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
    # each measurement is timed: run cpu-long-b could not say what the likelihood cost
    timed = {f"{SFT}, user-swap", f"{GRPO}, user-swap", f"{LIKELIHOOD_NAME}, user-swap",
             f"{GRPO}, {CROSS_SET}"}  # fmt: skip
    assert set(summary["seconds"]) == timed and min(summary["seconds"].values()) > 0
    # the cross-author set: the final judge with its exemplars and with none, n-grams beside
    cross = summary["cross_author_set"]
    n_set = 2 * cross["items"]  # two forms per item
    assert cross["items"] == profile.eval_cross_author_pairs and cross["k"] == profile.max_exemplars
    for name in (GRPO, f"{GRPO}, {CROSS_SET}, k=0"):
        assert len(extra[name if name.endswith("k=0") else f"{name}, {CROSS_SET}"]) == 2 * n_set
    assert len(extra[f"{NGRAMS}, {CROSS_SET}"]) == 2 * n_set
    rows = {(r["form"], r["model"]): r for r in cross["rows"]}
    judges = (GRPO, f"{GRPO}, k=0", NGRAMS)
    assert set(rows) == {(f, m) for f in ("opening", "no opening") for m in judges}
    for form in ("opening", "no opening"):
        final, ngrams = rows[(form, GRPO)], rows[(form, NGRAMS)]
        assert final["n_pairs"] == cross["items"] and final["final_minus"] is None
        effect = final["exemplar_effect"]
        assert effect["effect"] == pytest.approx(effect["accuracy_k"] - effect["accuracy_0"])
        assert effect["accuracy_k"] == pytest.approx(final["accuracy"])
        assert effect["accuracy_0"] == pytest.approx(rows[(form, f"{GRPO}, k=0")]["accuracy"])
        diff = ngrams["final_minus"]
        assert diff["difference"] == pytest.approx(final["accuracy"] - ngrams["accuracy"])
        assert ngrams["exemplar_effect"] is None  # n-grams have no profile at k = 0

    cheap = profile.override(
        eval_user_swap_sft=False, eval_likelihood=False, eval_cross_author_pairs=0
    )
    summary, extra, _ = measure_personalization(cheap, run, pairs, by_id, judged, 2)
    assert list(summary["models"]) == [GRPO, NGRAMS] and f"{SFT}, user-swap" not in extra
    assert list(summary["seconds"]) == [f"{GRPO}, user-swap"]
    assert summary["cross_author_set"] is None and not any(CROSS_SET in key for key in extra)


def test_the_cross_author_set_rows_pair_each_judge_with_its_k0_run_and_the_final_judge():
    """Two judges' side-by-side intervals overlap long after their paired difference is clear
    (run cpu-long-d: 0.794 and 0.618 on 34 cross_author pairs, intervals overlapping), so each
    row carries the paired exemplar effect and the final judge's paired lead."""
    from persrm_utils.data.cross_author_set import cross_author_set
    from persrm_utils.evaluate.personalization import (
        cross_author_set_summary,
        cross_author_set_table,
    )
    from persrm_utils.judge.format import label
    from persrm_utils.judge.judging import Judgement
    from persrm_utils.records import Exemplar

    exemplars = [
        Exemplar(author_id=f"au{a}", text_id=f"au{a}/{t}", prompt=f"Opening {a}.{t}.",
                 output=f"Text {t} by {a}.", source="seed", meta={"split": "test"})
        for a in range(4)
        for t in range(5)
    ]  # fmt: skip
    pairs = cross_author_set(exemplars, "test", seed=0)

    def verdicts(right) -> list[Judgement]:
        out = []
        for i, p in enumerate(pairs):
            for swap in (False, True):
                truth = label(p, swap)
                wrong = "B" if truth == "A" else "A"
                letter = truth if right(i, p) else wrong
                out.append(Judgement(p.pair_id, p.negative_type, swap, truth, letter, "ok", letter))
        return out

    hidden = lambda p: p.meta["form"] == "no opening"  # noqa: E731
    judged = {
        "final": verdicts(lambda i, p: True),
        # with no exemplar: right when the opening is shown, right on every other hidden one
        "final, k=0": verdicts(lambda i, p: not hidden(p) or (i // 2) % 2 == 0),
        "other": verdicts(lambda i, p: hidden(p)),
    }
    summary = cross_author_set_summary(judged, pairs, "final")
    rows = {(r["form"], r["model"]): r for r in summary}
    judges = ("final", "final, k=0", "other")
    assert set(rows) == {(f, m) for f in ("opening", "no opening") for m in judges}
    assert rows[("no opening", "final, k=0")]["final_minus"] is None  # that is the effect
    assert rows[("opening", "final")]["exemplar_effect"]["effect"] == 0.0
    hidden_effect = rows[("no opening", "final")]["exemplar_effect"]
    assert hidden_effect["accuracy_0"] == 0.5 and hidden_effect["effect"] == 0.5
    assert hidden_effect["ci_low"] > 0 and hidden_effect["n_pairs"] == 20
    assert rows[("opening", "other")]["final_minus"]["difference"] == 1.0
    assert rows[("no opening", "other")]["final_minus"]["difference"] == 0.0
    assert rows[("opening", "other")]["exemplar_effect"] is None
    assert rows[("opening", "other")]["accuracy"] == 0.0
    table = cross_author_set_table(summary)
    line = table[(table["form"] == "no opening") & (table["judge"] == "final")].iloc[0]
    assert line["exemplar effect"].startswith("+0.500 [+") and line["pairs"] == 20
