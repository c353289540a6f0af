"""The exercises of notebook 02 (Synthetic pairs): each check recomputes the answer itself."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from persrm_utils.data.pairs import changed_words, check_negative
from persrm_utils.records import Pair, read_jsonl

if TYPE_CHECKING:
    from persrm_utils.records import Pair
    from persrm_utils.run.folders import RunFolder

from persrm_utils.classroom.checks import (
    Checked,
    _call,
    _callable,
    _mapping,
    _not_answered,
    _ok,
    _run,
    _wrong,
)

# 02 · Synthetic pairs
# ----------------------------------------------------------------------------------------------

_SPLITS = ("train", "val", "test", "seen_test")


def _pairs(run: RunFolder, splits: Sequence[str] = _SPLITS) -> list[Pair]:

    return [p for s in splits for p in read_jsonl(run.path / "pairs" / f"{s}.jsonl", Pair)]


def check_02_warmup(answer: Mapping[str, int] | None, run: RunFolder | Path | str) -> Checked:
    """The number of pairs of each negative type, over all four pairs/*.jsonl files.

    Verifies the counts against the pairs read back with ``read_jsonl(..., Pair)``: they are what
    survived the filters, so they differ from the plan's balanced round-robin.
    """
    if answer is None:
        return _not_answered("Counter(p.negative_type for p in pairs) over the four split files.")
    expected = dict(Counter(p.negative_type for p in _pairs(_run(run))))
    if not isinstance(answer, Mapping):
        _wrong(
            f"Expected a dict like {expected}, got {type(answer).__name__}.",
            "collections.Counter is a dict: Counter(...) works as the answer.",
        )
    given = {str(k): int(v) for k, v in answer.items() if v}
    if given != expected:
        _wrong(
            f"Expected {expected} (all four splits), got {given}.",
            "read pairs/train, val, test and seen_test.jsonl, not only one of them.",
        )
    total = sum(expected.values())
    return _ok(f"{total} pairs: " + ", ".join(f"{k} {v}" for k, v in sorted(expected.items())))


def _swap_words(text: str, slots: Sequence[int], number_at: int | None = None) -> str:
    """``text`` with the words at ``slots`` replaced (by a made-up synonym, or a number)."""
    words = text.split()
    for i in slots:
        words[i] = "42" if i == number_at else words[i] + "ish"
    return " ".join(words)


def _minor_replace_cases(pairs: Sequence[Pair]) -> list[tuple[str, str, str]]:
    """(what the case is, chosen, rejected): the run's kept minor_replace pairs, then edits.

    Edits replace lower-case words only, never two side by side, so a case never touches a name;
    a checker with the count and number rules decides every case as the package does.
    """
    cases = [
        (f"the kept minor_replace pair {p.pair_id}", p.chosen, p.rejected)
        for p in pairs
        if p.negative_type == "minor_replace"
    ][:4]
    texts = []
    for p in pairs:
        words = p.chosen.split()
        slots = [i for i, w in enumerate(words) if w.isalpha() and w.islower()][::2]
        if len(slots) >= 8 and p.chosen not in [t for t, _ in texts]:
            texts.append((p.chosen, slots))
        if len(texts) == 3:
            break
    for text, slots in texts:
        head = f"'{text[:30]}...'"
        cases += [
            (f"{head} unchanged", text, text),
            (f"{head} with 3 words swapped", text, _swap_words(text, slots[:3])),
            (
                f"{head} with 2 words swapped and one turned into a number",
                text,
                _swap_words(text, slots[:3], number_at=slots[2]),
            ),
            (f"{head} with 8 words swapped", text, _swap_words(text, slots[:8])),
        ]
    return cases


def check_02_core(
    answer: Callable[[str, str], bool] | None, run: RunFolder | Path | str
) -> Checked:
    """A learner's minor_replace filter: ``ok(chosen, rejected) -> bool``.

    Verifies it against ``check_negative("minor_replace", ...)`` on the run's kept minor_replace
    pairs and on edits of the run's real texts: unchanged, 3 words swapped, a word turned into a
    number, 8 words swapped.
    """
    if answer is None:
        return _not_answered("def ok(chosen, rejected): use changed_words() and compare numbers.")

    fn = _callable(answer, "ok(chosen: str, rejected: str) -> bool")
    cases = _minor_replace_cases(_pairs(_run(run)))
    if not cases:
        _wrong("This run has no pair to build test cases from.", "run notebook 02 first.")
    for case, chosen, rejected in cases:
        reason = check_negative("minor_replace", chosen, rejected)
        expected = reason is None
        result = _call(fn, (chosen, rejected), case)
        if result not in (True, False):
            _wrong(
                f"Your function returned {result!r} on {case}; expected True or False.",
                "return a bool: True keeps the negative.",
            )
        if bool(result) != expected:
            why = "it passes every filter" if expected else f"the filter says '{reason}'"
            _wrong(
                f"On {case} you return {bool(result)}, expected {expected}: {why} "
                f"({_changed(chosen, rejected)} word(s) changed).",
                "keep it when 2 <= changed_words(chosen, rejected) <= 6 and "
                "re.findall(r'\\d[\\d,.]*', ...) is the same for both texts.",
            )
    return _ok(f"your filter agrees with check_negative on all {len(cases)} cases.")


def _changed(chosen: str, rejected: str) -> int:

    return changed_words(chosen, rejected)


def check_02_stretch(answer: Mapping[str, str] | None, run: RunFolder | Path | str) -> Checked:
    """Three negatives for the first pair of pairs/test.jsonl, judged as style_mimic.

    Verifies that ``check_negative("style_mimic", pair.chosen, text)`` drops
    ``answer["near_identical"]`` and ``answer["length_outlier"]`` for exactly those reasons and
    keeps ``answer["kept"]``.
    """
    if answer is None:
        return _not_answered("edit pair.chosen: one word, a cut to one sentence, a rewrite.")

    got = _mapping(
        answer,
        ["near_identical", "length_outlier", "kept"],
        "{'near_identical': str, 'length_outlier': str, 'kept': str}",
    )
    pair = _pairs(_run(run), ("test",))[0]
    hints = {
        "near_identical": "change one or two words of pair.chosen (similarity >= 0.9).",
        "length_outlier": "a third of the real text's words or fewer, or three times or more.",
        "kept": "write a different continuation of about the same length as pair.chosen.",
    }
    for key, hint in hints.items():
        text = got[key]
        if not isinstance(text, str):
            _wrong(f"answer['{key}'] should be a string.", hint)
        reason = check_negative("style_mimic", pair.chosen, text)
        wanted = None if key == "kept" else key
        if reason != wanted:
            _wrong(
                f"answer['{key}'] is {'kept' if reason is None else f'dropped as {reason!r}'}"
                f", expected {'kept' if wanted is None else f'dropped as {wanted!r}'}.",
                hint,
            )
    return _ok("near-identical and length-outlier negatives dropped, the honest one kept.")


# ----------------------------------------------------------------------------------------------
