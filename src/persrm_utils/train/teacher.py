"""Choosing the teacher that writes SFT reasoning traces, and recording which one did.

Rejection sampling (RM-R1) keeps only the teacher traces whose verdict is right, so the traces
can only be as good as the teacher. A teacher that *is* the student's own base model (what
``make_backend("local", profile, ...)`` gives) is not a stronger teacher: it can teach the format,
not better judgement. This module lets a notebook or a script name any teacher:

* ``"openai:<model>"``: any model behind an OpenAI-compatible server (vLLM, llama.cpp, Ollama, a
  hosted API), URL from ``OPENAI_BASE_URL``, key from ``OPENAI_API_KEY`` at call time;
* ``"local:<hub id or folder>"``: a transformers model loaded in this process, e.g. a larger
  instruct model than the student;
* ``"local"`` alone: the student's own base model (allowed, and recorded as such).

:func:`teacher_traces` asks the teacher for every training pair in both orders, keeps the right
verdicts and writes ``sft/teacher.json``. :func:`describe_traces` writes the same file for traces
made any other way (the offline stylometric writer included), so every run says which teacher
made its traces and how many of the teacher's answers were accepted.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from persrm_utils.errors import ConfigError
from persrm_utils.generation.cache import CachedGenerator
from persrm_utils.generation.local import TransformersBackend
from persrm_utils.generation.openai_compat import OpenAIBackend
from persrm_utils.models.loader import load_model
from persrm_utils.train.traces import (
    accept_teacher,
    fit_to_budget,
    teacher_max_new_tokens,
    teacher_requests,
)

REPORT = "teacher.json"


@dataclass
class TeacherSpec:
    """Which teacher: a backend, a model, and whether it is the student's own base model."""

    backend: str  # "openai" | "local" | "stylometric"
    model: str
    same_as_student: bool

    @property
    def label(self) -> str:
        if self.backend == "stylometric":
            return "the offline stylometric writer (no teacher LLM)"
        who = "the student's own base model" if self.same_as_student else "a different model"
        return f"{self.backend}:{self.model} ({who})"


def parse_teacher(spec: str, profile: Any) -> TeacherSpec:
    """``"openai:<model>"``, ``"local:<model>"``, ``"local"`` or ``"openai"`` -> a TeacherSpec."""
    kind, _, model = spec.partition(":")
    student = profile.model_path or profile.model_name
    if kind == "local":
        model = model or student
        return TeacherSpec("local", model, same_as_student=model == student)
    if kind == "openai":
        model = model or os.environ.get("OPENAI_MODEL", "")
        if not model:
            raise ConfigError(
                "the 'openai' teacher needs a model name",
                "write TEACHER = 'openai:<model>' or set OPENAI_MODEL.",
            )
        return TeacherSpec("openai", model, same_as_student=model == student)
    raise ConfigError(
        f"unknown teacher {spec!r}",
        "use 'openai:<model>' (with OPENAI_BASE_URL), 'local:<hub id or folder>' or 'local'.",
    )


def make_teacher(spec: TeacherSpec, profile: Any, base_url: str | None = None) -> Any:
    """The generation backend for a teacher (see :mod:`persrm_utils.generation`)."""
    if spec.backend == "openai":
        url = base_url or os.environ.get("OPENAI_BASE_URL")
        if not url:
            raise ConfigError(
                "the 'openai' teacher needs a server URL",
                "set OPENAI_BASE_URL (e.g. http://127.0.0.1:8000/v1), and OPENAI_API_KEY for a "
                "hosted API.",
            )
        return OpenAIBackend(url, spec.model)

    if spec.same_as_student:
        teacher_profile = profile
    elif Path(spec.model).expanduser().is_dir():
        teacher_profile = profile.override(model_path=spec.model)
    else:
        teacher_profile = profile.override(
            model_source="hub", model_name=spec.model, model_path=None
        )
    loaded = load_model(teacher_profile)
    return TransformersBackend(
        loaded.model, loaded.tokenizer, batch_size=profile.generator_batch_size
    )


def _report(spec: TeacherSpec, stats: dict[str, Any], traces: Sequence[Any]) -> dict[str, Any]:
    return {
        "teacher": spec.label,
        **asdict(spec),
        # teacher stats count answers and accepted ones; the stylometric writer's count attempts
        "answers": stats.get("total", stats.get("attempted")),
        "accepted": stats.get("accepted", stats.get("written", len(traces))),
        "acceptance_rate": stats.get("rate"),
        "rejected": stats.get("rejected"),
        "trace_sources": dict(Counter(t.source for t in traces)),
    }


def teacher_traces(
    spec: str,
    pairs: Sequence[Any],
    by_id: dict[str, Any],
    profile: Any,
    run_path: Path,
    base_url: str | None = None,
    samples: int = 1,
    temperature: float = 0.0,
) -> tuple[list[Any], dict[str, Any]]:
    """Traces from a named teacher with rejection sampling; writes ``sft/teacher.json``.

    Pass the pairs SFT trains on (``sft_pairs(train_pairs, profile)``), not every training pair:
    the profile's ``sft_negative_types`` decide what SFT learns whoever writes the traces. The
    teacher writes within its own budget (:func:`teacher_max_new_tokens`), and the accepted
    traces are cut to what the student's reasoning budget can learn (:func:`fit_to_budget`).

    Answers go through the run's resumable cache (``cache/teacher.jsonl``, keyed by request and
    model), so a rerun asks only for what is missing and two teachers never share answers.
    """

    parsed = parse_teacher(spec, profile)
    backend = make_teacher(parsed, profile, base_url)
    budget = teacher_max_new_tokens(profile.max_completion_length)
    requests = teacher_requests(pairs, by_id, budget, temperature=temperature, samples=samples)
    cached = CachedGenerator(backend, run_path / "cache" / "teacher.jsonl")
    traces, stats = accept_teacher(cached.generate(requests, desc="teacher"), pairs)
    traces = fit_to_budget(traces, profile.reasoning)
    write_report(run_path, _report(parsed, stats, traces))
    return traces, stats


def describe_traces(
    traces: Sequence[Any], stats: dict[str, Any], profile: Any, run_path: Path
) -> dict[str, Any]:
    """Say (and write to ``sft/teacher.json``) which teacher made ``traces``, and its rate."""
    sources = Counter(t.source for t in traces)
    first = next(iter(sources), "stylometric")
    if first.startswith("teacher:"):
        _, backend, model = first.split(":", 2)
        student = profile.model_path or profile.model_name
        spec = TeacherSpec(backend, model, same_as_student=model in (student, str(student)))
    else:
        spec = TeacherSpec("stylometric", "stylometric", same_as_student=False)
    report = _report(spec, stats, traces)
    write_report(run_path, report)
    return report


def write_report(run_path: Path, report: dict[str, Any]) -> Path:
    out = run_path / "sft" / REPORT
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2), encoding="utf-8")
    return out


def read_report(run_path: Path) -> dict[str, Any] | None:
    """The run's ``sft/teacher.json``, or None for runs made before it existed."""
    file = Path(run_path) / "sft" / REPORT
    return json.loads(file.read_text(encoding="utf-8")) if file.is_file() else None
