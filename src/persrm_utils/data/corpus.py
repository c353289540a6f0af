"""Where exemplars come from: Reuters C50, a user's own JSONL or pasted texts, and the seed data.

Every source ends as the same :class:`~persrm_utils.records.Exemplar` list, so the rest of the
series never needs to know whether an author is a Reuters journalist, a fictional seed author or
the learner. Loading is strict and deterministic: files are read in sorted order, a layout or
encoding problem stops the load with a :class:`~persrm_utils.errors.DataError` that names the
folder, file or line and says how to fix it, and nothing is skipped silently.
"""

from __future__ import annotations

import hashlib
import html
import os
import re
import shutil
import urllib.request
import zipfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from persrm_utils import paths
from persrm_utils.data.textsplit import split_opening
from persrm_utils.errors import DataError
from persrm_utils.records import (
    Exemplar,
    Source,
    TextRecord,
    iter_jsonl_objects,
    read_jsonl,
    read_jsonl_numbered,
)
from persrm_utils.records import write_jsonl as _write_jsonl

Split = Literal["train", "test", "all"]

#: The UCI archive of Reuter_50_50 (Liu, Zhi, 2011; CC BY 4.0).
C50_URL = "https://archive.ics.uci.edu/static/public/217/reuter+50+50.zip"

#: SHA-256 of the archive at ``C50_URL``: not yet recorded (this code was written without access
#: to the archive, and a digest is never invented). Until it is, ``download_c50`` prints the digest
#: it computes and verifies the unpacked corpus by its file counts instead (see
#: :func:`verify_c50_counts`); paste the printed digest here once it has been checked against a
#: trusted copy, and every later download is compared with it.
C50_SHA256: str | None = None
#: Reuter_50_50 as published: 50 authors, 50 articles each in C50train/ and again in C50test/.
C50_AUTHORS = 50
C50_TEXTS_PER_AUTHOR = 50

_SPLIT_DIRS = {"train": "C50train", "test": "C50test"}
_NUMBER = re.compile(r"\d+")
_ORIGINAL_LAYOUT = "C50train/<AuthorName>/<id>newsML.txt and C50test/<AuthorName>/<id>newsML.txt"


# ----------------------------------------------------------------------------------------------
# Reuters C50
# ----------------------------------------------------------------------------------------------


def default_c50_root() -> Path:
    """``$PERSRM_C50_DIR`` when set (checked: a wrong folder is a layout error, with no fallback
    to another copy), else ``paths.find_c50()``, or a DataError that lists every place looked at.
    """
    explicit = paths.explicit_c50()
    if explicit is not None:
        try:
            check_c50_layout(explicit)
        except DataError as exc:
            problem = exc.problem.removeprefix(f"{exc.path}: ")
            raise DataError(
                f"{paths.ENV_C50} points here, but {problem}",
                exc.fix,
                path=exc.path,
            ) from None
        return explicit
    root = paths.find_c50()
    if root is None and os.environ.get(paths.ENV_C50_FETCH) == "1":
        # Colab: nothing persists between runtimes, so the corpus is fetched on first use.
        return download_c50(paths.project_root() / "data" / "reuters_c50")
    if root is None:
        looked = "\n".join(f"  - {p}" for p in paths.c50_candidates())
        raise DataError(
            f"no local copy of Reuters C50 was found. Looked in:\n{looked}",
            f"set the environment variable {paths.ENV_C50} to the folder that holds C50train/ "
            "and C50test/, or call download_c50(folder) when online.",
        )
    return root


def _find_layout_below(root: Path, depth: int = 3) -> Path | None:
    """The first folder under ``root`` (within ``depth`` levels) that holds C50train/."""
    frontier = [root]
    for _ in range(depth):
        nxt: list[Path] = []
        for folder in frontier:
            for child in sorted(p for p in folder.iterdir() if p.is_dir()):
                if (child / "C50train").is_dir():
                    return child
                nxt.append(child)
        frontier = nxt
    return None


def _layout_problem(root: Path) -> DataError:
    """Explain the most likely mistake when ``root`` does not hold C50train/ and C50test/."""
    where = str(root)
    if any(root.glob("*.txt")):
        return DataError(
            "this looks like one author's folder (it holds .txt files), not the corpus root",
            f"point at the folder two levels up, the one that holds C50train/ and C50test/ "
            f"(expected layout: {_ORIGINAL_LAYOUT}).",
            path=where,
        )
    if any(any(d.glob("*.txt")) for d in root.iterdir() if d.is_dir()):
        return DataError(
            "this looks like C50train/ or C50test/ itself (its subfolders hold .txt files)",
            f"point at its parent folder, the one that holds both C50train/ and C50test/ "
            f"(expected layout: {_ORIGINAL_LAYOUT}).",
            path=where,
        )
    below = _find_layout_below(root)
    if below is not None:
        return DataError(
            "C50train/ is not directly in this folder but further down",
            f"point at {below} instead.",
            path=where,
        )
    if any(root.glob("*.zip")):
        return DataError(
            "this folder holds a .zip archive but no unpacked C50train/ folder",
            "unzip the archive here (the UCI archive may contain a second C50.zip: unzip that "
            "too), or call download_c50(folder), which does both.",
            path=where,
        )
    return DataError(
        "this folder does not hold C50train/ and C50test/",
        f"point at the folder that holds them (expected layout: {_ORIGINAL_LAYOUT}), or call "
        "download_c50(folder) when online.",
        path=where,
    )


def check_c50_layout(root: Path, split: Split = "all") -> list[str]:
    """Check that ``root`` has the original C50 layout for ``split``; return the split names.

    Catches the usual mistakes (pointing at the zip's parent, at C50train/ itself, or at one
    author's folder) before any file is read, so the error names the folder, not a random file.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(
            "folder not found",
            f"check the path, or set {paths.ENV_C50} to the folder that holds C50train/ (or "
            "call download_c50(folder) when online).",
            path=str(root),
        )
    if not any((root / d).is_dir() for d in _SPLIT_DIRS.values()):
        raise _layout_problem(root)
    names = ["train", "test"] if split == "all" else [split]
    missing = [_SPLIT_DIRS[n] for n in names if not (root / _SPLIT_DIRS[n]).is_dir()]
    if missing:
        have = "train" if (root / "C50train").is_dir() else "test"
        raise DataError(
            f"{', '.join(missing)}/ is missing (C50{have}/ is there)",
            f"unpack the complete archive, or load only the split you have with split='{have}'.",
            path=str(root),
        )
    return names


def _author_dirs(split_dir: Path) -> list[Path]:
    """Author folders of one split, sorted; a split with none is a layout error."""
    dirs = sorted(p for p in split_dir.iterdir() if p.is_dir())
    if not dirs:
        raise DataError(
            "holds no author folders",
            f"re-extract the archive: the expected layout is {_ORIGINAL_LAYOUT}.",
            path=str(split_dir),
        )
    return dirs


def _file_order(path: Path) -> tuple[int, str]:
    """Sort by the numeric article id (roughly publication order), then by name."""
    m = _NUMBER.match(path.name)
    return (int(m.group(0)) if m else -1, path.name)


def _article_files(author_dir: Path) -> list[Path]:
    """The .txt files of one author folder; an empty one is an error, not a silent gap."""
    files = sorted(author_dir.glob("*.txt"), key=_file_order)
    folders = [f for f in files if not f.is_file()]
    if folders:
        raise DataError(
            "is a folder, but every *.txt in an author folder must be one article file",
            "move or rename it (a C50 author folder holds only <id>newsML.txt files).",
            path=str(folders[0]),
        )
    if not files:
        raise DataError(
            "this author folder holds no .txt files",
            "re-extract the archive, or delete the folder if you added it by mistake.",
            path=str(author_dir),
        )
    return files


def read_c50_file(path: Path) -> str:
    """Decode one C50 article and undo the extraction artefacts of the original corpus.

    The UCI files are plain ASCII with Windows (CRLF) line ends, and ``&`` appears as the HTML
    entity ``&amp;`` (AT&amp;T). Decoding is strict UTF-8 (ASCII is a subset), so a damaged or
    re-encoded file is named instead of being read as mojibake.
    """
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"is not ASCII/UTF-8: byte 0x{raw[exc.start]:02x} at byte offset {exc.start}",
            "the original UCI files are plain ASCII; re-extract this file from the archive, or "
            "re-save it as UTF-8.",
            path=str(path),
        ) from None
    return html.unescape(text.replace("\r\n", "\n").replace("\r", "\n"))


def _c50_exemplar(path: Path, root: Path, split_name: str, author: str) -> Exemplar:
    """One C50 article as an Exemplar; a text that cannot be split names its file."""
    try:
        prompt, output = split_opening(read_c50_file(path))
    except DataError as exc:
        if exc.path is not None:
            raise
        raise DataError(exc.problem, exc.fix, path=str(path)) from None
    return Exemplar(
        author_id=author,
        text_id=f"{split_name}/{path.stem}",
        prompt=prompt,
        output=output,
        source="c50",
        meta={"split": split_name, "file": path.relative_to(root).as_posix()},
    )


def _check_authors(wanted: Sequence[str], available: Sequence[str], root: Path) -> None:
    """Refuse author names that are not in the corpus (usually a typo in a config cell)."""
    unknown = [a for a in wanted if a not in available]
    if unknown:
        raise DataError(
            f"unknown C50 author(s): {', '.join(unknown)}",
            f"use folder names exactly as they are, e.g. {', '.join(available[:4])} "
            f"({len(available)} authors in all).",
            path=str(root),
        )


def load_c50(
    root: Path | None = None,
    split: Split = "all",
    authors: list[str] | None = None,
    max_per_author: int | None = None,
) -> list[Exemplar]:
    """Read Reuters C50 from its original layout into Exemplars, in a fixed order.

    ``text_id`` is ``"<split>/<file stem>"`` (unique: file ids repeat across splits only by
    chance, and never do in C50), ``author_id`` the folder name. With ``split="all"`` an
    author's training articles come before the test ones, so ``max_per_author`` takes from
    training first.
    """
    root = Path(root) if root is not None else default_c50_root()
    if max_per_author is not None and max_per_author < 1:
        raise DataError(f"max_per_author={max_per_author}", "use a positive number or None.")
    split_names = check_c50_layout(root, split)
    by_split = {n: _author_dirs(root / _SPLIT_DIRS[n]) for n in split_names}
    available = sorted({d.name for dirs in by_split.values() for d in dirs})
    if authors is not None:
        _check_authors(authors, available, root)
    chosen = set(authors) if authors is not None else set(available)
    out: list[Exemplar] = []
    taken: Counter[str] = Counter()
    for author in available:
        if author not in chosen:
            continue
        for name in split_names:
            author_dir = root / _SPLIT_DIRS[name] / author
            if not author_dir.is_dir():
                continue
            for path in _article_files(author_dir):
                if max_per_author is not None and taken[author] >= max_per_author:
                    break
                out.append(_c50_exemplar(path, root, name, author))
                taken[author] += 1
    return out


def _sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks (the archive is ~8 MB, fine either way)."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _unpack(archive: Path, dest: Path) -> None:
    """Unzip ``archive`` into ``dest``, then any zip it contained (UCI wraps C50.zip in a zip)."""
    _extract(archive, dest)
    if _find_layout_below(dest, depth=2) is None and not (dest / "C50train").is_dir():
        for inner in sorted(dest.rglob("*.zip")):
            if inner != archive:
                _extract(inner, inner.parent)


def _extract(archive: Path, dest: Path) -> None:
    """Extract one zip; a damaged or non-zip file is named instead of raising BadZipFile."""
    try:
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(dest)  # extractall drops absolute paths and '..' components
    except zipfile.BadZipFile:
        raise DataError(
            "is not a valid zip archive (damaged or incomplete download)",
            "delete it and download again.",
            path=str(archive),
        ) from None


def _fetch(url: str, dest: Path, timeout: float) -> Path:
    """Download ``url`` to ``dest/reuter_50_50.zip`` via a ``.part`` file (no half archives)."""
    archive = dest / "reuter_50_50.zip"
    part = archive.with_suffix(".zip.part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, part.open("wb") as out:
            shutil.copyfileobj(resp, out)
        part.replace(archive)
    except OSError as exc:
        raise DataError(
            f"could not download {url} ({exc})",
            "check the internet connection, or download the archive by hand, unzip it and set "
            f"{paths.ENV_C50} to the folder that holds C50train/.",
            path=str(dest),
        ) from None
    finally:
        part.unlink(missing_ok=True)
    return archive


def _verify(archive: Path, sha256: str | None, url: str) -> str:
    """Compare the archive's SHA-256 with the expected one; print it when none is known."""
    digest = _sha256(archive)
    if sha256 is None:
        print(
            f"Downloaded {archive.name}: SHA-256 {digest} (no checksum recorded yet, so the "
            "archive is verified by its file counts after unpacking)."
        )
    elif digest != sha256.lower():
        archive.unlink()
        raise DataError(
            f"checksum mismatch for {url}: got {digest}, expected {sha256}",
            "the download is damaged or the archive changed; retry, or download it by hand.",
            path=str(archive.parent),
        )
    return digest


def download_c50(
    dest: Path,
    url: str = C50_URL,
    sha256: str | None = C50_SHA256,
    timeout: float = 60.0,
    expect: tuple[int, int] = (C50_AUTHORS, C50_TEXTS_PER_AUTHOR),
) -> Path:
    """Download the UCI archive into ``dest``, verify it, unpack it, count what it holds.

    Returns the folder holding C50train/ and C50test/ (pass it to :func:`load_c50` or set
    ``PERSRM_C50_DIR`` to it). The archive is compared with ``sha256`` when one is known; with
    none recorded (the default today, see ``C50_SHA256``) the computed digest is printed, and
    either way the unpacked folders must hold ``expect`` = (authors, texts per author) per split.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    archive = _fetch(url, dest, timeout)
    _verify(archive, sha256, url)
    _unpack(archive, dest)
    root = dest if (dest / "C50train").is_dir() else _find_layout_below(dest)
    if root is None:
        raise _layout_problem(dest)
    check_c50_layout(root)
    verify_c50_counts(root, *expect)
    return root


def verify_c50_counts(
    root: Path, authors: int = C50_AUTHORS, texts_per_author: int = C50_TEXTS_PER_AUTHOR
) -> None:
    """Check that both splits hold ``authors`` folders of ``texts_per_author`` .txt files each.

    The check that stands in for the archive's checksum while none is recorded: a truncated
    download, a half-extracted inner zip or another dataset behind the same URL changes these
    counts, and the error names the folder that is off.
    """
    for split_dir in _SPLIT_DIRS.values():
        dirs = _author_dirs(Path(root) / split_dir)
        if len(dirs) != authors:
            raise DataError(
                f"holds {len(dirs)} author folders, Reuter_50_50 has {authors}",
                "delete the folder and download the archive again (an incomplete extraction?).",
                path=str(Path(root) / split_dir),
            )
        for author_dir in dirs:
            n = len(list(author_dir.glob("*.txt")))
            if n != texts_per_author:
                raise DataError(
                    f"holds {n} .txt files, every Reuter_50_50 author has {texts_per_author}",
                    "delete the folder and download the archive again.",
                    path=str(author_dir),
                )


# ----------------------------------------------------------------------------------------------
# A user's own texts
# ----------------------------------------------------------------------------------------------


def _split_or_raise(text: str, path: str | None, line: int | None, field: str) -> tuple[str, str]:
    """``split_opening`` with the place of the text added to its error."""
    try:
        return split_opening(text)
    except DataError as exc:
        raise DataError(exc.problem, exc.fix, path=path, line=line, field=field) from None


def _require_two_per_author(
    counts: Counter[str], first_line: dict[str, int | None], path: str | None, field: str
) -> None:
    """Each author needs one text to show as an exemplar and another to be tested on."""
    for author, n in sorted(counts.items()):
        if n < 2:
            raise DataError(
                f"author '{author}' has only 1 text; at least 2 are needed (one is shown to the "
                "model as an exemplar, another is held back to test it on)",
                f"add another text by '{author}', or remove this one.",
                path=path,
                line=first_line.get(author),
                field=field,
            )


def _string_field(obj: dict, name: str, path: Path, line: int) -> str:
    """A required, non-empty string field of one JSONL object."""
    if name not in obj:
        raise DataError(
            f"missing field '{name}'",
            f'add "{name}": "..." to this line (or pass the field name your file uses, e.g. '
            f"load_texts_jsonl(path, {'author_field' if 'author' in name else 'text_field'}="
            "'...')).",
            path=str(path),
            line=line,
            field=name,
        )
    value = obj[name]
    if not isinstance(value, str):
        raise DataError(
            f"'{name}' must be a string, got {type(value).__name__} {value!r:.40}",
            "put the value in double quotes.",
            path=str(path),
            line=line,
            field=name,
        )
    if not value.strip():
        raise DataError(
            f"'{name}' is empty",
            "give it some text, or delete this line.",
            path=str(path),
            line=line,
            field=name,
        )
    return value


def load_texts_jsonl(
    path: Path | str, author_field: str = "author_id", text_field: str = "text"
) -> list[Exemplar]:
    """Read a JSONL of whole texts (one per line) and split each into prompt and continuation.

    For a user's own writing or any corpus already in JSONL. Field names are configurable
    because such files come from elsewhere; an optional ``text_id`` field is kept, otherwise the
    id is ``"<file stem>:<line>"``. Errors name the file, line and field.
    """
    path = Path(path)
    out: list[Exemplar] = []
    counts: Counter[str] = Counter()
    first_line: dict[str, int | None] = {}
    seen: dict = {}
    for line, obj in iter_jsonl_objects(path):
        author = _string_field(obj, author_field, path, line)
        text = _string_field(obj, text_field, path, line)
        text_id = obj.get("text_id")
        text_id = text_id if isinstance(text_id, str) and text_id.strip() else f"{path.stem}:{line}"
        _check_unique(text_id, text, line, seen, path, text_field)
        prompt, output = _split_or_raise(text, str(path), line, text_field)
        out.append(
            Exemplar(
                author_id=author,
                text_id=text_id,
                prompt=prompt,
                output=output,
                source="jsonl",
                meta={"file": path.name, "line": line},
            )
        )
        counts[author] += 1
        first_line.setdefault(author, line)
    if not out:
        raise DataError("holds no texts", "add one JSON object per line.", path=str(path))
    _require_two_per_author(counts, first_line, str(path), author_field)
    return out


def exemplars_from_texts(
    author_id: str, texts: list[str], source: Source = "own"
) -> list[Exemplar]:
    """Turn pasted texts by one author into Exemplars (the logic behind notebook 01's text box).

    Refuses what would make a useless or misleading author: no name, fewer than two texts, an
    empty text, a one-sentence text, or the same text twice (it would be tested on itself).
    """
    if not author_id or not author_id.strip():
        raise DataError("the author id is empty", "give yourself a short name, e.g. 'me'.")
    if len(texts) < 2:
        raise DataError(
            f"author '{author_id}' has {len(texts)} text(s); at least 2 are needed (one is shown "
            "to the model as an exemplar, another is held back to test it on)",
            "paste at least two separate pieces of your writing.",
        )
    seen: dict[str, int] = {}
    out: list[Exemplar] = []
    for i, text in enumerate(texts):
        key = " ".join(text.split())
        if key in seen:
            raise DataError(
                f"text {i + 1} repeats text {seen[key] + 1}",
                "remove the duplicate: a text shown as an exemplar must not also be tested on.",
                field=f"texts[{i}]",
            )
        seen[key] = i
        prompt, output = _split_or_raise(text, None, None, f"texts[{i}]")
        out.append(
            Exemplar(
                author_id=author_id,
                text_id=f"{author_id}/{i + 1:03d}",
                prompt=prompt,
                output=output,
                source=source,
            )
        )
    return out


def save_own_texts(path: Path | str, author_id: str, texts: list[str]) -> Path:
    """Save one author's texts to a JSONL (seed schema), replacing that author's earlier texts.

    The texts are checked first (same rules as :func:`exemplars_from_texts`), so a file that was
    saved can always be loaded. Other authors already in the file are kept, so several people
    can add their writing to one file. Written atomically.
    """
    path = Path(path)
    exemplars_from_texts(author_id, texts)
    old = read_jsonl(path, TextRecord) if path.exists() else []
    kept = [r for r in old if r.author_id != author_id]
    new = [
        TextRecord(author_id=author_id, text_id=f"{author_id}/{i + 1:03d}", text=t.strip())
        for i, t in enumerate(texts)
    ]
    return _write_jsonl(path, [*kept, *new])


def load_own_texts(path: Path | str) -> list[Exemplar]:
    """Load a file written by :func:`save_own_texts` back as Exemplars (source ``"own"``).

    Each exemplar keeps the file name and line in ``meta`` so that a later check (a text id or
    a text that is also in the corpus, see :func:`persrm_utils.data.exemplars.assign_splits`) can
    name the line to fix.
    """
    path = Path(path)
    records = read_jsonl_numbered(path, TextRecord)
    if not records:
        raise DataError(
            "holds no texts (the file is empty)",
            "save your texts with the form or save_own_texts(path, name, texts), or delete the "
            "empty file to use MY_TEXTS instead.",
            path=str(path),
        )
    out = _records_to_exemplars(records, "own", path)
    return [
        ex.model_copy(update={"meta": {**ex.meta, "file": path.name, "line": line}})
        for ex, (line, _) in zip(out, records, strict=True)
    ]


# ----------------------------------------------------------------------------------------------
# Seed data
# ----------------------------------------------------------------------------------------------


def seed_path() -> Path:
    """Where the built-in seed authors live: ``data/seed/authors.jsonl`` in the project."""
    return paths.data_dir() / "seed" / "authors.jsonl"


def text_key(text: str) -> str:
    """A text with its whitespace normalised: two texts with the same key are the same text."""
    return " ".join(text.split())


def _check_unique(text_id: str, text: str, line: int, seen: dict, path: Path, field: str) -> None:
    """Refuse a repeated text id, or a text already given under another id, naming both lines.

    A repeated id makes ``{text_id: exemplar}`` keep only one of the texts, so pairs would show
    another author's text as this author's exemplar; a repeated text would show the judge the
    answer itself as an exemplar.
    """
    ids, texts = seen.setdefault("ids", {}), seen.setdefault("texts", {})
    if text_id in ids:
        raise DataError(
            f"text_id '{text_id}' is already used on line {ids[text_id]}",
            "give every text its own text_id (e.g. 'me/004'): pairs look texts up by id.",
            path=str(path),
            line=line,
            field="text_id",
        )
    key = text_key(text)
    if key in texts:
        raise DataError(
            f"this text is the same as line {texts[key]} (under another text_id)",
            "delete one of the two: a text shown as an exemplar must not also be the answer.",
            path=str(path),
            line=line,
            field=field,
        )
    ids[text_id], texts[key] = line, line


def _records_to_exemplars(
    records: list[tuple[int, TextRecord]], source: Source, path: Path
) -> list[Exemplar]:
    """Split numbered TextRecords into Exemplars, naming the line on failure."""
    out: list[Exemplar] = []
    counts: Counter[str] = Counter()
    first: dict[str, int | None] = {}
    seen: dict = {}
    for i, rec in records:
        _check_unique(rec.text_id, rec.text, i, seen, path, "text")
        prompt, output = _split_or_raise(rec.text, str(path), i, "text")
        out.append(
            Exemplar(
                author_id=rec.author_id,
                text_id=rec.text_id,
                prompt=prompt,
                output=output,
                source=source,
            )
        )
        counts[rec.author_id] += 1
        first.setdefault(rec.author_id, i)
    _require_two_per_author(counts, first, str(path), "author_id")
    return out


def load_seed(path: Path | str | None = None) -> list[Exemplar]:
    """The built-in seed authors (6 fictional writers, 8 texts each) as Exemplars.

    Small enough for the smoke profile and CI, distinct enough in style that a working reward
    model should tell them apart; written for this project (CC BY 4.0, see data/README.md).
    """
    path = Path(path) if path is not None else seed_path()
    return _records_to_exemplars(read_jsonl_numbered(path, TextRecord), "seed", path)
