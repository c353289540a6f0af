"""Reasoning traces: honest stylometric traces on smoke pairs, teacher rejection sampling."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from persrm_utils.data.exemplars import collect
from persrm_utils.data.pairs import make_pairs, offline_backend, plan_pairs
from persrm_utils.data.stylometry import text_features
from persrm_utils.errors import DataError
from persrm_utils.generation.cache import CachedGenerator
from persrm_utils.generation.requests import GenRequest, OfflineBackend
from persrm_utils.judge import format as judge
from persrm_utils.profiles import get_profile
from persrm_utils.records import Exemplar, Pair
from persrm_utils.train.traces import (
    FACTOR_NAMES,
    STYLOMETRIC,
    TEACHER_INSTRUCTION,
    Trace,
    accept_teacher,
    build_sft_traces,
    stylometric_evidence,
    stylometric_trace,
    teacher_requests,
    to_sft_rows,
    training_scale,
)

FORBIDDEN = ("real", "generated", "synthetic", "negative", "chosen", "rejected")
_LINE = re.compile(
    r"^(?P<factor>[A-Z][a-z ]+): the exemplars? (?:average|has) (?P<e>[\d.]+) (?P<unit>.+?); "
    r"A has (?P<a>[\d.]+), B (?P<b>[\d.]+), so (?P<closer>[AB]) is closer\.$",
    re.M,
)
_BY_UNIT = {name.unit: key for key, name in FACTOR_NAMES.items()}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    exemplars = collect(get_profile("smoke"))
    planned = plan_pairs(exemplars, 3, seed=0)
    by_id = {e.text_id: e for e in exemplars}
    cache = tmp_path_factory.mktemp("traces") / "negatives.jsonl"
    gen = CachedGenerator(offline_backend(planned, by_id), cache, flush_every=1000)
    made = make_pairs(planned, exemplars, gen, 60, "rules", progress=False)
    pairs = [p for ps in made.pairs.values() for p in ps]
    return pairs, by_id, training_scale(exemplars)


@pytest.fixture(scope="module")
def scale(smoke):
    """The spread of each feature over the smoke training texts."""
    return smoke[2]


@pytest.fixture(scope="module")
def built(smoke):
    pairs, by_id, scale = smoke
    return build_sft_traces(pairs, by_id, scale)


def _shown(value: float, key: str) -> float:
    name = FACTOR_NAMES[key]
    return round(value * name.mult, name.digits)


# --- the stylometric writer -------------------------------------------------------------------


def test_every_trace_parses_to_its_verdict_which_is_the_label(smoke, built):
    pairs, by_id, _ = smoke
    traces, _stats = built
    index = {p.pair_id: p for p in pairs}
    assert len(traces) >= 20
    for t in traces:
        pair = index[t.pair_id]
        parsed = judge.parse_verdict(t.completion)
        assert parsed.exact and parsed.letter == t.verdict == judge.label(pair, t.swap)
        assert t.messages == judge.build_messages(pair, by_id, swap=t.swap)
        assert t.source == STYLOMETRIC and t.meta["negative_type"] == pair.negative_type
        assert 80 <= len(t.completion.split()) <= 200


def test_cited_numbers_are_the_measured_features(smoke, built):
    pairs, by_id, _ = smoke
    index = {p.pair_id: p for p in pairs}
    checked = Counter()
    for t in built[0]:
        pair = index[t.pair_id]
        a, b = judge.responses(pair, t.swap)
        shown = [by_id[i].output for i in pair.exemplar_ids]
        lines = list(_LINE.finditer(t.completion))
        assert [m.group("factor") for m in lines] == [
            FACTOR_NAMES[k].factor for k in t.meta["factors"]
        ]
        for m in lines:
            key = _BY_UNIT[m.group("unit")]
            mean = sum(text_features(s)[key] for s in shown) / len(shown)
            assert float(m.group("e")) == pytest.approx(_shown(mean, key))
            assert float(m.group("a")) == pytest.approx(_shown(text_features(a)[key], key))
            assert float(m.group("b")) == pytest.approx(_shown(text_features(b)[key], key))
            e, ga, gb = float(m.group("e")), float(m.group("a")), float(m.group("b"))
            assert m.group("closer") == ("A" if abs(ga - e) < abs(gb - e) else "B")
            checked[key] += 1
        # the verdict follows the lines: never a minority of them
        closer = Counter(m.group("closer") for m in lines)
        assert closer[t.verdict] >= closer[judge.label(pair, not t.swap)]
    assert checked["mean_sentence_len"] > 0, "at least one sentence-length line was checked"


def test_one_number_by_hand(scale):
    """A literal pair: numbers a reader can verify with a pencil."""
    ex = _ex("e1", "The market fell hard. Prices dropped. Traders sold. Banks closed. Funds fled.")
    chosen = "Shares slid. Bonds rose. Gold held. Oil fell. The dollar firmed."
    rejected = (
        "Shares slid sharply in heavy trading on Monday, while bonds, which had been weak for "
        "weeks, rose as investors, nervous about growth, sought the safety of government debt."
    )
    pair = _pair(chosen, rejected, "A", [ex.text_id])
    ev = stylometric_evidence(pair, {ex.text_id: ex}, scale)
    assert ev.reason is None and ev.verdict == "A"
    line = next(c for c in ev.cited if c.key == "mean_sentence_len")
    assert (line.exemplars, line.a, line.b) == (2.4, 2.2, 28.0)  # 12/5, 11/5 and 28/1 words
    assert "the exemplar has 2.4 words per sentence; A has 2.2, B 28.0, so A is closer." in (
        ev.completion
    )


def test_no_trace_names_the_origin_of_a_response(built):
    for t in built[0]:
        lowered = t.completion.lower()
        for word in FORBIDDEN:
            assert not re.search(rf"\b{word}\b", lowered), (word, t.completion)


def test_both_orders_and_stats(smoke, built):
    pairs, _, _ = smoke
    traces, stats = built
    orders = Counter(t.pair_id for t in traces)
    assert set(orders.values()) == {2}, "a pair's two orders stand or fall together"
    assert {(t.pair_id, t.swap) for t in traces} == {(p, s) for p in orders for s in (0, 1)}
    assert stats["attempted"] == 2 * len(pairs) and stats["written"] == len(traces)
    assert stats["written"] + sum(stats["rejected"].values()) == stats["attempted"]
    by_type = stats["by_negative_type"]
    assert sum(v["written"] for v in by_type.values()) == len(traces)
    assert by_type["style_random"]["written"] == by_type["style_random"]["attempted"]
    assert by_type["minor_replace"]["written"] == 0  # synonyms move no measured feature
    one, _ = build_sft_traces(pairs, smoke[1], smoke[2], both_orders=False)
    assert len(one) == len(traces) // 2 and not any(t.swap for t in one)


# --- rejection --------------------------------------------------------------------------------


def _ex(tid: str, output: str) -> Exemplar:
    return Exemplar(author_id="au", text_id=tid, prompt="It began.", output=output, source="own")


def _pair(chosen: str, rejected: str, position: str, ids: list[str]) -> Pair:
    return Pair(pair_id="feedc0ffee00", split="train", author_id="au", text_id="anchor",
                prompt="It began.", chosen=chosen, rejected=rejected,
                negative_type="style_mimic", exemplar_ids=ids, chosen_position=position,
                negative_source="offline:test", seen_author=True)  # fmt: skip


LONG = [
    "The committee, which met on Tuesday in the capital, said that its members, after long and "
    "careful debate, had agreed to delay the vote until the spring, when figures are expected.",
    "Officials, speaking on condition of anonymity, said the plan, though costly, would proceed "
    "as drafted, and that the ministry, for its part, had raised no formal objection to it.",
]
SHORT = "It rained. We ran! Fast! The bus left. Oh no! We waited. Cold. Wet. Home at last!"


@pytest.mark.parametrize("position", ["A", "B"])
def test_misleading_features_mean_no_trace(position, scale):
    exemplars = {f"x{i}": _ex(f"x{i}", text) for i, text in enumerate(LONG)}
    # the author's real text is choppy; the other text reads like the exemplars
    misled = _pair(SHORT, LONG[0].replace("Tuesday", "Friday"), position, list(exemplars))
    assert stylometric_trace(misled, exemplars, scale) is None
    ev = stylometric_evidence(misled, exemplars, scale)
    assert ev.reason == "disagrees_with_label" and ev.verdict != ev.label
    # the same texts the other way round: the features agree with the label, so a trace
    honest = _pair(LONG[0].replace("Tuesday", "Friday"), SHORT, position, list(exemplars))
    for swap in (False, True):
        out = stylometric_trace(honest, exemplars, scale, swap=swap)
        assert judge.parse_verdict(out).letter == judge.label(honest, swap)


def test_texts_that_measure_alike_give_no_trace(scale):
    exemplars = {"x0": _ex("x0", LONG[0])}
    pair = _pair(LONG[1], LONG[1].replace("costly", "pricey"), "A", ["x0"])
    ev = stylometric_evidence(pair, exemplars, scale)
    assert ev.reason == "too_few_features" and ev.completion is None
    with pytest.raises(DataError, match="cite 3, 4 or 5"):
        stylometric_evidence(pair, exemplars, scale, n_factors=6)


# --- the teacher ------------------------------------------------------------------------------


def test_teacher_rejection_sampling_with_exact_stats(smoke, tmp_path):
    pairs, by_id, _ = smoke
    pairs = pairs[:10]
    truth = {(p.pair_id, s): judge.label(p, s) for p in pairs for s in (False, True)}
    requests = teacher_requests(pairs, by_id, max_new_tokens=256)
    assert len(requests) == 20
    plan: dict[tuple[str, bool], str] = {}
    kinds = ["right", "wrong", "garbage", "unclosed", "right_with_junk"]
    for i, req in enumerate(requests):
        # the teacher sees the judge prompt plus the instruction, and nothing about the answer
        ident = (req.meta["pair_id"], req.meta["swap"])
        pair = next(p for p in pairs if p.pair_id == ident[0])
        assert req.meta["judge_messages"] == judge.build_messages(pair, by_id, swap=ident[1])
        assert req.messages[-1]["content"].endswith(TEACHER_INSTRUCTION)
        assert set(req.meta) == {"pair_id", "swap", "sample", "judge_messages"}
        plan[ident] = kinds[i % len(kinds)]

    def teacher(req: GenRequest) -> str:
        ident = (req.meta["pair_id"], req.meta["swap"])
        gold, kind = truth[ident], plan[ident]
        other = "B" if gold == "A" else "A"
        return {
            "right": f"<think>\nA: long sentences; B: short ones.\n</think>\n"
            f"<answer>[[{gold}]]</answer>",
            "wrong": f"<think>\nI guess.\n</think>\n<answer>[[{other}]]</answer>",
            "garbage": "lorem ipsum [[A]] [[B]]",
            "unclosed": "<think>\nThe exemplars are formal and",
            "right_with_junk": f"Sure!\n<think>Commas match {gold}.</think> "
            f"<answer>Response [[{gold}]]</answer> Hope this helps.",
        }[kind]

    backend = OfflineBackend(fn=teacher, name="test-teacher")
    results = CachedGenerator(backend, tmp_path / "teacher.jsonl").generate(
        requests, progress=False
    )
    traces, stats = accept_teacher(results, pairs)
    assert stats == {
        "total": 20,
        "accepted": 8,
        "rate": 0.4,
        "rejected": {
            "wrong_verdict": 4,
            "invalid_format": {"no_answer_tag": 4, "unclosed_think": 4},
        },
        "duplicates": 0,
        "by_negative_type": stats["by_negative_type"],
    }
    assert sum(v["total"] for v in stats["by_negative_type"].values()) == 20
    assert sum(v["accepted"] for v in stats["by_negative_type"].values()) == 8
    index = {p.pair_id: p for p in pairs}
    for t in traces:
        pair = index[t.pair_id]
        assert plan[(t.pair_id, t.swap)] in ("right", "right_with_junk")
        assert t.source == "teacher:test-teacher:test-teacher"
        assert t.verdict == judge.label(pair, t.swap) == judge.parse_verdict(t.completion).letter
        assert judge.parse_verdict(t.completion).exact  # rewritten into the canonical layout
        assert t.messages == judge.build_messages(pair, by_id, swap=t.swap)  # no instruction
        assert TEACHER_INSTRUCTION not in str(t.messages)


def test_several_samples_keep_one_trace_per_order(smoke):
    pairs, by_id, _ = smoke
    with pytest.raises(DataError, match="temperature"):
        teacher_requests(pairs[:1], by_id, 64, samples=2)
    reqs = teacher_requests(pairs[:2], by_id, 64, swap_both=False, temperature=0.7, samples=3)
    assert len(reqs) == 6 and len({r.key for r in reqs}) == 6  # distinct seeds, distinct keys
    gold = {p.pair_id: p.chosen_position for p in pairs[:2]}
    backend = OfflineBackend(
        fn=lambda r: f"<think>x</think><answer>[[{gold[r.meta['pair_id']]}]]</answer>", name="t"
    )
    traces, stats = accept_teacher(backend.generate(reqs), pairs[:2])
    assert len(traces) == 2 and stats["duplicates"] == 4 and stats["accepted"] == 2
    with pytest.raises(DataError, match="not among the pairs"):
        accept_teacher(backend.generate(reqs), pairs[2:4])


# --- the trace record and SFT rows -------------------------------------------------------------


def test_trace_source_is_checked_and_rows_are_conversational(built):
    t = built[0][0]
    with pytest.raises(ValueError, match="teacher:<backend>:<model>"):
        Trace(**{**t.model_dump(), "source": "teacher:gpt"})
    Trace(**{**t.model_dump(), "source": "teacher:openai:Qwen/Qwen2.5-7B-Instruct"})
    rows = to_sft_rows(built[0])
    assert len(rows) == len(built[0])
    roles = [m["role"] for m in rows[0]["messages"]]
    assert roles == ["system", "user", "assistant"] and list(rows[0]) == ["messages"]
    assert rows[0]["messages"][-1]["content"] == t.completion
    assert rows[0]["messages"][0]["content"] == judge.SYSTEM_PROMPT
