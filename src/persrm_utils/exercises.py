"""The exercises of the series: one check per exercise, each recomputing the answer itself.

Every notebook closes, before its recap, with three exercises (warm-up, core, stretch). The learner
puts the answer in ``answer`` and calls the check, e.g. ``check_05_core(answer, session.path)``.
A check:

* prints one line, ``OK: ...``, and returns True when the answer is right;
* prints ``Not answered yet: <hint>`` and returns False when ``answer`` is None. It never raises
  then: ``persrm run`` executes the notebooks with the exercises unanswered, and they must pass;
* raises :class:`ExerciseError` when the answer is wrong, saying what was expected and how to get
  there. The error is an ``AssertionError``, so a wrong solution fails a notebook run and CI.

A check never compares with a number written down here: it recomputes the expected value from the
run folder or with the package's own functions. Whatever a run produced (another profile, another
seed, a changed filter), the check agrees with that run. The solutions live in
``notebooks/NN_name_solutions.ipynb`` and open the run folder with :func:`solution_run`, which
only reads.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    import pandas as pd

    from persrm_utils.pairs import Pair
    from persrm_utils.runs import RunFolder

#: The rewards of the 04 warm-up: two groups of G = 4 (correctness + format reward).
REWARDS_04: tuple[float, ...] = (1.2, -0.9, -1.0, -0.95, 1.2, 1.2, 1.2, 1.2)
GROUP_04 = 4
#: The model whose QLoRA memory the 03 warm-up asks for (a key of ``memory.ARCHS``).
MODEL_03 = "Qwen2.5-7B"


class ExerciseError(AssertionError):
    """A wrong answer: the message says what was expected and gives a hint.

    A subclass of AssertionError so that pytest, papermill and a reader all see a failed check,
    not a crash of the package.
    """


# ----------------------------------------------------------------------------------------------
# How every check reports
# ----------------------------------------------------------------------------------------------


def _ok(message: str) -> bool:
    print(f"OK: {message}")
    return True


def _not_answered(hint: str) -> bool:
    print(f"Not answered yet: {hint}")
    return False


def _wrong(problem: str, hint: str) -> NoReturn:
    raise ExerciseError(f"{problem} Hint: {hint}")


def _number(value: Any, what: str) -> float:
    """``value`` as a float, or an ExerciseError that names what a number was wanted for."""
    import numpy as np

    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        _wrong(
            f"{what} should be a number, got {type(value).__name__} {value!r:.60}.",
            "put the number itself in the answer, not a string or a table.",
        )
    return float(value)


def _mapping(answer: Any, keys: Sequence[str], example: str) -> Mapping[str, Any]:
    """Check that a dict answer has the keys the exercise asks for."""
    if not isinstance(answer, Mapping):
        _wrong(
            f"Expected a dict like {example}, got {type(answer).__name__}.",
            "build the answer as a dict with exactly those keys.",
        )
    missing = [k for k in keys if k not in answer]
    if missing:
        _wrong(
            f"The answer lacks the key(s) {', '.join(map(repr, missing))}; expected {example}.",
            "spell the keys exactly as in the exercise.",
        )
    return answer


def _callable(answer: Any, signature: str) -> Callable[..., Any]:
    if not callable(answer):
        _wrong(
            f"Expected a function {signature}, got {type(answer).__name__}.",
            "define the function with def, then set answer = the_function (no parentheses).",
        )
    return answer


def _call(fn: Callable[..., Any], args: tuple[Any, ...], case: str) -> Any:
    """Call the learner's function; an exception becomes an ExerciseError naming the case."""
    try:
        return fn(*args)
    except ExerciseError:
        raise
    except Exception as err:  # the learner's bug, shown with the input that triggered it
        _wrong(
            f"Your function raised {type(err).__name__}: {err} (on {case}).",
            "run it on that input yourself and read the traceback.",
        )


# ----------------------------------------------------------------------------------------------
# The run folder, read-only
# ----------------------------------------------------------------------------------------------


def _run(run: RunFolder | Path | str) -> RunFolder:
    from persrm_utils.runs import RunFolder

    return run if isinstance(run, RunFolder) else RunFolder.open(run)


def solution_run(stage: str, profile: str = "smoke", run_name: str | None = None) -> RunFolder:
    """Open the run folder whose outputs a solutions notebook checks, without changing it.

    Solutions only read: they never call ``start_stage`` or save the manifest, so running them
    (by hand, or with ``persrm run --solutions``) leaves the run exactly as the series made it.
    The folder is found as the series finds it (``$PERSRM_RUNS_DIR`` or ``runs/``, then
    ``RUN_NAME`` or the profile's name); a stage that has not finished there is an error that
    names the notebook to run first.
    """
    from persrm_utils.errors import MissingInputsError
    from persrm_utils.paths import runs_dir
    from persrm_utils.profiles import get_profile
    from persrm_utils.runs import RunFolder
    from persrm_utils.stages import get_stage

    name = get_stage(stage).name
    prof = get_profile(profile)
    path = runs_dir() / (run_name or prof.name)
    run = RunFolder.open(path)
    if not run.is_done(name):
        raise MissingInputsError(
            f"The solutions of {name} read what it produced, but {name} is not done in run "
            f"'{run.manifest.run}' ({path}).",
            f"Run notebooks/{name}.ipynb first with the same PROFILE and RUN_NAME, or `persrm run "
            f"--profile {prof.name} --run {run.manifest.run} --from {name}`.",
        )
    print(f"Run folder {path} (read-only): stage {name} is done.")
    return run


def _stage_record(run: RunFolder, stage: str) -> Any:
    record = run.manifest.stages.get(stage)
    if record is None or record.status != "done":
        _wrong(
            f"Stage {stage} is not done in run '{run.manifest.run}' ({run.path}).",
            f"run notebooks/{stage}.ipynb for this run first.",
        )
    return record


# ----------------------------------------------------------------------------------------------
# 00 · Set-up
# ----------------------------------------------------------------------------------------------


def check_00_warmup(answer: Mapping[str, str] | None, run: RunFolder | Path | str) -> bool:
    """The versions of trl and transformers this run used, as stage 00 recorded them.

    Verifies ``answer == {"trl": ..., "transformers": ...}`` against the ``versions`` of
    00_setup in manifest.json: the manifest, not what is installed today, says which versions
    produced a run's results.
    """
    if answer is None:
        return _not_answered('manifest.json -> "stages" -> "00_setup" -> "versions".')
    folder = _run(run)
    versions = _stage_record(folder, "00_setup").versions
    expected = {name: versions.get(name) for name in ("trl", "transformers")}
    got = _mapping(answer, list(expected), "{'trl': '1.2.3', 'transformers': '4.5.6'}")
    given = {name: str(got[name]).strip() for name in expected}
    if given != expected:
        _wrong(
            f"Expected {expected} (manifest.json of run '{folder.manifest.run}', stage "
            f"00_setup), got {given}.",
            "RunFolder.open(session.path).manifest.stages['00_setup'].versions, or open "
            "manifest.json with json.load.",
        )
    return _ok(f"this run used trl {expected['trl']} and transformers {expected['transformers']}.")


def check_00_core(answer: str | None, run: RunFolder | Path | str) -> bool:
    """The SHA-256 of environment.json, computed by the learner, matching the manifest's record.

    Verifies that ``answer`` is the hex digest of the file's bytes *and* that it equals the hash
    00_setup recorded: together they prove the file on disk is the one the stage wrote.
    """
    if answer is None:
        return _not_answered("hashlib.sha256(path.read_bytes()).hexdigest() for environment.json.")
    from persrm_utils.runs import sha256_of

    folder = _run(run)
    record = _stage_record(folder, "00_setup")
    recorded = {a.path: a.sha256 for a in record.artifacts}.get("environment.json")
    path = folder.path / "environment.json"
    on_disk = sha256_of(path)
    if recorded != on_disk:
        _wrong(
            f"environment.json no longer matches the manifest (recorded {recorded}, the file "
            f"now hashes to {on_disk}): it was changed after stage 00 finished.",
            "rerun notebooks/00_setup.ipynb for this run, then try again.",
        )
    if not isinstance(answer, str):
        _wrong(
            f"Expected the digest as a hex string, got {type(answer).__name__}.",
            "hashlib.sha256(data).hexdigest() returns the string.",
        )
    digest = answer.strip().lower()
    if digest == hashlib.sha256(str(path).encode()).hexdigest():
        _wrong(
            "That is the SHA-256 of the file's *name*, not of its contents.",
            "hash path.read_bytes(), not str(path).",
        )
    if digest != on_disk:
        _wrong(
            f"Expected the SHA-256 of {path} ({on_disk[:12]}..., as the manifest records), "
            f"got {digest[:12]}....",
            "open the file in binary mode ('rb') and hash all of its bytes.",
        )
    return _ok(f"environment.json hashes to {on_disk[:12]}..., exactly what the manifest records.")


def check_00_stretch(answer: Mapping[str, Any] | None, run: RunFolder | Path | str) -> bool:
    """An override of a *real* profile field with a bad value, and the ConfigError it raised.

    Verifies that ``answer["field"]`` is a field of the profile (not a typo: the notebook already
    showed that case), that ``answer["error"]`` is a ConfigError naming that field, and that the
    same override of this run's profile really is refused.
    """
    if answer is None:
        return _not_answered("try get_profile(PROFILE, lora_r=0) inside try/except ConfigError.")
    from persrm_utils.errors import ConfigError
    from persrm_utils.profiles import Profile, get_profile

    got = _mapping(
        answer, ["field", "value", "error"], "{'field': 'lora_r', 'value': 0, 'error': err}"
    )
    field, value, error = got["field"], got["value"], got["error"]
    if field not in Profile.model_fields or field == "name":
        _wrong(
            f"'{field}' is not a field of the profile: that is the typo case the notebook "
            "already showed.",
            "pick a real field (describe_fields() lists them) and give it a value out of "
            "range or of the wrong type.",
        )
    if not isinstance(error, ConfigError):
        _wrong(
            f"answer['error'] should be the ConfigError you caught, got {type(error).__name__}.",
            "write `except ConfigError as err:` and store err.",
        )
    profile = _run(run).manifest.profile
    try:
        get_profile(profile, **{field: value})
    except ConfigError as err:
        if f"field '{field}'" not in str(error):
            _wrong(
                f"Your error does not name the field '{field}'; this one would: {err}",
                "store the exception raised by the override you put in the answer.",
            )
        return _ok(f"{field}={value!r} is refused, and the message says why: {err.problem}")
    _wrong(
        f"get_profile('{profile}', {field}={value!r}) is accepted: that value is valid.",
        "choose a value the field's type or range forbids (a negative rank, a word for a number).",
    )


# ----------------------------------------------------------------------------------------------
# 01 · Exemplars
# ----------------------------------------------------------------------------------------------


def check_01_warmup(answer: Mapping[str, Any] | None) -> bool:
    """A text of the learner's own and its mean sentence length, counted by hand.

    Verifies ``answer["mean_sentence_len"]`` against ``text_features(answer["text"])`` (within
    0.01): the feature is the average number of whitespace-separated words per sentence.
    """
    if answer is None:
        return _not_answered("write 2-4 sentences, count words per sentence, average them.")
    from persrm_utils.stylometry import text_features
    from persrm_utils.textsplit import sentences

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
    from persrm_utils.records import Exemplar, read_jsonl
    from persrm_utils.stylometry import author_profiles

    return author_profiles(read_jsonl(run.path / "exemplars.jsonl", Exemplar))


def _top(column: pd.Series) -> list[str]:
    """Every author with the column's maximum (ties are all right answers)."""
    return sorted(column[column == column.max()].index)


def check_01_core(answer: Mapping[str, str] | None, run: RunFolder | Path | str) -> bool:
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
    from persrm_utils.records import Exemplar, read_jsonl
    from persrm_utils.stylometry import (
        author_profiles,
        feature_scale,
        feature_table,
        style_distance,
    )

    corpus = read_jsonl(run.path / "exemplars.jsonl", Exemplar)
    me = author_profiles(own).iloc[0].to_dict()
    mine = {e.author_id for e in own}
    others = author_profiles([e for e in corpus if e.author_id not in mine])
    scale = feature_scale(feature_table(corpus))
    dist = {a: style_distance(me, row.to_dict(), scale) for a, row in others.iterrows()}
    return min(dist, key=lambda a: (dist[a], a)), dist


def check_01_stretch(answer: Mapping[str, Any] | None, run: RunFolder | Path | str) -> bool:
    """A JSONL file of one's own texts, written by hand, and the corpus author closest in style.

    Verifies that ``load_own_texts`` reads ``answer["file"]`` (one author, at least three texts
    of two or more sentences) and that ``answer["closest_author"]`` is the corpus author whose
    mean features are nearest to those texts' mean, in :func:`style_distance` with the spread
    of the run's feature table as the scale.
    """
    if answer is None:
        return _not_answered('one json.dumps({"author_id", "text_id", "text"}) per line.')
    from persrm_utils.corpus import load_own_texts
    from persrm_utils.errors import DataError

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
# 02 · Synthetic pairs
# ----------------------------------------------------------------------------------------------

_SPLITS = ("train", "val", "test", "seen_test")


def _pairs(run: RunFolder, splits: Sequence[str] = _SPLITS) -> list[Pair]:
    from persrm_utils.pairs import Pair
    from persrm_utils.records import read_jsonl

    return [p for s in splits for p in read_jsonl(run.path / "pairs" / f"{s}.jsonl", Pair)]


def check_02_warmup(answer: Mapping[str, int] | None, run: RunFolder | Path | str) -> bool:
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


def check_02_core(answer: Callable[[str, str], bool] | None, run: RunFolder | Path | str) -> bool:
    """A learner's minor_replace filter: ``ok(chosen, rejected) -> bool``.

    Verifies it against ``check_negative("minor_replace", ...)`` on the run's kept minor_replace
    pairs and on edits of the run's real texts: unchanged, 3 words swapped, a word turned into a
    number, 8 words swapped.
    """
    if answer is None:
        return _not_answered("def ok(chosen, rejected): use changed_words() and compare numbers.")
    from persrm_utils.pairs import check_negative

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
    from persrm_utils.pairs import changed_words

    return changed_words(chosen, rejected)


def check_02_stretch(answer: Mapping[str, str] | None, run: RunFolder | Path | str) -> bool:
    """Three negatives for the first pair of pairs/test.jsonl, judged as style_mimic.

    Verifies that ``check_negative("style_mimic", pair.chosen, text)`` drops
    ``answer["near_identical"]`` and ``answer["length_outlier"]`` for exactly those reasons and
    keeps ``answer["kept"]``.
    """
    if answer is None:
        return _not_answered("edit pair.chosen: one word, a cut to one sentence, a rewrite.")
    from persrm_utils.pairs import check_negative

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
# 03 · SFT
# ----------------------------------------------------------------------------------------------


def qlora_base_bytes(model: str = MODEL_03) -> float:
    """Bytes of a model's frozen weights under QLoRA: NF4 linear layers, 16-bit embeddings."""
    from persrm_utils.memory import ARCHS, NF4_BYTES

    arch = ARCHS[model]
    emb = arch.embedding_parameters()
    return (arch.parameters() - emb) * NF4_BYTES + emb * 2


def check_03_warmup(answer: float | None) -> bool:
    """The bytes the frozen base weights of Qwen2.5-7B take under QLoRA.

    Verifies, within 0.1%, (parameters - embedding parameters) x ``memory.NF4_BYTES`` plus the
    embedding parameters x 2 bytes (bitsandbytes keeps embeddings in 16-bit), from
    ``memory.ARCHS``. Common slips (16 bytes per parameter, all weights in 4 bit) get their own
    hint.
    """
    if answer is None:
        return _not_answered(
            "ARCHS['Qwen2.5-7B'].parameters(), .embedding_parameters(), NF4_BYTES."
        )
    from persrm_utils.memory import ARCHS, GB, NF4_BYTES

    value = _number(answer, "answer")
    expected = qlora_base_bytes(MODEL_03)
    if abs(value - expected) <= 1e-3 * expected:
        return _ok(
            f"{expected / GB:.2f} GB of frozen weights for {MODEL_03} (fp16: "
            f"{ARCHS[MODEL_03].parameters() * 2 / GB:.1f} GB)."
        )
    n = ARCHS[MODEL_03].parameters()
    slips = {
        n * 16: "that is full fine-tuning (weights, gradients and Adam), not frozen QLoRA weights",
        n * 2: "that is the model in fp16; QLoRA stores the linear layers in 4 bit",
        n * NF4_BYTES: "the embeddings are not quantized: bitsandbytes keeps them in 16 bit",
        n * 0.5: "NF4 also stores one absmax per 64 weights (NF4_BYTES, not 0.5), and the "
        "embeddings stay in 16 bit",
        expected / GB: "the answer is in bytes, not GB",
    }
    for wrong_value, why in slips.items():
        if abs(value - wrong_value) <= 1e-3 * abs(wrong_value):
            _wrong(f"{value:,.0f} is not it: {why}.", "see section 3 of the notebook.")
    _wrong(
        f"Expected about {expected / GB:.2f} GB ({expected:,.0f} bytes), got {value:,.0f}.",
        "(parameters - embedding parameters) * NF4_BYTES + embedding parameters * 2.",
    )


#: One way to make each invalid reason, shown when a learner's text parses otherwise.
_REASON_HINTS: dict[str, str] = {
    "no_answer_tag": "close the reasoning with </think> and write no <answer> tag after it.",
    "answer_inside_think": "put the only <answer>[[A]]</answer> inside <think>...</think>.",
    "unclosed_think": "open <think> and never close it (a completion cut at its token limit).",
    "truncated": "after </think>, open <answer> and never close it.",
    "both_letters": "one final answer tag holding both [[A]] and [[B]].",
    "no_letter": "a final answer tag with no [[A]] or [[B]] in it, e.g. <answer>A</answer>.",
}


def check_03_core(answer: Mapping[str, str] | None) -> bool:
    """One judge output per reason a verdict is invalid, each parsed as exactly that reason.

    Verifies ``parse_verdict(answer[reason]).reason == reason`` for every reason of
    ``judge.REASONS`` except "ok".
    """
    if answer is None:
        return _not_answered("a dict {reason: text} for the six invalid reasons of REASONS.")
    from persrm_utils.judge import REASONS, parse_verdict

    reasons = [r for r in REASONS if r != "ok"]
    got = _mapping(answer, reasons, "{'no_answer_tag': '<think>...</think>', ...}")
    for reason in reasons:
        text = got[reason]
        if not isinstance(text, str):
            _wrong(f"answer['{reason}'] should be a string.", _REASON_HINTS[reason])
        parsed = parse_verdict(text).reason
        if parsed != reason:
            _wrong(
                f"answer['{reason}'] parses as '{parsed}', expected '{reason}'.",
                _REASON_HINTS[reason],
            )
    return _ok(f"all {len(reasons)} ways to lose a verdict: {', '.join(reasons)}.")


def _first_difference(expected: str, given: str) -> tuple[int, str, str]:
    """(1-based line number, expected line, given line) of the first line that differs."""
    want, have = expected.splitlines(), given.splitlines()
    for i in range(max(len(want), len(have))):
        a = want[i] if i < len(want) else "(no more lines)"
        b = have[i] if i < len(have) else "(no more lines)"
        if a != b:
            return i + 1, a, b
    return len(want), "(a final newline or none)", "(the other)"


def check_03_stretch(answer: Mapping[str, str] | None, run: RunFolder | Path | str) -> bool:
    """The judge's user message for the first test pair with no exemplars (k=0) and A/B swapped.

    Verifies ``answer["user"] == judge.user_message(pair, by_id, k=0, swap=True)`` for the first
    pair of pairs/test.jsonl, and ``answer["label"]`` against ``judge.label(pair, swap=True)``.
    """
    if answer is None:
        return _not_answered("NO_EXEMPLARS, [Prompt], [Response A], [Response B], QUESTION.")
    from persrm_utils.judge import label, user_message

    got = _mapping(answer, ["user", "label"], "{'user': str, 'label': 'A' or 'B'}")
    pair = _pairs(_run(run), ("test",))[0]
    expected = user_message(pair, {}, k=0, swap=True)
    if got["user"] != expected:
        line, want, have = _first_difference(expected, str(got["user"]))
        _wrong(
            f"Line {line} of your message differs from user_message(pair, by_id, k=0, "
            f"swap=True): expected {want[:70]!r}, yours {have[:70]!r}.",
            "blocks joined by a blank line ('\\n\\n'); with swap=True, Response A is "
            "pair.response_b.",
        )
    if got["label"] != label(pair, swap=True):
        _wrong(
            f"The real text is shown as {label(pair, swap=True)} after the swap, not "
            f"{got['label']!r}.",
            "pair.chosen_position is where it was before the swap.",
        )
    return _ok(f"the k=0 prompt, with the real text as Response {got['label']}.")


# ----------------------------------------------------------------------------------------------
# 04 · GRPO
# ----------------------------------------------------------------------------------------------


def check_04_warmup(answer: Sequence[float] | None) -> bool:
    """Group-relative advantages of ``REWARDS_04`` (groups of ``GROUP_04``), computed by hand.

    Verifies each value, within 0.001, against ``rewards.advantages``: (reward - group mean) /
    (group population standard deviation + 1e-4).
    """
    if answer is None:
        return _not_answered("per group of 4: (r - mean) / (population std + 1e-4).")
    from persrm_utils.rewards import advantages

    expected = advantages(REWARDS_04, GROUP_04)
    if isinstance(answer, str) or not isinstance(answer, Sequence) or len(answer) != len(expected):
        _wrong(
            f"Expected a list of {len(expected)} advantages, one per reward.",
            "compute one value per entry of REWARDS_04, in order.",
        )
    for i, (a, e) in enumerate(zip(answer, expected, strict=True)):
        value = _number(a, f"answer[{i}]")
        if abs(value - e) > 1e-3:
            group = i // GROUP_04
            _wrong(
                f"answer[{i}] is {value:.3f}, expected {e:.3f} (group {group + 1}).",
                "use the population std (statistics.pstdev), and each group's own mean.",
            )
    idle = [
        g // GROUP_04 + 1
        for g in range(0, len(expected), GROUP_04)
        if all(abs(a) < 1e-9 for a in expected[g : g + GROUP_04])
    ]
    return _ok(f"advantages match; group(s) {idle} have advantage 0 everywhere: no gradient.")


def check_04_core(answer: Sequence[str] | None) -> bool:
    """Three reward hacks: outputs containing "[[A]]" that correctness_reward scores -1 for A.

    Verifies that each of at least three distinct strings contains "[[A]]" (a naive
    ``"[[A]]" in text`` check would pay it) and gets -1 from ``correctness_reward`` with label A.
    """
    if answer is None:
        return _not_answered("both letters, a verdict inside <think>, no reasoning at all...")
    from persrm_utils.judge import parse_verdict
    from persrm_utils.rewards import correctness_reward

    if isinstance(answer, str) or not isinstance(answer, Sequence):
        _wrong("Expected a list of strings.", "answer = [hack_1, hack_2, hack_3].")
    hacks = list(answer)
    if len(set(hacks)) < 3 or not all(isinstance(h, str) for h in hacks):
        _wrong(
            f"Expected three or more different strings, got {len(set(map(str, hacks)))}.",
            "each hack should dodge the format in another way.",
        )
    for hack in hacks:
        if "[[A]]" not in hack:
            _wrong(
                f"{hack[:60]!r} has no [[A]], so no naive check would pay it anyway.",
                "a hack should look like an answer A to someone who only searches for [[A]].",
            )
    scores = correctness_reward(hacks, label=["A"] * len(hacks))
    for hack, score in zip(hacks, scores, strict=True):
        if score != -1.0:
            _wrong(
                f"{hack[:60]!r} gets {score:+.0f}: that is a right, reasoned answer, not a hack.",
                "break the format: hide the verdict, hedge, or skip the reasoning.",
            )
    dodges = sorted({_dodge(parse_verdict(h)) for h in hacks})
    return _ok(f"all {len(hacks)} hacks score -1 ({', '.join(dodges)}).")


def _dodge(verdict: Any) -> str:
    """How a hack lost its reward: the parser's reason, or the missing reasoning."""
    if verdict.reason != "ok":
        return verdict.reason
    return "no reasoning" if verdict.think is None else "empty reasoning"


def check_04_stretch(answer: Sequence[str] | None) -> bool:
    """A group of four wrong verdicts (label A) that still gives GRPO a learning signal.

    Verifies that all four completions get -1 from ``correctness_reward`` and that their total
    rewards (correctness + ``format_reward``) are four different numbers, so the group's reward
    std is not zero and every completion gets its own advantage.
    """
    if answer is None:
        return _not_answered("4 wrong completions whose format_reward values all differ.")
    from persrm_utils.rewards import advantages, correctness_reward, format_reward, group_signal

    if isinstance(answer, str) or not isinstance(answer, Sequence) or len(answer) != GROUP_04:
        _wrong(
            f"Expected a list of {GROUP_04} completions (one group).", "answer = [c1, c2, c3, c4]."
        )
    texts = [str(t) for t in answer]
    correct = correctness_reward(texts, label=["A"] * GROUP_04)
    fmt = format_reward(texts)
    if any(c != -1.0 for c in correct):
        i = next(i for i, c in enumerate(correct) if c != -1.0)
        _wrong(
            f"Completion {i} is a right answer (+1): every completion must be wrong.",
            "answer B, or give no valid verdict at all.",
        )
    totals = [round(c + f, 4) for c, f in zip(correct, fmt, strict=True)]
    if len(set(totals)) < GROUP_04:
        _wrong(
            f"Total rewards {totals}: some are equal (format rewards {fmt}).",
            "format_reward pays 0.05 for <think>, 0.05 for an answer tag after </think> and "
            "0.1 for the exact layout, whatever the letter.",
        )
    adv = [round(a, 2) for a in advantages(totals, GROUP_04)]
    zero = group_signal(totals, GROUP_04)["frac_reward_zero_std"]
    return _ok(f"totals {totals}, advantages {adv}, frac_reward_zero_std {zero:.0f}.")


# ----------------------------------------------------------------------------------------------
# 05 · Evaluation
# ----------------------------------------------------------------------------------------------


def _overall(run: RunFolder) -> pd.DataFrame:
    import pandas as pd

    table = pd.read_csv(run.path / "eval" / "overall.csv")
    return table.dropna(subset=["accuracy"])


def _unseen_predictions(run: RunFolder) -> pd.DataFrame:
    """Rows of eval/predictions.jsonl for unseen-author pairs (pairs/test.jsonl), as a frame."""
    import pandas as pd

    unseen = {p.pair_id for p in _pairs(run, ("test",))}
    with (run.path / "eval" / "predictions.jsonl").open(encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    df = pd.DataFrame(rows)
    df = df[df["pair_id"].isin(unseen)].copy()
    df["valid"] = df["letter"].isin(["A", "B"])
    return df


def check_05_warmup(answer: Mapping[str, Any] | None, run: RunFolder | Path | str) -> bool:
    """The most accurate model on unseen authors, and whether its interval is above chance.

    Verifies ``answer["best"]`` against the highest accuracy of eval/overall.csv (any tied model
    is right) and ``answer["beats_chance"]`` against that model's ``ci_low > 0.5``.
    """
    if answer is None:
        return _not_answered("eval/overall.csv: the top accuracy, and is its ci_low above 0.5?")
    got = _mapping(answer, ["best", "beats_chance"], "{'best': 'SFT', 'beats_chance': False}")
    table = _overall(_run(run)).set_index("model")
    best = sorted(table.index[table["accuracy"] == table["accuracy"].max()])
    if got["best"] not in best:
        _wrong(
            f"The highest accuracy, {table['accuracy'].max():.3f}, is by {' / '.join(best)}; "
            f"you named {got['best']!r}.",
            "sort eval/overall.csv by the accuracy column.",
        )
    row = table.loc[got["best"]]
    beats = bool(row["ci_low"] > 0.5)
    if got["beats_chance"] is not beats:
        _wrong(
            f"{got['best']}'s 95% interval is [{row['ci_low']:.3f}, {row['ci_high']:.3f}], so "
            f"beats_chance should be {beats}.",
            "above chance means the whole interval lies above 0.5.",
        )
    verdict = "above chance" if beats else "not distinguishable from chance"
    return _ok(
        f"{got['best']} leads with {row['accuracy']:.3f}, {verdict} "
        f"(interval [{row['ci_low']:.2f}, {row['ci_high']:.2f}], {row['n_pairs']:.0f} "
        "pairs)."
    )


def check_05_core(answer: Mapping[str, float] | None, run: RunFolder | Path | str) -> bool:
    """Position-debiased accuracy on unseen authors, per model, from eval/predictions.jsonl.

    Verifies the learner's numbers against a recomputation (per pair the mean correctness over
    its two orders, then the mean over pairs, pairs of pairs/test.jsonl only) and that they
    reproduce eval/overall.csv for every model there.
    """
    if answer is None:
        return _not_answered("per model: mean over pairs of (mean 'correct' over both orders).")
    df = _unseen_predictions(_run(run))
    recomputed = df.groupby(["model", "pair_id"])["correct"].mean().groupby("model").mean()
    table = _overall(_run(run)).set_index("model")
    got = _mapping(answer, list(table.index), "{'random': 0.5, 'SFT': 0.25, ...}")
    for model, value in got.items():
        if model not in recomputed.index:
            _wrong(
                f"There is no model {model!r} in eval/predictions.jsonl.",
                f"the models are {', '.join(recomputed.index)}.",
            )
        v = _number(value, f"answer[{model!r}]")
        if abs(v - recomputed[model]) > 1e-6:
            by_row = df[df["model"] == model]["correct"].mean()
            extra = " (the mean over rows, not over pairs)" if abs(v - by_row) < 1e-6 else ""
            _wrong(
                f"{model}: expected {recomputed[model]:.4f}, got {v:.4f}{extra}.",
                "keep only pairs of pairs/test.jsonl (unseen authors), average each pair's "
                "two orders first, then average over pairs.",
            )
    for model in table.index:
        if abs(recomputed[model] - table.loc[model, "accuracy"]) > 1e-9:
            _wrong(
                f"{model}: predictions.jsonl gives {recomputed[model]:.4f} but overall.csv "
                f"says {table.loc[model, 'accuracy']:.4f}: the files are out of step.",
                "rerun notebook 05 for this run.",
            )
    return _ok(f"your accuracies reproduce eval/overall.csv for all {len(table)} models.")


def _pair_scores(run: RunFolder) -> dict[str, Any]:
    """Per model, the unseen pairs' debiased scores (what the bootstrap resamples)."""
    from persrm_utils.metrics import pair_scores

    scores = pair_scores(_unseen_predictions(run))
    return {m: g["score"].to_numpy() for m, g in scores.groupby("model")}


def _ci(fn: Callable[..., Any], scores: Any, seed: int, case: str) -> tuple[float, float]:
    out = _call(fn, (scores, 1000, seed), case)
    if not isinstance(out, Sequence) or len(out) != 2:
        _wrong(
            f"Your function returned {out!r:.60} on {case}; expected (low, high).",
            "return a tuple of two floats.",
        )
    return _number(out[0], "low"), _number(out[1], "high")


def _check_interval(fn: Callable[..., Any], scores: Any, tol: float, case: str) -> None:
    """One score set: inside the scores' range, around the mean, close to bootstrap_ci."""
    import numpy as np

    from persrm_utils.metrics import bootstrap_ci

    low, high = _ci(fn, scores, 0, case)
    ref = bootstrap_ci(scores, 1000, 0)
    mean = float(np.mean(scores))
    if low < min(scores) - 1e-9 or high > max(scores) + 1e-9:
        _wrong(
            f"On {case} your interval ({low:.3f}, {high:.3f}) leaves the range of the scores: "
            "no resampled mean can.",
            "a normal approximation (mean +- 1.96 se) can; resample and take percentiles.",
        )
    if not low - 1e-9 <= mean <= high + 1e-9:
        _wrong(
            f"On {case} your interval ({low:.3f}, {high:.3f}) excludes the mean {mean:.3f}.",
            "return the 2.5th and the 97.5th percentile of the resampled means.",
        )
    if abs(low - ref[0]) > tol or abs(high - ref[1]) > tol:
        _wrong(
            f"On {case} your interval is ({low:.3f}, {high:.3f}); a percentile bootstrap "
            f"gives about ({ref[0]:.3f}, {ref[1]:.3f}).",
            "draw len(scores) indices with replacement per resample, take each "
            "resample's mean, then np.quantile(means, [0.025, 0.975]).",
        )


def check_05_stretch(answer: Callable[..., Any] | None, run: RunFolder | Path | str) -> bool:
    """A learner's percentile bootstrap ``my_ci(scores, n_boot, seed) -> (low, high)``.

    Verifies it on synthetic pair scores (within 0.06 of ``bootstrap_ci`` for a skewed 20, where
    a normal approximation would leave [0, 1]; within 0.03 for 300), on the run's pair scores of
    every model (within 0.15: another random stream moves a percentile of a handful of pairs by a
    step or two), on equal scores (a zero-width interval), and that the same seed gives the same
    interval.
    """
    if answer is None:
        return _not_answered("resample the pair scores with replacement n_boot times; 2.5/97.5%.")
    import numpy as np

    fn = _callable(answer, "my_ci(scores, n_boot, seed) -> (low, high)")
    synthetic = np.random.default_rng(7).choice([0.0, 0.5, 1.0], size=300)
    cases = {
        "19 right pairs and 1 wrong": (np.array([1.0] * 19 + [0.0]), 0.06),
        "300 synthetic pair scores": (synthetic, 0.03),
    }
    cases |= {f"the run's pairs of {m!r}": (s, 0.15) for m, s in _pair_scores(_run(run)).items()}
    for case, (scores, tol) in cases.items():
        _check_interval(fn, scores, tol, case)
    if _ci(fn, np.full(10, 0.5), 0, "ten scores of 0.5") != (0.5, 0.5):
        _wrong(
            "Ten equal scores must give a zero-width interval (0.5, 0.5).",
            "every resample of equal values has the same mean.",
        )
    if _ci(fn, synthetic, 3, "seed 3") != _ci(fn, synthetic, 3, "seed 3, again"):
        _wrong(
            "The same scores and seed gave two different intervals.",
            "make the generator inside the function: np.random.default_rng(seed).",
        )
    return _ok(
        f"your bootstrap agrees with bootstrap_ci on {len(cases)} score sets, and is reproducible."
    )


# ----------------------------------------------------------------------------------------------
# 06 · Personalized generation
# ----------------------------------------------------------------------------------------------


def _drafts(run: RunFolder) -> list[dict[str, Any]]:
    with (run.path / "bon" / "drafts.jsonl").open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def check_06_warmup(answer: Callable[[int, int], int] | None, run: RunFolder | Path | str) -> bool:
    """A learner's ``n_comparisons(n_tasks, n_drafts)``: judge calls of the round-robin.

    Verifies it against ``len(comparison_plan(n_drafts)) * n_tasks`` for several sizes and
    against the comparisons this run recorded in bon/info.json.
    """
    if answer is None:
        return _not_answered("every draft meets every other draft twice (as A and as B).")
    from persrm_utils.best_of_n import comparison_plan

    fn = _callable(answer, "n_comparisons(n_tasks, n_drafts) -> int")
    info = json.loads((_run(run).path / "bon" / "info.json").read_text(encoding="utf-8"))
    sizes = [(1, 2), (3, 3), (6, 4), (24, 4), (48, 6), (info["tasks"], info["drafts"])]
    for tasks, n in sizes:
        expected = tasks * len(comparison_plan(n))
        got = _call(fn, (tasks, n), f"n_tasks={tasks}, n_drafts={n}")
        if got != expected:
            _wrong(
                f"n_comparisons({tasks}, {n}) returned {got!r}, expected {expected}.",
                "each of the n drafts meets the n - 1 others twice, per task.",
            )
    if fn(info["tasks"], info["drafts"]) != info["comparisons"]:
        _wrong(
            f"This run recorded {info['comparisons']} comparisons in bon/info.json.",
            "compare with the tasks and drafts it records.",
        )
    return _ok(
        f"this run made {info['comparisons']} comparisons; the 24gb profile makes {fn(48, 6):,}."
    )


def _nan_argmin(values: Sequence[float]) -> list[int]:
    """Every index of the smallest value, NaN (an empty draft) never chosen."""
    finite = [v for v in values if v is not None and not math.isnan(v)]
    if not finite:
        return []
    return [i for i, v in enumerate(values) if v == min(finite)]


def check_06_core(answer: Mapping[str, Any] | None, run: RunFolder | Path | str) -> bool:
    """Re-pick every task's draft by the smallest style distance, from bon/drafts.jsonl.

    Verifies ``answer["picks"]`` (task id -> draft index; any tie is right) and
    ``answer["mean_style_distance"]`` of those picks against the stored ``style_distance``
    lists: the referee's own measure used as the picking rule.
    """
    if answer is None:
        return _not_answered("per task in bon/drafts.jsonl: argmin of 'style_distance'.")
    got = _mapping(
        answer,
        ["picks", "mean_style_distance"],
        "{'picks': {'bon-...': 2, ...}, 'mean_style_distance': 8.9}",
    )
    rows = _drafts(_run(run))
    picks = got["picks"]
    if not isinstance(picks, Mapping) or set(picks) != {r["task_id"] for r in rows}:
        _wrong(
            f"answer['picks'] should map each of the {len(rows)} task ids to a draft index.",
            "key by row['task_id'] for every row of bon/drafts.jsonl.",
        )
    chosen = []
    for row in rows:
        best = _nan_argmin(row["style_distance"])
        if picks[row["task_id"]] not in best:
            _wrong(
                f"Task {row['task_id']}: the closest draft is {best}, you picked "
                f"{picks[row['task_id']]!r}.",
                "smallest style_distance wins; a NaN (empty draft) never does.",
            )
        chosen.append(row["style_distance"][picks[row["task_id"]]])
    mean = sum(chosen) / len(chosen)
    if abs(_number(got["mean_style_distance"], "answer['mean_style_distance']") - mean) > 1e-6:
        _wrong(
            f"The mean style distance of these picks is {mean:.4f}.",
            "average style_distance[pick] over the tasks.",
        )
    real = [r["picks"]["PersRM"] for r in rows]
    persrm = sum(r["style_distance"][i] for r, i in zip(rows, real, strict=True)) / len(rows)
    return _ok(
        f"mean style distance {mean:.2f} (PersRM's picks: {persrm:.2f}): a rule that "
        "optimises the referee's own measure wins on that referee by construction."
    )


def check_06_stretch(answer: Callable[..., Sequence[float]] | None) -> bool:
    """A learner's ``win_rates(n, letters)``: each draft's score in a round-robin tournament.

    Verifies it against ``best_of_n.score_tournament(...).scores`` on 20 seeded tournaments of
    2 to 5 drafts whose letters are "A", "B" or None (no valid verdict: nobody wins), listed
    in ``comparison_plan(n)`` order.
    """
    if answer is None:
        return _not_answered("walk comparison_plan(n): 'A' is a win for i, 'B' for j.")
    from persrm_utils.best_of_n import comparison_plan, score_tournament

    fn = _callable(answer, "win_rates(n, letters) -> list[float]")
    rng = random.Random(0)
    for trial in range(20):
        n = 2 + trial % 4
        letters = [rng.choice(["A", "B", None]) for _ in comparison_plan(n)]
        if trial == 0:
            letters = ["A"] * len(letters)  # a judge that always says A
        expected = score_tournament("t", n, letters).scores
        got = _call(fn, (n, letters), f"n={n}, letters={letters}")
        try:
            close = len(got) == n and all(
                abs(float(g) - e) < 1e-9 for g, e in zip(got, expected, strict=True)
            )
        except (TypeError, ValueError):
            close = False
        if not close:
            _wrong(
                f"For n={n} and letters {letters} you return {got!r}, expected {expected}.",
                "wins / (2 * (n - 1)) per draft; a None verdict is a win for nobody.",
            )
    return _ok("your win rates match score_tournament; an always-'A' judge ties every draft.")
