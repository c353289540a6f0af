"""Split a text into its opening sentence (the prompt) and the rest (the author's continuation).

Every exemplar and every pair in the series starts here: the opening sentence is what a reward
model is shown, the rest is what it must recognise as the author's. A bad cut teaches the wrong
thing (a prompt that ends at "Mr." or a continuation that starts mid-sentence), so this is a small
rule-based splitter written for the texts we actually have: news articles (Reuters C50, one
paragraph per line, headlines without full stops, a few hard-wrapped files), essays, blog posts,
bullet lists. It never rewrites the text: the prompt and continuation together hold exactly the
input's non-space characters, in order; only whitespace is tidied.

Rules, in order of priority:

* a blank line always ends a sentence (paragraph break);
* ``.``, ``!``, ``?`` or an ellipsis, with any closing quotes or brackets, followed by space, ends a
  sentence unless the next word starts in lower case (``e.g. the``, ``"Stop," he said``);
* a full stop after a known abbreviation (``Mr.``, ``e.g.``) never ends a sentence; after an
  ambiguous one (``U.S.``, ``Corp.``, ``Jan.``) it does only before a typical sentence-opening
  word (``The``, ``But``...) or at the end of a line; after an initial (``J.``) only before a
  typical opening word; a company suffix (``Inc.``, ``Ltd``) never opens a sentence;
* a line break ends a sentence even without a full stop (headlines, datelines, list items),
  unless the line is a hard wrap: the next line starts in lower case, or this line ends with a
  comma or an unfinished phrase (``of``, ``the``, ``and``...).
"""

from __future__ import annotations

import re

from persrm_utils.errors import DataError

#: Abbreviations whose full stop never ends a sentence: they are followed by what they qualify.
# fmt: off
NEVER_FINAL = frozenset((
    "mr", "mrs", "ms", "messrs", "dr", "prof", "sen", "rep", "gov", "gen", "col", "lt", "capt",
    "sgt", "cmdr", "adm", "rev", "hon", "mt", "vs", "cf", "approx", "fig", "figs", "eg",
    "ie", "e.g", "i.e", "nos", "vol", "pp", "wm", "chas", "thos", "jas", "geo",
))
# fmt: on

#: Abbreviations that end sentences as often as not ("... said Chrysler Corp. The company ...").
# fmt: off
AMBIGUOUS = frozenset((
    "corp", "inc", "ltd", "co", "plc", "bros", "jr", "sr", "st", "ave", "dept", "univ", "est",
    "etc", "al", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov",
    "dec", "no", "ft", "cos",
))
# fmt: on

#: Words that never open a sentence: "Philip Morris Cos.\nInc." is one company, not two sentences.
# fmt: off
COMPANY_SUFFIXES = frozenset((
    "inc", "ltd", "co", "corp", "cos", "plc", "llc", "lp", "sa", "ag", "nv", "bv", "spa",
))
# fmt: on

#: Capitalised words that typically open an English sentence; used only to decide ambiguous cases.
# fmt: off
STARTERS = frozenset((
    "the", "a", "an", "it", "its", "he", "she", "they", "we", "i", "you", "this", "that",
    "these", "those", "there", "their", "his", "her", "our", "my", "but", "and", "or", "so",
    "yet", "in", "on", "at", "for", "with", "as", "if", "when", "while", "after", "before",
    "since", "although", "though", "however", "meanwhile", "also", "then", "still", "now",
    "analysts", "shares", "officials", "some", "many", "most", "one", "two", "no", "not",
    "what", "why", "how", "who", "where", "here",
))
# fmt: on

#: Lower-case words that cannot end a line of finished prose: a line ending in one is hard-wrapped.
# fmt: off
JOINERS = frozenset((
    "a", "an", "the", "and", "or", "nor", "but", "of", "in", "on", "at", "to", "for", "with",
    "by", "from", "as", "than", "that", "which", "who", "whom", "whose", "its", "their", "his",
    "her", "our", "your", "my", "is", "are", "was", "were", "be", "been", "has", "have", "had",
    "will", "would", "could", "should", "into", "onto", "over", "under", "about", "after",
    "before", "between", "during", "per", "via",
))
# fmt: on

_TERMINAL = re.compile(r"(?P<p>[.!?\u2026]+)(?P<c>[\"'\u201d\u2019)\]\u00bb]*)(?=\s|$)")
_LINEBREAK = re.compile(r"[^\S\n]*\n\s*")
_OPENERS = "\"'\u201c\u2018([{\u00ab"
_WRAP_CHARS = ",;(/&"
_INITIAL = re.compile(r"^[A-Za-z]$")
_DOTTED = re.compile(r"^(?:[A-Za-z]\.)+[A-Za-z]$")
_WORD = re.compile(r"[A-Za-z]+")
_ALNUM = re.compile(r"\w")


def normalise(text: str) -> str:
    """Unify line endings (C50 files use CRLF) and strip the ends, so rules see one newline kind."""
    return text.replace("\r\n", "\n").replace("\r", "\n").strip()


def _collapse(chunk: str) -> str:
    """One sentence on one line: a headline wrapped over two lines is still one prompt."""
    return " ".join(chunk.split())


def _token_before(text: str, pos: int) -> str:
    """The run of non-space characters ending at ``pos``, without opening quotes or brackets."""
    start = pos
    while start > 0 and not text[start - 1].isspace():
        start -= 1
    return text[start:pos].lstrip(_OPENERS)


def _abbreviation_kind(token: str) -> str | None:
    """Classify the word before a full stop: 'never', 'initial', 'ambiguous' or None (a word).

    An 'initial' (J.) ends a sentence only before a typical opening word. An 'ambiguous' one
    (Corp., Jan., U.S., N.V.) also ends one at a line break: C50 breaks lines after them only
    when a new sentence follows.
    """
    low = token.lower()
    if low in NEVER_FINAL:
        return "never"
    if _INITIAL.match(token):
        return "initial"
    if low in AMBIGUOUS or _DOTTED.match(token):
        return "ambiguous"
    return None


def _gap_after(text: str, pos: int) -> str:
    """The whitespace run starting at ``pos`` (tells a space from a line or paragraph break)."""
    end = pos
    while end < len(text) and text[end].isspace():
        end += 1
    return text[pos:end]


def _word_at(text: str, pos: int) -> str:
    """The lower-cased word starting at ``pos``, skipping opening quotes or brackets."""
    while pos < len(text) and text[pos] in _OPENERS:
        pos += 1
    m = _WORD.match(text, pos)
    return m.group(0).lower() if m else ""


def _ends_after_punct(text: str, m: re.Match[str]) -> bool:
    """Decide whether the terminal punctuation matched by ``m`` ends a sentence."""
    gap = _gap_after(text, m.end())
    after = m.end() + len(gap)
    if after >= len(text) or gap.count("\n") >= 2:
        return True
    word = _word_at(text, after)
    if text[after].islower() or word in COMPANY_SUFFIXES:
        return False
    if m.group("p") != ".":
        return True  # !, ?, an ellipsis before a capital: a new sentence
    kind = _abbreviation_kind(_token_before(text, m.start()))
    if kind == "never":
        return False
    if kind == "initial":
        return word in STARTERS
    if kind == "ambiguous":
        return "\n" in gap or word in STARTERS
    return True


def _ends_at_linebreak(text: str, m: re.Match[str]) -> bool:
    """Decide whether a line break with no full stop before it ends a sentence."""
    if m.end() >= len(text):
        return False
    if m.group(0).count("\n") >= 2:
        return True
    line = text[text.rfind("\n", 0, m.start()) + 1 : m.start()].rstrip()
    if not line:
        return False
    if text[m.end()].islower() or text[m.end()] == "(" or line[-1] in _WRAP_CHARS:
        return False
    last_word = line.rsplit(None, 1)[-1]
    return last_word not in JOINERS


def boundaries(text: str) -> list[int]:
    """Sorted cut positions in a normalised text: each is where one sentence ends."""
    cuts: set[int] = set()
    punct_ends: set[int] = set()
    for m in _TERMINAL.finditer(text):
        punct_ends.add(m.end())
        if _ends_after_punct(text, m):
            cuts.add(m.end())
    for m in _LINEBREAK.finditer(text):
        if m.start() not in punct_ends and _ends_at_linebreak(text, m):
            cuts.add(m.start())
    cuts.discard(0)
    cuts.add(len(text))
    return sorted(cuts)


def _pieces(text: str) -> list[tuple[int, int]]:
    """(start, end) spans of sentences; a span with no letter or digit joins the next one."""
    spans: list[tuple[int, int]] = []
    start = 0
    for cut in boundaries(text):
        if _ALNUM.search(text, start, cut):
            spans.append((start, cut))
            start = cut
    if not spans:
        return [(0, len(text))] if text.strip() else []
    if start < len(text):  # trailing punctuation-only piece: keep it with the last sentence
        spans[-1] = (spans[-1][0], len(text))
    return spans


def sentence_spans(text: str) -> tuple[str, list[tuple[int, int]]]:
    """The normalised text and the (start, end) span of each sentence in it.

    For callers that need positions rather than strings (stylometry counts words per sentence
    from one tokenisation pass instead of re-tokenising every sentence).
    """
    norm = normalise(text)
    return norm, _pieces(norm)


def sentences(text: str) -> list[str]:
    """The sentences of ``text``, each with its whitespace collapsed to single spaces."""
    norm = normalise(text)
    return [_collapse(norm[a:b]) for a, b in _pieces(norm)]


def _tidy_continuation(chunk: str) -> str:
    """Keep the author's line and paragraph layout; drop only trailing spaces and outer blanks."""
    return "\n".join(line.rstrip() for line in chunk.strip().split("\n"))


def split_opening(text: str) -> tuple[str, str]:
    """Return ``(opening sentence, continuation)``; raise DataError if there is only one sentence.

    The opening becomes an exemplar's ``prompt`` and the continuation its ``output``; a text of
    one sentence has nothing left for the model to recognise, so it is refused, not guessed at.
    """
    norm = normalise(text)
    if not norm:
        raise DataError(
            "the text is empty",
            "give a text of at least two sentences: the first becomes the prompt, the rest the "
            "continuation.",
        )
    spans = _pieces(norm)
    if len(spans) < 2:
        raise DataError(
            f"the text has only one sentence ({_collapse(norm)[:60]!r}...), so there is no "
            "continuation after the opening sentence",
            "the text needs at least two sentences: the first is shown as the prompt and the rest "
            "is what the author wrote next. Add more text, or end the opening sentence with a full "
            "stop or a line break.",
        )
    cut = spans[0][1]
    return _collapse(norm[:cut]), _tidy_continuation(norm[cut:])
