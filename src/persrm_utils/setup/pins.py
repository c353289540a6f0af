"""The pinned versions, read from ``requirements/*.txt`` (the one source of truth).

Used by ``persrm doctor`` (installed vs pinned), by the Colab install cell generator, and by the
tests that keep ``environment.yml``, ``pyproject.toml`` and the notebooks in step with the pins.
"""

from __future__ import annotations

import re
from pathlib import Path

from persrm_utils.errors import DataError
from persrm_utils.paths import project_root

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;#]+)")


def normalize(name: str) -> str:
    """PEP 503 name normalisation: 'Unsloth_Zoo' and 'unsloth-zoo' are the same package."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements_dir() -> Path:
    return project_root() / "requirements"


def read_pins(path: Path | str) -> dict[str, str]:
    """``name -> version`` for every ``name==version`` line, following ``-r`` includes."""
    path = Path(path)
    if not path.is_absolute() and not path.exists():
        path = requirements_dir() / path
    if not path.is_file():
        raise DataError("requirements file not found", "run from a full checkout", path=str(path))
    pins: dict[str, str] = {}
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith(("-r ", "--requirement ")):
            pins.update(read_pins(path.parent / line.split(maxsplit=1)[1]))
            continue
        match = _PIN.match(line)
        if not match:
            raise DataError(
                f"'{line}' is not pinned with ==",
                "every requirement in requirements/*.txt is pinned to an exact version",
                path=str(path),
                line=lineno,
            )
        pins[normalize(match.group(1))] = match.group(2)
    return pins


def stack_pins(kind: str = "cpu") -> dict[str, str]:
    """Pins for a kind of machine: 'cpu' (with the offline SmolLM2 package), 'gpu' or 'dev'."""
    pins = read_pins(f"{kind}.txt")
    if kind in ("cpu", "dev"):
        pins.update(read_pins("nodeps.txt"))
    return pins
