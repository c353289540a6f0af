"""Every relative link in the docs and the notebooks' text points at a file the repository holds.

The published run pages once linked plots that were never copied into ``docs/results``: a
reader on GitHub saw broken images under every heading of "Figures". This scan catches a link
to a missing file wherever the docs or a notebook's markdown cell holds one.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from persrm_utils.paths import project_root

ROOT = project_root()
#: a markdown link or image: [text](target) or ![alt](target)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def relative_targets(text: str) -> list[str]:
    """The link targets in ``text`` that name a file of this repository (no URL, no anchor)."""
    targets = []
    for match in LINK.finditer(text):
        target = match.group(1).split("#", 1)[0]
        if target and "://" not in target and not target.startswith("mailto:"):
            targets.append(target)
    return targets


def _documents() -> list[tuple[Path, str]]:
    docs = [ROOT / "README.md", ROOT / "RESULTS.md", *sorted((ROOT / "docs").rglob("*.md"))]
    out = [(path, path.read_text(encoding="utf-8")) for path in docs if path.is_file()]
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = nbformat.read(path, as_version=4).cells
        out.append((path, "\n".join(c.source for c in cells if c.cell_type == "markdown")))
    return out


def test_the_scan_reads_links_and_skips_urls_and_anchors():
    text = "[a](docs/x.md#part) ![b](figures/y.png) [c](https://host.org/z) [d](#local)"
    assert relative_targets(text) == ["docs/x.md", "figures/y.png"]


@pytest.mark.parametrize("path,text", _documents(), ids=lambda v: getattr(v, "name", "text"))
def test_every_relative_link_resolves(path: Path, text: str):
    missing = [t for t in relative_targets(text) if not (path.parent / t).exists()]
    assert not missing, f"{path.relative_to(ROOT)} links files that do not exist: {missing}"
