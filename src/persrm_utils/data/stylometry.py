"""Measured style: the "personal factors" a reward model is asked to infer, as numbers.

PersRM-R1 asks the model to reason about an author's tone, diction, sentence length and
punctuation before it judges. These features make the same factors measurable, for three uses:
plots that show a learner how authors differ (notebook 01), grounding offline reasoning traces in
facts about the exemplars (docs/design.md §6), and a classic stylometric baseline. Every feature
is a rate or an average, never a raw count, so a 60-word blog post and a 900-word news story are
comparable.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from itertools import islice
from typing import Literal

import numpy as np
import pandas as pd

from persrm_utils.data.textsplit import sentence_spans
from persrm_utils.errors import DataError
from persrm_utils.records import Exemplar

#: Tokens used for the type-token ratio. TTR falls as a text gets longer (each new word is more
#: likely a repeat), so raw TTR mostly measures length; a fixed window measures vocabulary.
TTR_WINDOW = 150

#: About 50 frequent English function words. Their rates are a classic authorship signal: writers
#: use them unconsciously and consistently, and they barely depend on topic.
# fmt: off
FUNCTION_WORDS: tuple[str, ...] = (
    "the", "a", "an", "and", "but", "or", "if", "because", "so", "of", "in", "on", "at", "to",
    "for", "with", "by", "from", "about", "as", "into", "than", "that", "which", "who", "this",
    "these", "it", "its", "i", "you", "we", "they", "he", "she", "my", "our", "your", "their",
    "is", "was", "be", "been", "have", "has", "had", "will", "would", "can", "could", "may",
    "might", "not", "no", "very", "just", "however", "perhaps",
)
# fmt: on

#: Punctuation counted per 100 words. "dash" is an em/en dash, "--" or a spaced hyphen inside a
#: line (a hyphen inside a word is spelling and one that opens a line is a bullet, not style);
#: "quote" counts double quotes only, because a single quote is usually an apostrophe; a colon in
#: "://" belongs to a URL and is not counted.
PUNCTUATION: tuple[str, ...] = (
    "comma", "semicolon", "colon", "dash", "exclamation", "question", "parenthesis", "quote",
)  # fmt: skip

_SIMPLE_PUNCT = {
    "comma": ",",
    "semicolon": ";",
    "exclamation": "!",
    "question": "?",
    "parenthesis": "(",
}
_DASHES = ("\u2014", "\u2013", "--", " - ", " -\n", "\t- ")
_WORD_RE = r"[A-Za-z]+(?:['\u2019][A-Za-z]+)*"
_NUMBER_RE = r"\d+(?:[.,:]\d+)*%?"
_TOKEN = re.compile(f"{_WORD_RE}|{_NUMBER_RE}")
_WORD = re.compile(_WORD_RE)
_NUMBER = re.compile(_NUMBER_RE)
#: A whole word in capitals, 2+ letters (NASA, IT'S; not I, not the NAS of NASA's).
_UPPER_WORD = re.compile(
    r"(?<![A-Za-z])(?<![A-Za-z]['\u2019])[A-Z]{2,}(?:['\u2019][A-Z]+)*(?![A-Za-z]|['\u2019][A-Za-z])"
)
_PER = 100.0
_FW_KEYS = tuple(f"fw_{w}" for w in FUNCTION_WORDS)


def _sentence_lengths(norm: str, spans: list[tuple[int, int]]) -> list[int]:
    """Words per sentence (whitespace-separated), over the splitter's sentences.

    Whitespace words rather than tokens: counting tokens per sentence costs a regex pass per
    sentence and changes the numbers only where a sentence holds a lone dash or bullet mark.
    """
    lengths = [len(norm[start:end].split()) for start, end in spans]
    return [n for n in lengths if n > 0]


def _punctuation_counts(text: str) -> dict[str, int]:
    """Counts of each PUNCTUATION mark (str.count where a single character is enough: fast)."""
    counts = {name: text.count(char) for name, char in _SIMPLE_PUNCT.items()}
    counts["colon"] = text.count(":") - text.count("://")
    counts["dash"] = sum(text.count(d) for d in _DASHES)
    counts["quote"] = sum(text.count(q) for q in '"\u201c\u201d')
    return counts


def feature_names() -> list[str]:
    """Column order of :func:`text_features` (stable, so tables from different runs line up)."""
    base = ["mean_sentence_len", "sd_sentence_len", "mean_word_len", "ttr_150"]
    punct = [f"{name}_per100" for name in PUNCTUATION]
    rest = ["number_per100", "uppercase_word_per100"]
    return base + punct + rest + [f"fw_{w}" for w in FUNCTION_WORDS]


def _window_types(text: str) -> float:
    """Type-token ratio over the first TTR_WINDOW tokens (see TTR_WINDOW for why a window)."""
    window = [m.group(0).lower() for m in islice(_TOKEN.finditer(text), TTR_WINDOW)]
    return len(set(window)) / len(window) if window else 0.0


def text_features(text: str) -> dict[str, float]:
    """Style features of one text: sentence/word length, vocabulary, punctuation, function words.

    All are averages or rates per 100 words so texts of different lengths compare fairly. The
    standard deviation of sentence length is the population one (0 for a single sentence).
    Tokens are words (letters, inner apostrophes) and numbers; each count is one regex or
    ``str.count`` pass in C, which keeps all of C50 train to a couple of seconds.
    """
    norm, spans = sentence_spans(text)
    words = _WORD.findall(norm)
    n_words = len(words)
    n = n_words + len(_NUMBER.findall(norm))
    per = _PER / n if n else 0.0  # turns a count into a rate per 100 tokens (0 for no tokens)
    lengths = _sentence_lengths(norm, spans)
    out: dict[str, float] = {
        "mean_sentence_len": float(np.mean(lengths)) if lengths else 0.0,
        "sd_sentence_len": float(np.std(lengths)) if lengths else 0.0,
        "mean_word_len": sum(map(len, words)) / n_words if n_words else 0.0,
        "ttr_150": _window_types(norm),
    }
    punct = _punctuation_counts(norm)
    for name in PUNCTUATION:
        out[f"{name}_per100"] = punct[name] * per
    out["number_per100"] = (n - n_words) * per
    out["uppercase_word_per100"] = len(_UPPER_WORD.findall(norm)) * per
    lower = Counter(map(str.lower, words))
    for w, key in zip(FUNCTION_WORDS, _FW_KEYS, strict=True):
        out[key] = lower[w] * per
    return out


def _exemplar_text(ex: Exemplar, part: Literal["full", "output"]) -> str:
    """The text whose style is measured: the whole piece, or only the continuation."""
    return ex.output if part == "output" else f"{ex.prompt}\n{ex.output}"


def feature_table(
    exemplars: Iterable[Exemplar], part: Literal["full", "output"] = "full"
) -> pd.DataFrame:
    """One row per text: ``author_id``, ``text_id`` and every feature of :func:`feature_names`.

    ``part="output"`` measures only the continuations, which is what a candidate response is
    compared on later; ``"full"`` (default) uses everything the author wrote.
    """
    rows = [
        {
            "author_id": ex.author_id,
            "text_id": ex.text_id,
            **text_features(_exemplar_text(ex, part)),
        }
        for ex in exemplars
    ]
    return pd.DataFrame(rows, columns=["author_id", "text_id", *feature_names()])


def author_profiles(
    exemplars: Iterable[Exemplar], part: Literal["full", "output"] = "full"
) -> pd.DataFrame:
    """One row per author (index ``author_id``): the mean of each feature, plus ``n_texts``."""
    table = feature_table(exemplars, part)
    if table.empty:
        raise DataError("no exemplars to profile", "load some texts first.")
    grouped = table.drop(columns="text_id").groupby("author_id", sort=True)
    profiles = grouped.mean()
    profiles.insert(0, "n_texts", grouped.size().astype(int))
    return profiles


def feature_scale(table: pd.DataFrame) -> pd.Series:
    """Per-feature standard deviation of a feature table: the yardstick of style_distance."""
    return table[feature_names()].std(ddof=1)


def style_distance(
    a_features: Mapping[str, float], b_features: Mapping[str, float], scale: pd.Series
) -> float:
    """Euclidean distance between two feature sets after dividing each feature by its spread.

    Without scaling, features with big numbers (sentence length, ~25) would drown those with
    small ones (semicolons per 100 words, ~0.3). Features with zero or missing spread carry no
    information about the population and are left out, as are columns of ``scale`` that are not
    style features (e.g. ``n_texts`` when the scale came from ``author_profiles(...).std()``).
    """
    names = [k for k in feature_names() if k in scale.index]
    usable = [k for k in names if math.isfinite(float(scale[k])) and float(scale[k]) > 0]
    missing = [k for k in usable if k not in a_features or k not in b_features]
    if missing:
        raise DataError(
            f"feature(s) missing for style_distance: {', '.join(missing[:5])}",
            "compute both sides with text_features() (or the same feature table) as the scale.",
        )
    diffs = np.array([(a_features[k] - b_features[k]) / scale[k] for k in usable], dtype=float)
    return float(np.sqrt(np.sum(diffs**2)))
