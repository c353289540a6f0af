"""Naming a teacher other than the student, and recording which teacher made a run's traces."""

from __future__ import annotations

import json

import pytest

from persrm_utils.errors import ConfigError
from persrm_utils.generation.requests import GenResult
from persrm_utils.train.teacher import describe_traces, parse_teacher, read_report
from persrm_utils.train.traces import Trace, accept_teacher


def test_local_alone_is_the_student_and_says_so(smoke_profile):
    spec = parse_teacher("local", smoke_profile)
    assert spec.same_as_student and "student's own base model" in spec.label
    other = parse_teacher("local:Qwen/Qwen2.5-7B-Instruct", smoke_profile)
    assert not other.same_as_student and other.model == "Qwen/Qwen2.5-7B-Instruct"
    assert "a different model" in other.label


def test_openai_teacher_needs_a_model(smoke_profile, monkeypatch):
    monkeypatch.delenv("OPENAI_MODEL", raising=False)
    with pytest.raises(ConfigError, match="needs a model"):
        parse_teacher("openai", smoke_profile)
    assert parse_teacher("openai:any-model", smoke_profile).backend == "openai"
    with pytest.raises(ConfigError, match="unknown teacher"):
        parse_teacher("gpt", smoke_profile)


def _pair():
    from persrm_utils.records import Pair

    return Pair(
        pair_id="p1",
        split="train",
        author_id="a",
        text_id="a-1",
        prompt="The market opened.",
        chosen="Shares rose 2 percent.",
        rejected="Wow what a day!",
        negative_type="style_random",
        exemplar_ids=[],
        chosen_position="A",
        negative_source="offline:restyle",
        seen_author=False,
    )


def test_acceptance_rate_and_teacher_are_recorded(smoke_profile, tmp_path):
    pair = _pair()
    msgs = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    results = [
        GenResult(
            key=f"k{i}",
            text=f"<think>reasons</think><answer>[[{letter}]]</answer>",
            finish_reason="stop",
            backend="openai",
            model="big-model",
            meta={"pair_id": "p1", "swap": swap, "sample": 0, "judge_messages": msgs},
        )
        for i, (letter, swap) in enumerate([("A", False), ("A", True)])
    ]
    traces, stats = accept_teacher(results, [pair])
    assert stats["rate"] == 0.5  # the swapped order's answer should have been B
    report = describe_traces(traces, stats, smoke_profile, tmp_path)
    assert report["backend"] == "openai" and report["model"] == "big-model"
    assert not report["same_as_student"] and report["acceptance_rate"] == 0.5
    assert read_report(tmp_path) == json.loads((tmp_path / "sft" / "teacher.json").read_text())


def test_stylometric_traces_are_reported_as_no_teacher(smoke_profile, tmp_path):
    trace = Trace(
        pair_id="p1",
        swap=False,
        messages=[{"role": "system", "content": "s"}, {"role": "user", "content": "u"}],
        completion="<think>x</think>\n<answer>[[A]]</answer>",
        verdict="A",
        source="stylometric",
    )
    stats = {"attempted": 4, "written": 1, "rate": 0.25}
    report = describe_traces([trace], stats, smoke_profile, tmp_path)
    assert report["backend"] == "stylometric" and "no teacher LLM" in report["teacher"]
    assert report["acceptance_rate"] == 0.25 and report["answers"] == 4


def test_a_teacher_on_a_verdict_only_profile_may_reason(tmp_path, monkeypatch):
    """On ``cpu`` the student writes 1 token; the teacher must still get room to reason, see only
    the pairs SFT trains on, and hand back traces in the student's verdict-only format."""
    from persrm_utils.generation.requests import OfflineBackend
    from persrm_utils.judge import format as judge
    from persrm_utils.profiles import get_profile
    from persrm_utils.train import sft_pairs, teacher_traces
    from persrm_utils.train import teacher as teacher_mod
    from persrm_utils.train.traces import TEACHER_MIN_NEW_TOKENS

    cpu = get_profile("cpu")
    assert cpu.max_completion_length == 1 and cpu.reasoning == "none"
    pairs = [_pair(), _pair().model_copy(update={"pair_id": "p2", "negative_type": "cross_author"})]
    by_pair = {p.pair_id: p for p in pairs}
    budgets = []

    def reasoned_right_answer(request):
        budgets.append(request.max_new_tokens)
        pair = by_pair[request.meta["pair_id"]]
        letter = judge.label(pair, request.meta["swap"])
        return f"<think>A long look at both texts.</think><answer>[[{letter}]]</answer>"

    backend = OfflineBackend(reasoned_right_answer, name="big-teacher")
    monkeypatch.setattr(teacher_mod, "make_teacher", lambda *a, **k: backend)
    traces, stats = teacher_traces("openai:big", sft_pairs(pairs, cpu), {}, cpu, tmp_path)
    assert budgets and min(budgets) >= TEACHER_MIN_NEW_TOKENS  # not the student's 1 token
    assert {t.pair_id for t in traces} == {"p1"}  # sft_negative_types: style_random only
    assert stats["rate"] == 1.0
    for t in traces:  # the verdict-only format the student's SFT rows need
        assert t.completion == judge.format_answer("", t.verdict)
        assert t.source.startswith("teacher:")
