"""Stylometric features: exact values on small texts, real differences between authors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from persrm_utils import paths
from persrm_utils.data.corpus import load_c50, load_seed
from persrm_utils.data.stylometry import (
    FUNCTION_WORDS,
    TTR_WINDOW,
    author_profiles,
    feature_names,
    feature_scale,
    feature_table,
    style_distance,
    text_features,
)
from persrm_utils.errors import DataError
from persrm_utils.records import Exemplar


@pytest.fixture(scope="module")
def seed() -> list[Exemplar]:
    return load_seed()


def test_exact_values_on_a_small_text() -> None:
    f = text_features("The cat sat. The dog ran fast!")
    assert f["mean_sentence_len"] == pytest.approx(3.5)
    assert f["sd_sentence_len"] == pytest.approx(0.5)
    assert f["mean_word_len"] == pytest.approx(22 / 7)
    assert f["ttr_150"] == pytest.approx(6 / 7)
    assert f["exclamation_per100"] == pytest.approx(100 / 7)
    assert f["fw_the"] == pytest.approx(200 / 7)
    assert f["comma_per100"] == 0.0 and f["fw_and"] == 0.0


def test_keys_are_the_documented_feature_names() -> None:
    f = text_features("One. Two.")
    assert list(f) == feature_names()
    assert 45 <= len(FUNCTION_WORDS) <= 60 and len(set(FUNCTION_WORDS)) == len(FUNCTION_WORDS)


def test_punctuation_is_counted_as_style_not_spelling() -> None:
    text = (
        'A well-known fact - or so they say -- is this: see http://x.org \u2014 "quoted"; '
        "it's (mostly) true? Yes!\n- a bullet line"
    )
    f = text_features(text)
    n = 22  # A well known fact or so they say is this see http x org quoted it's mostly true Yes
    #         a bullet line  (hyphenated words count as their parts)
    per = 100 / n
    assert f["dash_per100"] == pytest.approx(3 * per)  # " - ", "--", em dash; not hyphen, bullet
    assert f["colon_per100"] == pytest.approx(1 * per)  # not the one in "://"
    assert f["quote_per100"] == pytest.approx(2 * per)  # not the apostrophe
    assert f["semicolon_per100"] == pytest.approx(per)
    assert f["parenthesis_per100"] == pytest.approx(per)
    assert f["question_per100"] == pytest.approx(per)
    assert f["exclamation_per100"] == pytest.approx(per)


def test_numbers_and_uppercase_words() -> None:
    f = text_features("NASA spent 3.5 billion in 1997, up 12%. It said OK. I agree.")
    # tokens: NASA spent 3.5 billion in 1997 up 12% It said OK I agree -> 13
    assert f["number_per100"] == pytest.approx(300 / 13)
    assert f["uppercase_word_per100"] == pytest.approx(200 / 13)  # NASA, OK; not "I"


def test_ttr_uses_a_fixed_window_so_length_does_not_matter() -> None:
    words = [f"w{chr(97 + i % 26)}{chr(97 + i // 26)}" for i in range(200)]
    text = " ".join(words) + "."
    assert text_features(text)["ttr_150"] == 1.0
    assert text_features(text + " " + text)["ttr_150"] == 1.0  # raw TTR would halve
    short = "the the the cat."
    assert text_features(short)["ttr_150"] == pytest.approx(2 / 4)
    assert TTR_WINDOW == 150


def test_empty_text_gives_zeros_not_errors() -> None:
    f = text_features("   ")
    assert set(f.values()) == {0.0}


def test_feature_table_and_profiles(seed: list[Exemplar]) -> None:
    table = feature_table(seed)
    assert table.shape == (48, 2 + len(feature_names()))
    assert list(table.columns[:3]) == ["author_id", "text_id", "mean_sentence_len"]
    profiles = author_profiles(seed)
    assert profiles.shape == (6, 1 + len(feature_names()))
    assert profiles["n_texts"].tolist() == [8] * 6
    assert profiles.index.tolist() == sorted(profiles.index)
    ann = table[table.author_id == "tech_writer"]
    assert profiles.loc["tech_writer", "colon_per100"] == pytest.approx(ann.colon_per100.mean())


def test_output_part_measures_only_the_continuation(seed: list[Exemplar]) -> None:
    full = feature_table(seed[:1])
    out = feature_table(seed[:1], part="output")
    assert out.loc[0, "mean_sentence_len"] == pytest.approx(
        text_features(seed[0].output)["mean_sentence_len"]
    )
    assert not np.isclose(full.loc[0, "number_per100"], out.loc[0, "number_per100"])


def test_seed_authors_differ_where_their_style_says_they_should(seed: list[Exemplar]) -> None:
    p = author_profiles(seed)
    assert p["mean_sentence_len"].idxmax() == "florid_essayist"
    assert p["semicolon_per100"].idxmax() == "florid_essayist"
    assert (p["exclamation_per100"] + p["question_per100"]).nlargest(2).index.tolist() == [
        "sports_commentator",
        "chatty_blogger",
    ]
    assert p["colon_per100"].idxmax() == "tech_writer"
    assert p["parenthesis_per100"].idxmax() == "cautious_academic"
    assert p["number_per100"].idxmax() == "wire_reporter"
    assert p["fw_may"].idxmax() == "cautious_academic"


def test_style_distance_basics(seed: list[Exemplar]) -> None:
    table = feature_table(seed)
    scale = feature_scale(table)
    a, b = table.iloc[0], table.iloc[20]
    assert style_distance(a, a, scale) == 0.0
    assert style_distance(a, b, scale) == pytest.approx(style_distance(b, a, scale))
    assert style_distance(a, b, scale) > 0
    # z-scoring: doubling one feature's spread halves its contribution
    one = pd.Series({"mean_sentence_len": 2.0})
    fa, fb = {"mean_sentence_len": 10.0}, {"mean_sentence_len": 14.0}
    assert style_distance(fa, fb, one) == pytest.approx(2.0)
    assert style_distance(fa, fb, one * 2) == pytest.approx(1.0)


def test_style_distance_ignores_constant_and_non_feature_columns() -> None:
    scale = pd.Series({"mean_sentence_len": 1.0, "comma_per100": 0.0, "n_texts": 3.0})
    a = {"mean_sentence_len": 1.0, "comma_per100": 5.0}
    b = {"mean_sentence_len": 4.0, "comma_per100": 0.0}
    assert style_distance(a, b, scale) == pytest.approx(3.0)


def test_style_distance_missing_feature_is_a_data_error() -> None:
    with pytest.raises(DataError, match="mean_word_len"):
        style_distance({}, {"mean_word_len": 1.0}, pd.Series({"mean_word_len": 1.0}))


def test_held_out_seed_texts_are_nearest_to_their_own_author(seed: list[Exemplar]) -> None:
    train = [e for e in seed if int(e.text_id[-2:]) <= 6]
    test = [e for e in seed if int(e.text_id[-2:]) > 6]
    profiles = author_profiles(train)
    scale = feature_scale(feature_table(train))
    hits = 0
    for ex in test:
        f = text_features(f"{ex.prompt}\n{ex.output}")
        dist = {a: style_distance(f, profiles.loc[a], scale) for a in profiles.index}
        hits += min(dist, key=dist.__getitem__) == ex.author_id
    assert hits >= 10  # of 12; chance is 2


def _c50_root() -> Path:
    root = paths.find_c50()
    if root is None:
        pytest.fail(
            "Reuters C50 not found: set PERSRM_C50_DIR to the folder that holds C50train/ "
            "(see data/README.md).",
            pytrace=False,
        )
    return root


def test_all_of_c50_train_gets_finite_features() -> None:
    """Every C50 training text is measured (no NaN from an empty sentence or a zero division).

    How long it takes is a benchmark's business, not a test's: a timed assertion failed here
    when the machine was busy, which says nothing about the code.
    """
    exemplars = load_c50(_c50_root(), split="train")
    table = feature_table(exemplars)
    assert table.shape[0] == 2500 and table.author_id.nunique() == 50
    assert np.isfinite(table[feature_names()].to_numpy()).all()
