"""Stage 01 as functions: pick the authors and texts a profile asks for, and split them.

The notebook ``01_exemplars`` calls :func:`collect` and explains each step; the same call runs
from the command line and in tests. Splits are by author (docs/design.md §1): *test* authors are
never seen in training (can the reward model generalise to a new user?), and a *seen_test* share
of each training author's texts is held out for comparison (does it do better on people it has
met?).
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


def load_corpus(profile: Profile, c50_root: Path | None = None) -> list[Exemplar]:
    """The profile's corpus: the built-in seed texts, or Reuters C50 (train and test folders)."""
    from persrm_utils.corpus import load_c50, load_seed

    if profile.corpus == "seed":
        return load_seed()
    return load_c50(c50_root, split="all", max_per_author=profile.texts_per_author)


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
