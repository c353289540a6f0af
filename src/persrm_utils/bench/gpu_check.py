"""The GPU path proven in one command: four capped parts, one JSON and one markdown summary.

``scripts/gpu_check.py`` is the command line; this module runs it. The parts:

1. ``environment``: GPU, compute capability, the dtype the series picks, versions, Unsloth;
2. ``mechanics``: the ``t4`` recipe on a random model of Qwen2.5-1.5B's architecture in 4-bit,
   a few SFT and GRPO steps through Unsloth and through plain TRL + PEFT + bitsandbytes;
3. ``learning``: SmolLM2-135M on Reuters C50 with the ``cpu`` recipe scaled up, accuracy before
   SFT, after SFT and after GRPO on unseen authors;
4. ``judging``: batched versus one-at-a-time judging throughput.

Each part runs in its own process under a time cap (killed with everything it started when the
cap is reached) and writes its figures as it goes; ``gpu_check.json`` and ``gpu_check.md`` are
rewritten after every part. So a part that crashes, hangs or is skipped (no CUDA, no weights)
costs only itself: one call always returns the figures it could measure. ``dry_run`` runs every
part on a CPU with the tiny model and one step each, which is how the tests keep it working.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from persrm_utils.bench import gpu_parts as parts
from persrm_utils.bench.check_options import JSON_NAME, MD_NAME, PARTS, CheckOptions, Recorder
from persrm_utils.bench.gpu_report import render_markdown
from persrm_utils.bench.learning_check import learning_part
from persrm_utils.bench.mechanics import child_env
from persrm_utils.bench.timebox import Deadline, run_capped, write_json_atomic


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _part_funcs() -> dict[str, Any]:

    return {
        "environment": parts.environment_part,
        "mechanics": parts.mechanics_part,
        "learning": learning_part,
        "judging": parts.judging_part,
    }


def part_main(name: str, options_file: Path, result_file: Path) -> int:
    """Run one part in this process (the child side of :func:`run_part`)."""
    data = json.loads(options_file.read_text())
    data["mechanics_steps"] = tuple(data["mechanics_steps"])
    data["judging"] = tuple(data["judging"])
    opts = CheckOptions(**data)
    rec = Recorder(result_file)
    # The part's own deadline comes before the kill, leaving time to record what a child
    # stopped at that deadline measured.
    deadline = Deadline.after(opts.cap(name) - max(10.0, 0.05 * opts.cap(name)))
    try:
        if opts.fail_part == name:
            raise RuntimeError(f"failure injected with --fail-part {name}")
        _part_funcs()[name](opts, rec, deadline)
    except BaseException as err:  # recorded, then the exit code says "failed"
        rec.data["status"] = "failed"
        rec.data["error"] = "".join(traceback.format_exception_only(type(err), err)).strip()
        rec.data["traceback"] = traceback.format_exc()[-3000:]
        rec.flush()
        return 1
    if rec.data["status"] == "running":
        rec.data["status"] = "ok"
        rec.flush()
    return 0


def run_part(name: str, opts: CheckOptions, options_file: Path) -> dict[str, Any]:
    """One part in a child process under its cap; its record with status and seconds."""

    result_file = options_file.parent / f"{name}.json"
    result_file.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "persrm_utils.bench.gpu_check", name, str(options_file),
           str(result_file)]  # fmt: skip
    run = run_capped(cmd, opts.cap(name), env=child_env(), log=options_file.parent / f"{name}.log")
    try:
        record = json.loads(result_file.read_text())
    except (OSError, json.JSONDecodeError):
        record = {"status": "running", "figures": {}, "notes": []}
    if run.timed_out:
        record["status"] = "timeout"
        record["error"] = f"stopped at its cap of {opts.cap(name):.0f} s; figures so far kept"
    elif run.returncode and record.get("status") != "failed":
        record["status"] = "failed"
        record["error"] = f"exit code {run.returncode}: {run.failure}"
    elif record.get("status") == "running":
        record["status"] = "failed"
        record["error"] = "the part ended without reporting"
    record["seconds"] = round(run.seconds, 1)
    record["cap_s"] = opts.cap(name)
    return record


def write_report(report: dict[str, Any], out: Path) -> None:
    """``gpu_check.json`` and ``gpu_check.md``, both rewritten whole (kill-safe)."""

    write_json_atomic(out / JSON_NAME, report)
    tmp = out / (MD_NAME + ".tmp")
    tmp.write_text(render_markdown(report), encoding="utf-8")
    tmp.replace(out / MD_NAME)


def run_check(opts: CheckOptions) -> dict[str, Any]:
    """Every selected part in order; the report is written before, between and after parts."""
    out = Path(opts.out)
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    options_file = work / "options.json"
    options_file.write_text(json.dumps(asdict(opts), indent=2))
    start = time.monotonic()
    report: dict[str, Any] = {
        "schema": 1,
        "dry_run": opts.dry_run,
        "started": _now(),
        "finished": None,
        "caps_s": {p: opts.cap(p) for p in PARTS},
        "parts": {p: {"status": "pending"} for p in PARTS},
    }
    write_report(report, out)
    for name in PARTS:
        if name in opts.parts:
            report["parts"][name] = run_part(name, opts, options_file)
        else:
            report["parts"][name] = {"status": "skipped", "reason": "not selected (--parts)"}
        report["total_s"] = round(time.monotonic() - start, 1)
        write_report(report, out)
    report["finished"] = _now()
    write_report(report, out)
    return report


if __name__ == "__main__":
    sys.exit(part_main(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])))
