"""Your own corpus: any collection of authored texts, from a file or a ``datasets`` dataset.

    persrm run --set corpus=file --set corpus_path=emails.csv --set author_field=sender \\
               --set text_field=body

One profile switch (``corpus="file"``) runs the whole series on it. What can be read:

* a JSONL file (one JSON object per line) or a CSV file with a header row;
* a Hugging Face ``datasets`` dataset saved with ``save_to_disk`` (a folder), or a file
  ``datasets.load_dataset`` reads (``.parquet``, ``.json``; every split is read, in name order);

each with an author field and a text field, named by ``author_field`` and ``text_field``. An
author id may be text or a whole number (employee numbers, user ids: ``7`` becomes ``"7"``). An
optional ``text_id`` field (text or a whole number) is used as the text's id, else
``<file stem>:<row>`` (``<file stem>:<split>:<row>`` for a dataset with several splits, whose row
numbers restart in each split).

Real collections are messy, so rows that cannot be used are **dropped, counted and reported**
(never silently): an empty or non-text author or text, a text too short to split into an opening
sentence and a continuation, a text that repeats an earlier one (or an id already used), and
finally every text of an author left with fewer than ``min_texts`` usable texts (one is shown to
the judge as an exemplar, another is tested on). :class:`DropReport` says how many, why, and shows
the first row of each kind. A structural problem (no such file, a missing column, bad JSON, a CSV
row with more or fewer fields than the header) stops the load with a
:class:`~persrm_utils.errors.DataError` naming the file, the line(s) and the fix: a CSV text with
an unquoted comma would otherwise be cut at the comma without a word.
"""

from __future__ import annotations

import csv
import math
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from persrm_utils.data.corpus import text_key
from persrm_utils.data.textsplit import split_opening
from persrm_utils.errors import DataError
from persrm_utils.records import Exemplar, iter_jsonl_objects

#: Why a row was dropped, in the order the checks run.
REASONS = {
    "empty_author": "author empty, missing or not text",
    "empty_text": "text empty, missing or not text",
    "duplicate_id": "text_id already used by an earlier row",
    "duplicate_text": "same text as an earlier row",
    "too_short": "too short to split into an opening sentence and a continuation",
    "few_texts": "author has too few usable texts",
}
_DATASET_FILES = {".parquet": "parquet", ".json": "json", ".arrow": "arrow"}


@dataclass
class DropReport:
    """What a corpus load kept and dropped, why, and one example row per reason."""

    path: str
    rows: int = 0
    kept_texts: int = 0
    kept_authors: int = 0
    dropped: Counter = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)
    authors_dropped: int = 0

    @property
    def n_dropped(self) -> int:
        return sum(self.dropped.values())

    def note(self, reason: str, where: str, row: dict[str, Any] | None = None) -> None:
        self.dropped[reason] += 1
        if reason not in self.examples:
            shown = "" if row is None else f": {_preview(row)}"
            self.examples[reason] = f"{where}{shown}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "kept_texts": self.kept_texts,
            "kept_authors": self.kept_authors,
            "dropped": dict(self.dropped),
            "authors_dropped": self.authors_dropped,
        }

    def __str__(self) -> str:
        lines = [
            f"{self.path}: {self.rows} rows read, {self.kept_texts} texts by {self.kept_authors} "
            f"authors kept, {self.n_dropped} dropped"
        ]
        for reason, n in self.dropped.most_common():
            extra = f" ({self.authors_dropped} authors)" if reason == "few_texts" else ""
            lines.append(f"  - {n} {REASONS[reason]}{extra}, e.g. {self.examples[reason]}")
        return "\n".join(lines)


def _preview(row: dict[str, Any]) -> str:
    text = ", ".join(f"{k}={v!r:.50}" for k, v in list(row.items())[:4])
    return "{" + text + "}"


# ----------------------------------------------------------------------------------------------
# Rows from each kind of source
# ----------------------------------------------------------------------------------------------


#: A row as read: where it is ("line N", "row N", "split 's' row N"), the part of its generated
#: id that makes it unique in the source ("N", or "s:N" when a dataset has several splits), and
#: the row itself.
Row = tuple[str, str, dict[str, Any]]


def _rows(path: Path) -> Iterator[Row]:
    """Every row of the source, with where it is and the key of its generated id."""
    if path.is_dir():
        yield from _dataset_rows(path)
    elif path.suffix.lower() == ".jsonl":
        for n, obj in iter_jsonl_objects(path):
            yield f"line {n}", str(n), obj
    elif path.suffix.lower() in (".csv", ".tsv"):
        yield from _csv_rows(path)
    elif path.suffix.lower() in _DATASET_FILES:
        yield from _dataset_rows(path)
    else:
        raise DataError(
            f"cannot read a corpus from a '{path.suffix or 'extensionless'}' file",
            "use a .jsonl or .csv file, a folder written by Dataset.save_to_disk, or a "
            ".parquet/.json file datasets.load_dataset reads.",
            path=str(path),
        )


def _csv_rows(path: Path) -> list[Row]:
    """Every row of a CSV/TSV file, read whole first so that every malformed row is named."""
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    rows: list[Row] = []
    wrong: list[tuple[int, int]] = []  # (line, fields) of rows whose field count is off
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            reader = csv.reader(fh, delimiter=delimiter)
            header = next(reader, [])
            for fields in reader:
                if not fields:
                    continue  # a blank line, as csv.DictReader skips it
                # the row's last physical line: a quoted field may span several lines
                line = reader.line_num
                if len(fields) != len(header):
                    wrong.append((line, len(fields)))
                    continue
                rows.append((f"line {line}", str(line), dict(zip(header, fields, strict=True))))
    except UnicodeDecodeError as exc:
        raise DataError(
            f"is not UTF-8 (byte offset {exc.start})",
            "re-save the CSV as UTF-8 (in a spreadsheet: 'CSV UTF-8').",
            path=str(path),
        ) from None
    except csv.Error as exc:
        raise DataError(f"is not a readable CSV ({exc})", "check its quoting.",
                        path=str(path)) from None  # fmt: skip
    if wrong:
        raise _field_count_error(path, len(header), wrong, delimiter)
    return rows


def _field_count_error(
    path: Path, n_header: int, wrong: list[tuple[int, int]], delimiter: str
) -> DataError:
    """Rows with more or fewer fields than the header, every one named.

    Python's csv reader would file the extra fields of such a row under no name and keep the
    text cut at the first unquoted comma: a shorter text that looks fine. Stopping is the only
    honest answer, since the reader cannot tell where the text was meant to end.
    """
    shown = ", ".join(
        f"line {line} has {n}" if i else f"line {line} has {n} field{'s' * (n != 1)}"
        for i, (line, n) in enumerate(wrong[:10])
    )
    more = f" and {len(wrong) - 10} more" if len(wrong) > 10 else ""
    sep = "a tab" if delimiter == "\t" else "a comma"
    return DataError(
        f"{len(wrong)} row{'s' if len(wrong) > 1 else ''} "
        f"{'have' if len(wrong) > 1 else 'has'} a different number of fields than the header "
        f"({n_header}): {shown}{more}",
        f"a text holding {sep} outside quotes is split there and would be cut short: put each "
        'text in double quotes ("...", a quote inside written as ""), as a spreadsheet\'s '
        "'Save as CSV' does. A row with too few fields lacks a value: fill it in, or delete "
        "the row.",
        path=str(path),
        line=wrong[0][0],
    )


def _dataset_rows(path: Path) -> Iterator[Row]:
    """Rows of a saved ``datasets`` dataset (folder) or of a file ``load_dataset`` reads."""
    import datasets

    try:
        if path.is_dir():
            data = datasets.load_from_disk(str(path))
        else:
            data = datasets.load_dataset(_DATASET_FILES[path.suffix.lower()],
                                         data_files=str(path))  # fmt: skip
    except (FileNotFoundError, ValueError, OSError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(
            f"could not be read as a datasets dataset ({first[:200]})",
            "point corpus_path at a folder written by Dataset.save_to_disk (it holds "
            "dataset_info.json), or at a .jsonl/.csv/.parquet file.",
            path=str(path),
        ) from None
    parts = (
        [(name, data[name]) for name in sorted(data)]
        if isinstance(data, datasets.DatasetDict)
        else [("", data)]
    )
    for name, part in parts:
        prefix = f"split '{name}' " if name else ""
        for i, row in enumerate(part, 1):
            # row numbers restart in each split: the split's name keeps generated ids unique
            yield f"{prefix}row {i}", f"{name}:{i}" if len(parts) > 1 else str(i), row


# ----------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------


def _check_columns(row: dict[str, Any], path: Path, author_field: str, text_field: str) -> None:
    """The first row must have both fields: a missing column is a mapping error, not bad rows."""
    for name, setting in ((author_field, "author_field"), (text_field, "text_field")):
        if name not in row:
            have = ", ".join(sorted(map(str, row))) or "none"
            raise DataError(
                f"has no field '{name}' (its fields: {have})",
                f"name the field that holds the {setting.split('_')[0]}: "
                f"--set {setting}=<field> (or OVERRIDES={{'{setting}': ...}}).",
                path=str(path),
                field=name,
            )


def load_corpus_file(
    path: Path | str,
    author_field: str = "author",
    text_field: str = "text",
    min_texts: int = 2,
) -> tuple[list[Exemplar], DropReport]:
    """Every usable text of the source as an Exemplar, and the report of what was dropped."""

    path = Path(path)
    if not path.exists():
        raise DataError(
            "corpus file not found",
            "check corpus_path (relative paths are read from where the notebook or command "
            "runs; an absolute path is safest).",
            path=str(path),
        )
    report = DropReport(path=str(path))
    ids: dict[str, str] = {}  # text id -> where the row that has it is
    texts: set[str] = set()
    kept: dict[str, list[tuple[str, Exemplar]]] = defaultdict(list)
    for where, row_key, row in _rows(path):
        if report.rows == 0:
            _check_columns(row, path, author_field, text_field)
        report.rows += 1
        author, text = _as_id(row.get(author_field)), row.get(text_field)
        if author is None:
            report.note("empty_author", where, row)
            continue
        if not isinstance(text, str) or not text.strip():
            report.note("empty_text", where, row)
            continue
        text_id = _as_id(row.get("text_id"))
        if text_id is not None and text_id in ids:
            report.note("duplicate_id", f"{where} (text_id '{text_id}' of {ids[text_id]})", row)
            continue
        if text_id is None:
            text_id = _generated_id(f"{path.stem}:{row_key}", ids)
        key = text_key(text)
        if key in texts:
            report.note("duplicate_text", where, row)
            continue
        try:
            prompt, output = split_opening(text)
        except DataError:
            report.note("too_short", where, row)
            continue
        ids[text_id] = where
        texts.add(key)
        meta = {"file": path.name, "row": where}
        ex = Exemplar(author_id=author, text_id=text_id, prompt=prompt, output=output,
                      source="file", meta=meta)  # fmt: skip
        kept[author].append((where, ex))
    if report.rows == 0:
        raise DataError("holds no rows", "add one row per text (author and text).", path=str(path))
    out: list[Exemplar] = []
    for author in sorted(kept):
        rows = kept[author]
        if len(rows) < min_texts:
            report.authors_dropped += 1
            for where, _ in rows:
                report.note("few_texts", f"{where} (author '{author}', {len(rows)} text(s))")
            continue
        out += [ex for _, ex in rows]
    report.kept_texts = len(out)
    report.kept_authors = len({ex.author_id for ex in out})
    return out, report


def _as_id(value: Any) -> str | None:
    """An author or text id as text: a non-empty string (stripped) or a whole number, else None.

    Numbers are common ids (a CSV column a spreadsheet typed, an int column of a dataset); a
    whole float (``7.0``: an int column with a gap, as pandas stores it) is the number ``7``.
    True/False is an int in Python but never an id.
    """
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))
    return None


def _generated_id(base: str, ids: dict[str, str]) -> str:
    """``base``, or ``base#2``, ``base#3``... when an earlier row already has it as its own id.

    A row without a text_id never repeats an id, so it is never dropped as a duplicate id.
    """
    text_id, n = base, 1
    while text_id in ids:
        n += 1
        text_id = f"{base}#{n}"
    return text_id


def require_authors(report: DropReport, needed: int, detail: str) -> None:
    """Stop with how many usable authors the corpus has and the profile needs."""
    if report.kept_authors < needed:
        raise DataError(
            f"the corpus has {report.kept_authors} usable authors, the profile needs {needed} "
            f"({detail}).\n{report}",
            "add texts (at least 2 per author), fix the dropped rows listed above, or lower "
            "n_train_authors / n_val_authors / n_test_authors.",
            path=report.path,
        )
