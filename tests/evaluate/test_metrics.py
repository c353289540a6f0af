"""Metrics on hand-made predictions whose right answers are known in advance."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from persrm_utils.errors import DataError
from persrm_utils.evaluate.metrics import (
    PREDICTION_COLUMNS,
    SUMMARY_COLUMNS,
    accuracy_table,
    bootstrap_ci,
    pair_scores,
    predictions_frame,
)
from persrm_utils.judge.judging import Judgement
from persrm_utils.records import Pair


def _labels(i: int) -> tuple[str, str]:
    """Labels of pair i in (original, swapped) order; pairs alternate which letter is real."""
    return ("A", "B") if i % 2 == 0 else ("B", "A")


def frame(verdicts, model: str = "m", negative_type: str = "style_mimic") -> pd.DataFrame:
    """A predictions frame from [(letter_original, letter_swapped), ...], one tuple per pair."""
    rows = []
    for i, letters in enumerate(verdicts):
        for swap, label, letter in zip((False, True), _labels(i), letters, strict=True):
            valid = letter in ("A", "B")
            rows.append(
                {
                    "model": model,
                    "pair_id": f"p{i:04d}",
                    "swap": swap,
                    "label": label,
                    "letter": letter if valid else None,
                    "valid": valid,
                    "correct": valid and letter == label,
                    "negative_type": negative_type,
                    "k": 1 + i % 3,
                    "seen": "unseen",
                    "split": "test",
                }
            )
    return pd.DataFrame(rows, columns=list(PREDICTION_COLUMNS))


def perfect(n: int, start: int = 0) -> list[tuple[str, str]]:
    """Right verdicts for pairs start..start+n-1 (their position in the list given to frame)."""
    return [_labels(i) for i in range(start, start + n)]


def wrong(n: int, start: int = 0) -> list[tuple[str, str]]:
    """Wrong, but swap-consistent, verdicts for pairs start..start+n-1."""
    return [tuple("B" if x == "A" else "A" for x in _labels(i)) for i in range(start, start + n)]


def one_row(df: pd.DataFrame, **kw) -> pd.Series:
    table = accuracy_table(df, **kw)
    assert len(table) == 1
    return table.iloc[0]


def test_always_a_judge_is_at_chance_fully_biased_and_never_consistent():
    row = one_row(frame([("A", "A")] * 20))
    assert row.accuracy == 0.5
    assert row.position_bias == 1.0
    assert row.swap_consistency == 0.0
    assert row.parse_failure_rate == 0.0
    # every pair scores exactly 0.5, so resampling pairs cannot move the mean
    assert (row.ci_low, row.ci_high) == (0.5, 0.5)


def test_perfect_judge():
    row = one_row(frame(perfect(20)))
    assert (row.accuracy, row.position_bias, row.swap_consistency) == (1.0, 0.5, 1.0)
    assert row.n_pairs == 20
    assert list(accuracy_table(frame(perfect(4))).columns) == ["model", *SUMMARY_COLUMNS]


def test_always_wrong_judge_is_consistent_but_at_zero():
    row = one_row(frame(wrong(10)))
    assert (row.accuracy, row.swap_consistency, row.position_bias) == (0.0, 1.0, 0.5)


def test_invalid_outputs_count_as_wrong_as_parse_failures_and_as_inconsistent():
    # pair 0: both orders invalid; pair 1: one valid (right) and one invalid; pairs 2-3 perfect
    verdicts = [(None, None), (_labels(1)[0], None), _labels(2), _labels(3)]
    row = one_row(frame(verdicts))
    assert row.accuracy == pytest.approx((0 + 0.5 + 1 + 1) / 4)
    assert row.parse_failure_rate == pytest.approx(3 / 8)
    assert row.swap_consistency == pytest.approx(2 / 4)
    # position bias over the 5 valid verdicts only: pair 1 said "B", pairs 2-3 said A,B and B,A
    assert row.position_bias == pytest.approx(2 / 5)


def test_no_valid_verdict_at_all_gives_nan_position_bias():
    row = one_row(frame([(None, None)] * 3))
    assert row.accuracy == 0.0 and row.parse_failure_rate == 1.0 and row.swap_consistency == 0.0
    assert math.isnan(row.position_bias)


def test_ci_contains_the_estimate_and_narrows_with_more_pairs():
    pattern = [_labels(0), ("A", "A"), wrong(1, start=2)[0], _labels(3)]  # pair scores 1, .5, 0, 1
    small = one_row(frame(pattern * 5))
    large = one_row(frame(pattern * 50))
    for row in (small, large):
        assert row.ci_low <= row.accuracy <= row.ci_high
        assert row.ci_low < row.ci_high
    assert small.accuracy == large.accuracy == pytest.approx(0.625)
    assert large.ci_high - large.ci_low < 0.6 * (small.ci_high - small.ci_low)


def _as_row_level(df: pd.DataFrame) -> pd.DataFrame:
    """The same rows, each pretending to be its own pair: what row-level resampling assumes."""
    return df.assign(pair_id=[f"{p}-{s}" for p, s in zip(df.pair_id, df.swap, strict=True)])


def test_bootstrap_resamples_pairs_not_rows():
    # A position-biased judge: each pair is right in exactly one order. Pair-level scores are
    # all 0.5, so the interval has zero width; resampling the 40 rows would give a wide one.
    biased = frame([("A", "A")] * 20)
    pair_level = one_row(biased)
    row_level = one_row(_as_row_level(biased))
    assert pair_level.ci_high - pair_level.ci_low == 0.0
    assert row_level.ci_high - row_level.ci_low > 0.2
    assert pair_level.accuracy == row_level.accuracy

    # Orders that agree (both right or both wrong): the 2 rows of a pair carry one pair's
    # worth of information, so the honest interval is wider than the row-level one.
    agree = frame(perfect(15) + wrong(15, start=15))
    assert one_row(agree).ci_high - one_row(agree).ci_low > 1.2 * (
        one_row(_as_row_level(agree)).ci_high - one_row(_as_row_level(agree)).ci_low
    )


def test_same_seed_same_interval_other_seed_other_interval():
    df = frame([_labels(0), ("A", "A"), wrong(1, start=2)[0], _labels(3)] * 7)
    first = accuracy_table(df, n_boot=500, seed=3)
    again = accuracy_table(df, n_boot=500, seed=3)
    pd.testing.assert_frame_equal(first, again)
    other = accuracy_table(df, n_boot=500, seed=5)
    # (deterministic: these two seeds happen to give different percentiles on this input)
    assert (first.ci_low.item(), first.ci_high.item()) != (
        other.ci_low.item(),
        other.ci_high.item(),
    )
    assert first.accuracy.item() == other.accuracy.item()


def test_bootstrap_ci_edge_cases():
    assert all(math.isnan(x) for x in bootstrap_ci(np.array([])))
    assert bootstrap_ci(np.array([0.5])) == (0.5, 0.5)
    with pytest.raises(DataError, match="n_boot"):
        bootstrap_ci(np.array([1.0, 0.0]), n_boot=0)


def test_breakdowns_by_group_and_model_are_sorted_and_counted():
    df = pd.concat(
        [
            frame(perfect(6), model="b", negative_type="style_random"),
            frame([("A", "A")] * 4, model="a", negative_type="cross_author"),
            frame(wrong(3), model="a", negative_type="style_random").assign(
                pair_id=lambda d: d.pair_id + "x"
            ),
        ]
    )
    table = accuracy_table(df, by=["negative_type"])
    assert list(table.columns) == ["model", "negative_type", *SUMMARY_COLUMNS]
    assert table[["model", "negative_type", "n_pairs"]].values.tolist() == [
        ["a", "cross_author", 4],
        ["a", "style_random", 3],
        ["b", "style_random", 6],
    ]
    assert table.accuracy.tolist() == [0.5, 0.0, 1.0]
    by_k = accuracy_table(frame(perfect(6)), by=["k"])
    assert by_k.k.tolist() == [1, 2, 3] and by_k.n_pairs.tolist() == [2, 2, 2]
    overall = accuracy_table(df)
    assert overall.model.tolist() == ["a", "b"] and overall.n_pairs.tolist() == [7, 6]


def test_a_pair_with_one_order_is_scored_but_left_out_of_consistency():
    df = frame([_labels(0), _labels(1)])
    df = df[~((df.pair_id == "p0001") & df.swap)]
    scores = pair_scores(df)
    assert scores.n_orders.tolist() == [2, 1]
    assert scores.consistent.iloc[0] == 1.0 and math.isnan(scores.consistent.iloc[1])
    row = one_row(df)
    assert row.accuracy == 1.0 and row.swap_consistency == 1.0


def test_unknown_breakdown_column_and_empty_frame():
    with pytest.raises(DataError, match="lacks column"):
        accuracy_table(frame(perfect(2)), by=["author"])
    empty = accuracy_table(frame([]), by=["k"])
    assert empty.empty and list(empty.columns) == ["model", "k", *SUMMARY_COLUMNS]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(*[st.sampled_from(["A", "B", None])] * 2), min_size=1, max_size=30))
def test_table_invariants_for_any_judge(verdicts):
    df = frame(verdicts)
    row = one_row(df, n_boot=200)
    assert 0.0 <= row.ci_low <= row.ci_high <= 1.0
    assert 0.0 <= row.swap_consistency <= 1.0 and 0.0 <= row.parse_failure_rate <= 1.0
    # with both orders present, debiased accuracy is just the share of correct rows
    assert row.accuracy == pytest.approx(df.correct.mean())
    assert row.parse_failure_rate == pytest.approx(1 - df.valid.mean())


# ----------------------------------------------------------------------------------------------
# predictions_frame
# ----------------------------------------------------------------------------------------------


def _pair(pair_id: str, split: str, k: int, position: str = "A") -> Pair:
    return Pair(
        pair_id=pair_id,
        split=split,
        author_id="alice",
        text_id=f"{pair_id}-t",
        prompt="An opening.",
        chosen="The real text.",
        rejected="A negative.",
        negative_type="cross_author",
        exemplar_ids=[f"e{i}" for i in range(k)],
        chosen_position=position,
        negative_source="real:x",
        seen_author=split == "seen_test",
        meta={"k": k},
    )


def _judgement(pair: Pair, swap: bool, letter: str | None) -> Judgement:
    label = pair.chosen_position if not swap else ("B" if pair.chosen_position == "A" else "A")
    return Judgement(
        pair_id=pair.pair_id,
        negative_type=pair.negative_type,
        swap=swap,
        label=label,
        letter=letter,
        reason="ok" if letter else "no_answer_tag",
        completion="...",
    )


def test_predictions_frame_rows_and_columns():
    pairs = [_pair("x1", "test", 2, "A"), _pair("x2", "seen_test", 0, "B")]
    judgements = [
        _judgement(pairs[0], False, "A"),
        _judgement(pairs[0], True, "A"),
        _judgement(pairs[1], False, None),
        _judgement(pairs[1], True, "A"),
    ]
    df = predictions_frame(judgements, pairs, "judge")
    assert list(df.columns) == list(PREDICTION_COLUMNS)
    assert df.correct.tolist() == [True, False, False, True]
    assert df.valid.tolist() == [True, True, False, True]
    assert df.k.tolist() == [2, 2, 0, 0]
    assert df.seen.tolist() == ["unseen", "unseen", "seen", "seen"]
    assert set(df.model) == {"judge"}
    assert predictions_frame(judgements, pairs, "judge", k=1).k.tolist() == [1] * 4
    by_seen = accuracy_table(df, by=["seen"])
    assert by_seen.seen.tolist() == ["seen", "unseen"] and by_seen.accuracy.tolist() == [0.5, 0.5]


def test_predictions_frame_refuses_unknown_and_duplicate_pairs():
    pair = _pair("x1", "test", 1)
    with pytest.raises(DataError, match="no matching pair"):
        predictions_frame([_judgement(_pair("zz", "test", 1), False, "A")], [pair], "m")
    with pytest.raises(DataError, match="more than once"):
        predictions_frame([_judgement(pair, False, "A")] * 2, [pair], "m")


# ----------------------------------------------------------------------------------------------
# Personalization: the exemplar effect (paired) and the user-swap test
# ----------------------------------------------------------------------------------------------


def test_exemplar_effect_is_the_paired_difference_with_an_interval_around_it():
    from persrm_utils.evaluate.metrics import exemplar_effect

    with_k = frame(perfect(12) + [("A", "A")] * 8)  # 12 right (1.0), 8 at 0.5: 0.8
    without = frame(perfect(4) + [("A", "A")] * 16)  # 4 right, 16 at 0.5: 0.6
    out = exemplar_effect(with_k, without, seed=0)
    assert out["n_pairs"] == 20
    assert out["accuracy_k"] == pytest.approx(0.8) and out["accuracy_0"] == pytest.approx(0.6)
    assert out["effect"] == pytest.approx(0.2)
    assert out["ci_low"] <= out["effect"] <= out["ci_high"]
    assert out["ci_low"] > 0  # every pair's difference is 0 or +0.5: never below 0


def test_identical_judges_have_no_exemplar_effect_and_a_zero_width_interval():
    from persrm_utils.evaluate.metrics import exemplar_effect

    same = frame(perfect(5) + wrong(5) + [("A", "A")] * 5)
    out = exemplar_effect(same, same.copy())
    assert (out["effect"], out["ci_low"], out["ci_high"]) == (0.0, 0.0, 0.0)


def test_exemplar_effect_needs_common_pairs():
    from persrm_utils.evaluate.metrics import exemplar_effect

    other = frame(perfect(3)).assign(pair_id=lambda d: d["pair_id"] + "x")
    with pytest.raises(DataError, match="no pair in common"):
        exemplar_effect(frame(perfect(3)), other)


def _swap_items(n: int):
    from persrm_utils.data.user_swap import user_swap_pairs
    from persrm_utils.records import Exemplar

    exemplars = [
        Exemplar(author_id=f"au{a}", text_id=f"au{a}/{t}", prompt="An opening.",
                 output=("x" * (3 + t + 5 * a)) + " end.", source="seed",
                 meta={"split": "test"})
        for a in range(3)
        for t in range(4)
    ]  # fmt: skip
    return user_swap_pairs(exemplars, "test", n_pairs=n, seed=0)


def _verdicts(pairs, pick):
    from persrm_utils.judge.format import label, responses

    js = []
    for p in pairs:
        for swap in (False, True):
            a, b = responses(p, swap)
            js.append(Judgement(p.pair_id, p.negative_type, swap, label(p, swap),
                                pick(p, swap, a, b), "ok", ""))  # fmt: skip
    return js


def test_an_exemplar_blind_judge_scores_exactly_half_and_never_right_under_both_users():
    from persrm_utils.evaluate.metrics import user_swap_summary

    pairs = _swap_items(12)
    longer = _verdicts(pairs, lambda p, s, a, b: "A" if len(a) >= len(b) else "B")
    out = user_swap_summary(predictions_frame(longer, pairs, "longer"), pairs)
    assert out["n_pairs"] == 12
    assert out["accuracy"] == 0.5 and (out["ci_low"], out["ci_high"]) == (0.5, 0.5)
    assert out["both_right"] == 0.0


def test_a_judge_that_reads_the_person_scores_one_and_is_right_under_both():
    from persrm_utils.evaluate.metrics import user_swap_summary
    from persrm_utils.judge.format import label

    pairs = _swap_items(12)
    oracle = _verdicts(pairs, lambda p, s, a, b: label(p, s))
    out = user_swap_summary(predictions_frame(oracle, pairs, "oracle"), pairs)
    assert out["accuracy"] == 1.0 and out["both_right"] == 1.0
    invalid = _verdicts(pairs, lambda p, s, a, b: None)
    out = user_swap_summary(predictions_frame(invalid, pairs, "mute"), pairs)
    assert out["accuracy"] == 0.0 and out["parse_failure_rate"] == 1.0


def test_user_swap_difference_is_paired_by_item_and_refuses_other_items():
    """Runs cpu-f and cpu-long-a judged the same 100 user-swap items; their side-by-side
    intervals overlapped (0.480 [0.448, 0.512] and 0.535 [0.502, 0.562]) while the paired
    difference did not include zero: a recipe change is read per item, not by two intervals."""
    from persrm_utils.evaluate.metrics import user_swap_difference
    from persrm_utils.judge.format import label

    pairs = _swap_items(12)
    oracle = predictions_frame(_verdicts(pairs, lambda p, s, a, b: label(p, s)), pairs, "o")
    blind = predictions_frame(
        _verdicts(pairs, lambda p, s, a, b: "A" if len(a) >= len(b) else "B"), pairs, "b"
    )
    out = user_swap_difference(oracle, blind, pairs)
    assert out["n_items"] == 12 and out["difference"] == 0.5
    assert (out["ci_low"], out["ci_high"]) == (0.5, 0.5)  # every item moves by the same 0.5
    assert (out["accuracy_x"], out["accuracy_y"]) == (1.0, 0.5)
    assert user_swap_difference(blind, blind, pairs)["difference"] == 0.0
    first_half = blind[blind["pair_id"].isin({p.pair_id for p in pairs[:12]})]
    assert user_swap_difference(oracle, first_half, pairs)["n_items"] == 6  # common items only
    with pytest.raises(DataError, match="no matching user-swap pair"):
        user_swap_difference(oracle, blind.assign(pair_id="elsewhere"), pairs)


def test_compare_user_swap_names_the_file_and_the_models_it_has(tmp_path):
    from persrm_utils.evaluate.personalization import compare_user_swap
    from persrm_utils.profiles import get_profile

    (tmp_path / "eval").mkdir()
    (tmp_path / "exemplars.jsonl").write_text("")
    row = {"model": "SFT + GRPO, user-swap", "pair_id": "p", "negative_type": "user_swap",
           "swap": False, "label": "A", "letter": "A", "reason": "ok"}  # fmt: skip
    (tmp_path / "eval" / "personalization_predictions.jsonl").write_text(json.dumps(row) + "\n")
    smoke = get_profile("smoke")
    with pytest.raises(
        DataError, match=r"no user-swap verdicts of model 'SFT'.*one of: SFT \+ GRPO"
    ):
        compare_user_swap(tmp_path, "SFT", tmp_path, "SFT + GRPO", smoke)
    with pytest.raises(DataError, match="run notebook 05"):
        compare_user_swap(tmp_path, "SFT + GRPO", tmp_path / "none", "SFT + GRPO", smoke)


def test_format_interval_says_n_and_refuses_tiny_samples():
    from persrm_utils.evaluate.metrics import format_interval

    assert format_interval(0.12, 0.04, 0.2, 100) == "0.120 [0.040, 0.200], n=100"
    assert format_interval(0.12, 0.04, 0.2, 6) == "0.120 (n=6, too few for an interval)"
    assert format_interval(float("nan"), 0, 0, 0) == "not measured"
