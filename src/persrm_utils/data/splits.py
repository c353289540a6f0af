"""Train/validation/test splits by author, the way PersRM-R1 is evaluated.

The question the series asks is whether a reward model generalises to a *new* user from a few
exemplars, so the main split holds whole authors out: a test author's texts are never seen in
training or validation. A second, "seen-author" split holds out some texts of every author
instead, to measure how much easier it is to judge someone the model has already read.

Both are deterministic given ``seed`` and do not depend on the order of the input: exemplars are
sorted by (author, text) first, and each draw uses its own ``random.Random``.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable

from persrm_utils.errors import DataError
from persrm_utils.records import Exemplar


def _by_author(exemplars: Iterable[Exemplar]) -> dict[str, list[Exemplar]]:
    """Group exemplars by author, sorted by author then text id (an order-independent start)."""
    groups: dict[str, list[Exemplar]] = defaultdict(list)
    for ex in sorted(exemplars, key=lambda e: (e.author_id, e.text_id)):
        groups[ex.author_id].append(ex)
    return dict(sorted(groups.items()))


def _check_sizes(n_authors: int, n_val: int, n_test: int) -> None:
    """Refuse sizes that would leave no training author (or make no sense)."""
    if n_val < 0 or n_test < 0:
        raise DataError(
            f"negative split size (n_val_authors={n_val}, n_test_authors={n_test})",
            "use 0 or more authors for validation and test.",
        )
    if n_val + n_test >= n_authors:
        raise DataError(
            f"too few authors: {n_authors} in the data, but {n_val} for validation and {n_test} "
            "for test leave none for training",
            f"lower n_val_authors + n_test_authors to at most {n_authors - 1}, or load more "
            "authors (e.g. Reuters C50 has 50).",
        )


def split_by_author(
    exemplars: Iterable[Exemplar], n_val_authors: int, n_test_authors: int, seed: int
) -> dict[str, list[Exemplar]]:
    """Split into ``train``/``val``/``test`` with disjoint authors ("unseen authors").

    Authors are sorted, shuffled with ``random.Random(seed)``, and the first ``n_test_authors``
    become test, the next ``n_val_authors`` validation, the rest training.
    """
    groups = _by_author(exemplars)
    _check_sizes(len(groups), n_val_authors, n_test_authors)
    authors = list(groups)
    random.Random(seed).shuffle(authors)
    test = authors[:n_test_authors]
    val = authors[n_test_authors : n_test_authors + n_val_authors]
    train = authors[n_test_authors + n_val_authors :]
    return {
        name: [ex for a in sorted(chosen) for ex in groups[a]]
        for name, chosen in (("train", train), ("val", val), ("test", test))
    }


def _n_held_out(n_texts: int, frac: float) -> int:
    """How many of an author's texts to hold out: about ``frac``, at least 1, never all."""
    return min(max(1, round(frac * n_texts)), n_texts - 1)


def seen_author_split(
    exemplars: Iterable[Exemplar], frac: float, seed: int
) -> dict[str, list[Exemplar]]:
    """Hold out about ``frac`` of every author's texts: ``train`` keeps the rest, ``test`` them.

    Every author appears on both sides (that is the point: "seen" authors). Each author keeps at
    least one training text and gives at least one test text, so every author needs two texts.
    Each author is shuffled with its own generator seeded by ``(seed, author)``, so adding an
    author does not change the split of the others.
    """
    if not 0.0 < frac < 1.0:
        raise DataError(f"frac={frac} is not between 0 and 1", "use e.g. frac=0.2.")
    train: list[Exemplar] = []
    test: list[Exemplar] = []
    for author, texts in _by_author(exemplars).items():
        if len(texts) < 2:
            raise DataError(
                f"author '{author}' has only 1 text; a seen-author split needs at least 2 (one "
                "to train on, one to test on)",
                f"add a text by '{author}', or leave this author out of the seen-author split.",
                field="author_id",
            )
        order = list(range(len(texts)))
        random.Random(f"{seed}:{author}").shuffle(order)
        held = set(order[: _n_held_out(len(texts), frac)])
        train += [ex for i, ex in enumerate(texts) if i not in held]
        test += [ex for i, ex in enumerate(texts) if i in held]
    return {"train": train, "test": test}
