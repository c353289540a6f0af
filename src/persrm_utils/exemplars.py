"""Stage 01 as functions: pick the authors and texts a profile asks for, and split them.

The notebook ``01_exemplars`` calls :func:`collect` and explains each step; the same call runs
from the command line and in tests. Splits are by author (design §2): *test* authors are never
seen in training (can the reward model generalise to a new user?), and a *seen_test* share of each
training author's texts is held out for comparison (does it do better on people it has met?).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from persrm_utils.errors import DataError
from persrm_utils.profiles import Profile
from persrm_utils.records import Exemplar
from persrm_utils.splits import seen_author_split, split_by_author
from persrm_utils.textsplit import sentences


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
    from persrm_utils.corpus import default_c50_root, seed_path

    if profile.corpus == "seed":
        return seed_path()
    return Path(c50_root) if c50_root is not None else default_c50_root()


def corpus_record(profile: Profile, c50_root: Path | None = None) -> dict[str, str]:
    """What the manifest records about the corpus: its kind, where it was read, a content hash.

    The hash covers every file of the corpus (for a folder, their names and contents), so two
    runs that say ``c50`` can be told apart when they read different copies.
    """
    from persrm_utils.runs import sha256_of

    where = corpus_location(profile, c50_root).resolve()
    return {"corpus": profile.corpus, "path": str(where), "sha256": sha256_of(where)}


def load_corpus(profile: Profile, c50_root: Path | None = None) -> list[Exemplar]:
    """The profile's corpus: the built-in seed texts, or Reuters C50 (train and test folders)."""
    from persrm_utils.corpus import load_c50, load_seed

    if profile.corpus == "seed":
        return load_seed()
    root = corpus_location(profile, c50_root)
    return load_c50(root, split="all", max_per_author=profile.texts_per_author)


def read_exemplars(path: Path | str) -> list[Exemplar]:
    """``exemplars.jsonl`` as notebook 01 wrote it: every line an Exemplar with ``meta.split``.

    A line without a split (an edited file, or exemplars from elsewhere) is named with its line
    and the fix, instead of surfacing later as a KeyError.
    """
    from persrm_utils.records import read_jsonl_numbered

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


def _check_own_against_corpus(corpus: Sequence[Exemplar], own: Sequence[Exemplar]) -> None:
    """Your texts must not reuse a corpus text id, nor be a corpus text under another id."""
    from persrm_utils.corpus import text_key

    by_id = {ex.text_id: ex for ex in corpus}
    by_prompt: dict[str, list[Exemplar]] = defaultdict(list)
    for ex in corpus:
        by_prompt[text_key(ex.prompt)].append(ex)
    for ex in own:
        where = {"path": ex.meta.get("file"), "line": ex.meta.get("line")}
        where = {k: (str(v) if k == "path" else int(v)) for k, v in where.items() if v is not None}
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
    wanted = profile.n_train_authors + profile.n_val_authors + profile.n_test_authors
    authors = sorted(by_author)
    if len(authors) < wanted:
        raise DataError(
            f"profile '{profile.name}' needs {wanted} authors "
            f"({profile.n_train_authors} train + {profile.n_val_authors} val + "
            f"{profile.n_test_authors} test) but the corpus has {len(authors)}",
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
