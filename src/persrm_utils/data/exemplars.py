"""Stage 01 as functions: pick the authors and texts a profile asks for, and split them.

The notebook ``01_exemplars`` calls :func:`collect` and explains each step; the same call runs
from the command line and in tests. Splits are by author (docs/design.md §1): *test* authors are
never seen in training (can the reward model generalise to a new user?), and a *seen_test* share
of each training author's texts is held out for comparison (does it do better on people it has
met?).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from persrm_utils.data.corpus import (
    check_c50_layout,
    default_c50_root,
    load_c50,
    load_seed,
    seed_path,
    text_key,
)
from persrm_utils.data.own_corpus import load_corpus_file, require_authors
from persrm_utils.data.splits import seen_author_split, split_by_author
from persrm_utils.data.textsplit import sentences
from persrm_utils.errors import DataError
from persrm_utils.profiles import Profile
from persrm_utils.records import Exemplar, read_jsonl_numbered
from persrm_utils.run.folders import sha256_of

log = logging.getLogger(__name__)


def trim_output(output: str, max_words: int) -> str:
    """Whole sentences from the start of ``output`` up to ``max_words`` words (at least one).

    Long continuations make every later stage slower (generation, SFT, GRPO) without teaching
    more about style; cutting at a sentence end keeps each text a natural piece of writing.
    """
    kept: list[str] = []
    count = 0
    for sentence in sentences(output):
        n = len(sentence.split())
        if kept and count + n > max_words:
            break
        kept.append(sentence)
        count += n
    return " ".join(kept) if kept else output


SPLITS = ("train", "val", "test", "seen_test")


def corpus_location(profile: Profile, c50_root: Path | None = None) -> Path:
    """Where the profile's corpus is read from: the seed file, or the C50 folder.

    An explicit folder (``c50_root`` or ``$PERSRM_C50_DIR``) is used as given: a wrong one is
    a layout error, never a silent fallback to another copy of the corpus.
    """

    if profile.corpus == "seed":
        return seed_path()
    if profile.corpus == "file":
        return Path(str(profile.corpus_path)).expanduser()
    if c50_root is not None:
        return Path(c50_root)
    if profile.corpus_path:
        root = Path(profile.corpus_path).expanduser()
        try:
            check_c50_layout(root)
        except DataError as exc:
            problem = exc.problem.removeprefix(f"{exc.path}: ")
            raise DataError(f"corpus_path points here, but {problem}", exc.fix,
                            path=exc.path) from None  # fmt: skip
        return root
    return default_c50_root()


def corpus_record(
    profile: Profile, c50_root: Path | None = None, report: Any = None
) -> dict[str, Any]:
    """What the manifest records about the corpus: its kind, where it was read, a content hash.

    The hash covers every file of the corpus (for a folder, their names and contents), so two
    runs that say ``c50`` can be told apart when they read different copies. For a file corpus
    the field mapping and the drop counts (``report``, a
    :class:`~persrm_utils.data.own_corpus.DropReport`) are recorded too.
    """

    where = corpus_location(profile, c50_root).resolve()
    out: dict[str, Any] = {"corpus": profile.corpus, "path": str(where)}
    out["sha256"] = sha256_of(where)
    if profile.corpus == "file":
        out |= {"author_field": profile.author_field, "text_field": profile.text_field}
    if report is not None:
        out["report"] = report.to_dict()
    return out


def needed_authors(profile: Profile) -> tuple[int, str]:
    """How many authors the profile's splits need, and the sum spelled out."""
    wanted = profile.n_train_authors + profile.n_val_authors + profile.n_test_authors
    detail = (f"{profile.n_train_authors} train + {profile.n_val_authors} val + "
              f"{profile.n_test_authors} test")  # fmt: skip
    return wanted, detail


def load_corpus_report(profile: Profile, c50_root: Path | None = None) -> tuple[list, Any]:
    """The profile's corpus and, for a file corpus, its :class:`DropReport` (else None).

    A file corpus with fewer usable authors than the profile's splits need stops here, with the
    report, so the user sees at once what was dropped and why.
    """

    if profile.corpus == "seed":
        return load_seed(), None
    root = corpus_location(profile, c50_root)
    if profile.corpus == "file":
        exemplars, report = load_corpus_file(root, profile.author_field, profile.text_field)
        require_authors(report, *needed_authors(profile))
        return exemplars, report
    return load_c50(root, split="all", max_per_author=profile.texts_per_author), None


def load_corpus(profile: Profile, c50_root: Path | None = None) -> list[Exemplar]:
    """The profile's corpus: the seed texts, Reuters C50 (train and test folders), or your file.

    What a file corpus drops is logged as a warning (notebook 01 prints it instead, through
    :func:`load_corpus_report`).
    """
    exemplars, report = load_corpus_report(profile, c50_root)
    if report is not None and report.n_dropped:
        log.warning("%s", report)
    return exemplars


def read_exemplars(path: Path | str) -> list[Exemplar]:
    """``exemplars.jsonl`` as notebook 01 wrote it: every line an Exemplar with ``meta.split``.

    A line without a split (an edited file, or exemplars from elsewhere) is named with its line
    and the fix, instead of surfacing later as a KeyError.
    """

    path = Path(path)
    out = []
    for line, ex in read_jsonl_numbered(path, Exemplar):
        split = ex.meta.get("split")
        if split not in SPLITS:
            got = "has no meta.split" if split is None else f"has meta.split = {split!r}"
            raise DataError(
                f"exemplar '{ex.text_id}' {got}; the pairs need one of {', '.join(SPLITS)}",
                "run 01_exemplars again (it writes the splits), or add "
                '"meta": {"split": "train"} (or val/test/seen_test) to this line.',
                path=str(path),
                line=line,
                field="meta.split",
            )
        out.append(ex)
    return out


def _own_place(ex: Exemplar) -> dict[str, Any]:
    """The file and line an own text came from (from its meta), as DataError arguments."""
    where = {"path": ex.meta.get("file"), "line": ex.meta.get("line")}
    return {k: (str(v) if k == "path" else int(v)) for k, v in where.items() if v is not None}


def _check_own_author(corpus: Sequence[Exemplar], own: Sequence[Exemplar]) -> None:
    """Your author id must not be a corpus author's: the two would count as one person.

    Your texts join the unseen test authors, while that corpus author's texts may be in
    training: the test would then ask about an author the model has read, and report it as a
    new user. Refused rather than renamed, so that the id in every later table is the one you
    chose.
    """
    authors = {ex.author_id for ex in corpus}
    for ex in own:
        if ex.author_id in authors:
            raise DataError(
                f"your author id '{ex.author_id}' is also an author of the corpus: your texts "
                "and theirs would count as one person, and the 'unseen' test author would be "
                "one the model trained on",
                "choose another author id for your texts (e.g. 'me'): MY_NAME or the form's "
                "name in notebook 01, or the author_id field of your file.",
                field="author_id",
                **_own_place(ex),
            )


def _check_own_against_corpus(corpus: Sequence[Exemplar], own: Sequence[Exemplar]) -> None:
    """Your texts must not reuse a corpus author or text id, nor be a corpus text."""

    _check_own_author(corpus, own)
    by_id = {ex.text_id: ex for ex in corpus}
    by_prompt: dict[str, list[Exemplar]] = defaultdict(list)
    for ex in corpus:
        by_prompt[text_key(ex.prompt)].append(ex)
    for ex in own:
        where = _own_place(ex)
        if ex.text_id in by_id:
            other = by_id[ex.text_id]
            raise DataError(
                f"your text_id '{ex.text_id}' is also the id of a corpus text by "
                f"'{other.author_id}': pairs would show that author's text as yours",
                "give your texts their own ids (save_own_texts names them '<you>/001', ...).",
                field="text_id",
                **where,
            )
        output = text_key(ex.output)
        for other in by_prompt.get(text_key(ex.prompt), []):
            theirs = text_key(other.output)
            if output.startswith(theirs) or theirs.startswith(output):
                raise DataError(
                    f"your text '{ex.text_id}' is the corpus text '{other.text_id}' by "
                    f"'{other.author_id}': the judge would be tested on a text it was shown",
                    "remove it from your texts (or use a corpus without it).",
                    field="text",
                    **where,
                )


def select(exemplars: Sequence[Exemplar], profile: Profile) -> list[Exemplar]:
    """The first ``texts_per_author`` texts of the first authors (sorted), as many as needed."""
    by_author: dict[str, list[Exemplar]] = defaultdict(list)
    for ex in exemplars:
        by_author[ex.author_id].append(ex)
    wanted, detail = needed_authors(profile)
    authors = sorted(by_author)
    if len(authors) < wanted:
        raise DataError(
            f"profile '{profile.name}' needs {wanted} authors ({detail}) but the corpus has "
            f"{len(authors)}",
            "lower n_train_authors / n_val_authors / n_test_authors in OVERRIDES, or add texts.",
        )
    out = []
    for author in authors[:wanted]:
        for ex in by_author[author][: profile.texts_per_author]:
            trimmed = trim_output(ex.output, profile.max_output_words)
            out.append(ex.model_copy(update={"output": trimmed}))
    return out


def assign_splits(
    exemplars: Sequence[Exemplar], profile: Profile, own: Sequence[Exemplar] = ()
) -> list[Exemplar]:
    """Every exemplar with ``meta["split"]`` in train / val / test / seen_test.

    The learner's own texts (``own``) join the unseen test authors: the model never trains on
    them, exactly as it would meet a new user.
    """
    _check_own_against_corpus(exemplars, own)
    by_author = split_by_author(
        exemplars, profile.n_val_authors, profile.n_test_authors, profile.seed
    )
    seen = seen_author_split(by_author["train"], profile.seen_author_frac, profile.seed)
    labelled = {
        "train": seen["train"],
        "seen_test": seen["test"],
        "val": by_author["val"],
        "test": [*by_author["test"], *own],
    }
    out = []
    for split, items in labelled.items():
        for ex in items:
            out.append(ex.model_copy(update={"meta": {**ex.meta, "split": split}}))
    return out


def collect(
    profile: Profile, own: Sequence[Exemplar] = (), c50_root: Path | None = None
) -> list[Exemplar]:
    """Load, select, trim and split: the whole of stage 01's data work."""
    return assign_splits(select(load_corpus(profile, c50_root), profile), profile, own)


def split_counts(exemplars: Sequence[Exemplar]) -> dict[str, dict[str, int]]:
    """{split: {"authors": n, "texts": n}} for the notebook's table."""
    authors: dict[str, set[str]] = defaultdict(set)
    texts: dict[str, int] = defaultdict(int)
    for ex in exemplars:
        split = str(ex.meta.get("split"))
        authors[split].add(ex.author_id)
        texts[split] += 1
    return {s: {"authors": len(authors[s]), "texts": texts[s]} for s in sorted(texts)}
