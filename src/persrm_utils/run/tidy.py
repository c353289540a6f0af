"""Is an executed notebook fit to be read? Find the output noise a learner should not have to skip.

The executed copies of a run are the series' worked outputs: what a reader studies before
spending compute. Each kind of noise below was found in them, and each has its fix in the
package; :func:`untidy_outputs` finds any that comes back, and ``publish_reference`` refuses to
publish a notebook that has some.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

#: A progress bar saved mid-flight: only its first frame is stored ("Loading weights:   0%| |
#: 0/26 [00:00<?, ?it/s]"). ``persrm run`` turns bars off in its kernels (``runner.HEADLESS_ENV``).
STALLED_BAR = re.compile(r"\d+%\|.*\|\s*\d+/\d+ \[")
#: A raw trainer log dictionary ("{'loss': '6.235', 'grad_norm': ...}"), printed by transformers'
#: ``PrinterCallback``; the series prints one short line per step instead (``train.log_lines``).
RAW_LOG = re.compile(r"\{'(loss|reward|eval_loss|train_runtime)'")
#: Library warnings that say nothing to a learner, each silenced where it arises
#: (``models.loader.quiet_known_noise``): a CPU fast path bitsandbytes cannot load here (it falls
#: back to the ordinary kernel), and transformers' note that checkpoints written within a second
#: of each other are sorted by number rather than by time (which is what it should do anyway).
NOISE = (
    "Failed to load CPU gemm_4bit_forward",
    "mtime may not be reliable on this filesystem",
    "Kernel is running over TCP without encryption",
)


def _text(output: dict) -> str:
    text = output.get("text") or output.get("data", {}).get("text/plain") or ""
    return "".join(text) if isinstance(text, list) else str(text)


def untidy_outputs(path: Path) -> list[str]:
    """Every noisy output of an executed notebook, as ``"<file> cell N: what"`` lines.

    Looks for stalled progress bars, raw trainer log dictionaries, the known library noise, and a
    bare ``True``/``False`` left as a cell's value (an exercise check's return value, before
    :class:`persrm_utils.classroom.checks.Checked` hid it).
    """
    nb = json.loads(Path(path).read_text())
    found: list[str] = []
    for i, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        where = f"{Path(path).name} cell {i}"
        for output in cell.get("outputs", []):
            text = _text(output)
            if STALLED_BAR.search(text):
                found.append(f"{where}: a stalled progress bar ({text.strip()[:60]!r})")
            if RAW_LOG.search(text):
                found.append(f"{where}: a raw trainer log dictionary")
            found += [f"{where}: library noise ({n!r})" for n in NOISE if n in text]
            if output.get("output_type") == "execute_result" and text in ("True", "False"):
                found.append(f"{where}: a stray {text} as the cell's value")
    return found
