"""The opening-sentence splitter: literal cases that trip naive splitters, plus properties."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from persrm_utils.data.textsplit import (
    AMBIGUOUS,
    COMPANY_SUFFIXES,
    NEVER_FINAL,
    sentence_spans,
    sentences,
    split_opening,
)
from persrm_utils.errors import DataError


def _ink(text: str) -> str:
    """The non-space characters of a text, in order (what splitting must never change)."""
    return "".join(text.split())


# ----------------------------------------------------------------------------------------------
# Literal examples
# ----------------------------------------------------------------------------------------------

OPENINGS = [
    ("Mr. Smith went to Washington. He said hi.", "Mr. Smith went to Washington."),
    ("Dr. Jones and Mrs. Lee met. They talked.", "Dr. Jones and Mrs. Lee met."),
    (
        "The U.S. economy grew 3.5 percent. Analysts were surprised.",
        "The U.S. economy grew 3.5 percent.",
    ),
    ("Growth was strong in the U.S. The euro zone lagged.", "Growth was strong in the U.S."),
    (
        "Chrysler Corp. Chairman Bob Eaton spoke. He was brief.",
        "Chrysler Corp. Chairman Bob Eaton spoke.",
    ),
    ("Shares of Acme Inc. fell. The drop was small.", "Shares of Acme Inc. fell."),
    ("Profits rose at Acme Corp. But costs rose too.", "Profits rose at Acme Corp."),
    ("It opened on Jan. 5 in Paris. Crowds came.", "It opened on Jan. 5 in Paris."),
    (
        "Bring fruit, e.g. apples or pears, to class. Thanks.",
        "Bring fruit, e.g. apples or pears, to class.",
    ),
    ("Use a solvent, i.e. Water. Then stir.", "Use a solvent, i.e. Water."),
    ("Item No. 4 was sold. Item 5 was not.", "Item No. 4 was sold."),
    ("J. Smith and K. Jones wrote it. It sold well.", "J. Smith and K. Jones wrote it."),
    ('He said "stop." Then he left.', 'He said "stop."'),
    ('"Why now?" she asked. Nobody knew.', '"Why now?" she asked.'),
    ("Wait... what happened? Nobody knows.", "Wait... what happened?"),
    ("It was over... The crowd went home.", "It was over..."),
    ("Really?! Yes. Fine.", "Really?!"),
    ("Rates hit 4.75% on Monday. Bonds fell.", "Rates hit 4.75% on Monday."),
    ("(This is an aside.) The text goes on.", "(This is an aside.)"),
    ("He paid $3.50 for it. Cheap.", "He paid $3.50 for it."),
]


@pytest.mark.parametrize(("text", "prompt"), OPENINGS)
def test_opening_sentence(text: str, prompt: str) -> None:
    got_prompt, continuation = split_opening(text)
    assert got_prompt == prompt
    assert continuation == text[len(prompt) :].strip()


def test_headline_line_without_full_stop_is_the_opening() -> None:
    text = "Acme wins big order\nAcme Ltd said on Monday it had won an order. Shares rose."
    assert split_opening(text) == (
        "Acme wins big order",
        "Acme Ltd said on Monday it had won an order. Shares rose.",
    )


def test_newline_ends_a_sentence_but_hard_wraps_are_joined() -> None:
    text = (
        "East European markets moved\nhigher this week, as key foreign investors\n"
        "continued to push prices higher.\nBourses in Warsaw and\nBudapest led the way."
    )
    assert sentences(text) == [
        "East European markets moved higher this week, as key foreign investors continued to "
        "push prices higher.",
        "Bourses in Warsaw and Budapest led the way.",
    ]


def test_company_suffix_on_the_next_line_does_not_start_a_sentence() -> None:
    # C50 breaks lines after "Cos." even when the company name goes on.
    text = "Philip Morris Cos.\nInc. Chief Executive Geoffrey Bible spoke on Thursday.\nMore."
    assert (
        split_opening(text)[0]
        == "Philip Morris Cos. Inc. Chief Executive Geoffrey Bible spoke on Thursday."
    )


def test_abbreviation_at_line_end_ends_a_sentence() -> None:
    text = "The deal was struck with Acme Corp.\nGM said it was pleased.\nThe end."
    assert sentences(text)[:2] == ["The deal was struck with Acme Corp.", "GM said it was pleased."]


def test_whitespace_is_normalised_and_layout_of_continuation_kept() -> None:
    text = "  \r\n  First   sentence\r\n here.  Second one.  \r\n\r\nThird paragraph.   \r\n"
    prompt, continuation = split_opening(text)
    assert prompt == "First sentence here."
    assert continuation == "Second one.\n\nThird paragraph."


def test_blank_line_ends_a_sentence_even_before_lower_case() -> None:
    assert sentences("a list heading\n\nsecond paragraph starts small.") == [
        "a list heading",
        "second paragraph starts small.",
    ]


def test_bullets_are_separate_sentences() -> None:
    text = "Do this first:\n- open the console\n- Click Save.\nDone."
    assert sentences(text) == ["Do this first:", "- open the console", "- Click Save.", "Done."]
    assert split_opening(text)[0] == "Do this first:"


def test_punctuation_only_pieces_stay_with_their_neighbour() -> None:
    assert sentences("- - - -\nHONG KONG stocks rose. Then fell.") == [
        "- - - - HONG KONG stocks rose.",
        "Then fell.",
    ]


@pytest.mark.parametrize(
    "text",
    ["Just one sentence.", "One sentence with Mr. Smith in it.", "No full stop at all", "  x  "],
)
def test_one_sentence_is_refused_with_a_fix(text: str) -> None:
    with pytest.raises(DataError) as info:
        split_opening(text)
    assert "only one sentence" in str(info.value)
    assert "at least two sentences" in str(info.value)


@pytest.mark.parametrize("text", ["", "   \n\t "])
def test_empty_text_is_refused(text: str) -> None:
    with pytest.raises(DataError, match="empty"):
        split_opening(text)


def test_sentence_spans_point_into_the_normalised_text() -> None:
    norm, spans = sentence_spans("  One.\r\nTwo!  Three?  ")
    assert norm == "One.\nTwo!  Three?"
    assert [norm[a:b].strip() for a, b in spans] == ["One.", "Two!", "Three?"]


# ----------------------------------------------------------------------------------------------
# Properties
# ----------------------------------------------------------------------------------------------

_SPECIAL = set(NEVER_FINAL) | set(AMBIGUOUS) | set(COMPANY_SUFFIXES)
_word = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=2, max_size=8).filter(
    lambda w: w not in _SPECIAL
)
_end = st.sampled_from([".", "!", "?", "...", '."', '?"', ".)", "!!"])
_gap = st.sampled_from([" ", "  ", "\n", "\n\n", " \n ", "\t"])


@st.composite
def _sentence(draw: st.DrawFn) -> str:
    words = draw(st.lists(_word, min_size=2, max_size=12))
    return " ".join([words[0].capitalize(), *words[1:]]) + draw(_end)


@st.composite
def _document(draw: st.DrawFn) -> tuple[list[str], str]:
    sents = draw(st.lists(_sentence(), min_size=2, max_size=6))
    text = sents[0]
    for s in sents[1:]:
        text += draw(_gap) + s
    return sents, draw(_gap) + text + draw(_gap)


@settings(max_examples=150, deadline=None)
@given(_document())
def test_proper_sentences_are_found_exactly(doc: tuple[list[str], str]) -> None:
    sents, text = doc
    assert sentences(text) == sents
    prompt, continuation = split_opening(text)
    assert prompt == sents[0]
    assert prompt and continuation
    assert _ink(continuation) == _ink("".join(sents[1:]))


_messy = st.lists(
    st.sampled_from(
        [*"abcXYZ019 .,;:!?\"'()-\n\r\t…", "U.S.", " Mr. ", "3.5", "...", " Inc.", "\u201d"]
    ),
    max_size=120,
).map("".join)


@settings(max_examples=300, deadline=None)
@given(_messy)
def test_splitting_never_loses_or_reorders_characters(text: str) -> None:
    assert _ink("".join(sentences(text))) == _ink(text)
    try:
        prompt, continuation = split_opening(text)
    except DataError:
        assert len(sentences(text)) < 2
        return
    assert prompt.strip() == prompt and continuation.strip() == continuation
    assert prompt and continuation
    assert _ink(prompt + continuation) == _ink(text)
    assert sentences(text)[0] == prompt


@settings(max_examples=100, deadline=None)
@given(_document())
def test_splitting_is_stable_under_resplitting(doc: tuple[list[str], str]) -> None:
    _, text = doc
    prompt, continuation = split_opening(text)
    assert split_opening(prompt + " " + continuation) == (prompt, continuation)
