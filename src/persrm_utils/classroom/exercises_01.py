"""The exercises of notebook 01 (Exemplars): each check recomputes the answer itself."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from persrm_utils.data.corpus import load_own_texts
from persrm_utils.data.stylometry import (
    author_profiles,
    feature_scale,
    feature_table,
    style_distance,
    text_features,
)
from persrm_utils.data.textsplit import sentences
from persrm_utils.errors import DataError
from persrm_utils.records import Exemplar, read_jsonl

if TYPE_CHECKING:
    import pandas as pd

    from persrm_utils.run.folders import RunFolder

from persrm_utils.classroom.checks import (
    Checked,
    _mapping,
    _not_answered,
    _number,
    _ok,
    _run,
    _wrong,
)

# 01 · Exemplars
# ----------------------------------------------------------------------------------------------


def check_01_warmup(answer: Mapping[str, Any] | None) -> Checked:
    """A text of the learner's own and its mean sentence length, counted by hand.

    Verifies ``answer["mean_sentence_len"]`` against ``text_features(answer["text"])`` (within
    0.01): the feature is the average number of whitespace-separated words per sentence.
    """
    if answer is None:
        return _not_answered("write 2-4 sentences, count words per sentence, average them.")

    got = _mapping(
        answer,
        ["text", "mean_sentence_len"],
        "{'text': 'Two short sentences. Here is the second.', 'mean_sentence_len': 3.5}",
    )
    text = got["text"]
    if not isinstance(text, str) or len(sentences(text)) < 2:
        _wrong(
            "answer['text'] should be a text with at least two sentences.",
            "write two or more sentences ending in '.', '!' or '?'.",
        )
    value = _number(got["mean_sentence_len"], "answer['mean_sentence_len']")
    expected = text_features(text)["mean_sentence_len"]
    if abs(value - expected) > 0.01:
        lengths = [len(s.split()) for s in sentences(text)]
        _wrong(
            f"text_features measures {expected:.2f}, you have {value:.2f}. Its sentences "
            f"have {lengths} words.",
            "split into sentences (the package treats 'Mr.' or '3.5' as no sentence end), "
            "count the whitespace-separated words of each, and take the mean.",
        )
    return _ok(f"{len(sentences(text))} sentences, {expected:.2f} words each on average.")


def _profiles(run: RunFolder) -> pd.DataFrame:
    """Author means of every feature, recomputed from the run's exemplars.jsonl."""

    return author_profiles(read_jsonl(run.path / "exemplars.jsonl", Exemplar))


def _top(column: pd.Series) -> list[str]:
    """Every author with the column's maximum (ties are all right answers)."""
    return sorted(column[column == column.max()].index)


def check_01_core(answer: Mapping[str, str] | None, run: RunFolder | Path | str) -> Checked:
    """The authors with the longest mean sentences and with the most numbers per 100 words.

    Verifies the two author ids against the author profiles recomputed from the run's
    exemplars.jsonl (the same numbers as factors.csv); any author tied for first is right.
    """
    if answer is None:
        return _not_answered("pd.read_csv(factors.csv, index_col=0), then idxmax() per column.")
    got = _mapping(
        answer,
        ["longest_sentences", "most_numbers"],
        "{'longest_sentences': 'author_a', 'most_numbers': 'author_b'}",
    )
    profiles = _profiles(_run(run))
    for key, column in (
        ("longest_sentences", "mean_sentence_len"),
        ("most_numbers", "number_per100"),
    ):
        best = _top(profiles[column])
        if got[key] not in best:
            _wrong(
                f"answer['{key}']: the highest {column} is {profiles[column].max():.2f}, by "
                f"{' / '.join(best)}; you named {got[key]!r}.",
                f"factors.csv has one row per author; sort it by {column}.",
            )
    return _ok(
        f"{got['longest_sentences']} writes the longest sentences, {got['most_numbers']} "
        "uses the most numbers."
    )


def _closest_author(own: Sequence[Any], run: RunFolder) -> tuple[str, dict[str, float]]:
    """The corpus author nearest to ``own`` texts in scaled style distance, and all distances."""

    corpus = read_jsonl(run.path / "exemplars.jsonl", Exemplar)
    me = author_profiles(own).iloc[0].to_dict()
    mine = {e.author_id for e in own}
    others = author_profiles([e for e in corpus if e.author_id not in mine])
    scale = feature_scale(feature_table(corpus))
    dist = {a: style_distance(me, row.to_dict(), scale) for a, row in others.iterrows()}
    return min(dist, key=lambda a: (dist[a], a)), dist


def check_01_stretch(answer: Mapping[str, Any] | None, run: RunFolder | Path | str) -> Checked:
    """A JSONL file of one's own texts, written by hand, and the corpus author closest in style.

    Verifies that ``load_own_texts`` reads ``answer["file"]`` (one author, at least three texts
    of two or more sentences) and that ``answer["closest_author"]`` is the corpus author whose
    mean features are nearest to those texts' mean, in :func:`style_distance` with the spread
    of the run's feature table as the scale.
    """
    if answer is None:
        return _not_answered('one json.dumps({"author_id", "text_id", "text"}) per line.')

    got = _mapping(
        answer, ["file", "closest_author"], "{'file': path, 'closest_author': 'author_id'}"
    )
    try:
        own = load_own_texts(got["file"])
    except DataError as err:
        _wrong(
            f"load_own_texts cannot read your file: {err}",
            "each line is one JSON object with author_id, text_id and text.",
        )
    authors = {e.author_id for e in own}
    if len(authors) != 1 or len(own) < 3:
        _wrong(
            f"The file holds {len(own)} text(s) by {len(authors)} author(s); expected three "
            "or more texts by one author.",
            "use the same author_id on every line and a new text_id for each text.",
        )
    closest, dist = _closest_author(own, _run(run))
    if got["closest_author"] != closest:
        ranked = ", ".join(f"{a} {d:.1f}" for a, d in sorted(dist.items(), key=lambda x: x[1]))
        _wrong(
            f"The closest author is {closest!r}, not {got['closest_author']!r} (distances: "
            f"{ranked}).",
            "author_profiles() of your texts and of the corpus, feature_scale(feature_table("
            "corpus)) as the scale, style_distance() for each author.",
        )
    return _ok(
        f"{len(own)} texts by {authors.pop()!r}; closest in style: {closest} "
        f"(distance {dist[closest]:.2f})."
    )


# ----------------------------------------------------------------------------------------------
