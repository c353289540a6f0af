"""The judge's prompt and answer format: properties of the parser, literal cases, the prompt."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from persrm_utils.data.exemplars import collect
from persrm_utils.data.pairs import make_pairs, offline_backend, plan_pairs
from persrm_utils.errors import DataError
from persrm_utils.generation.cache import CachedGenerator
from persrm_utils.judge.format import (
    NO_EXEMPLARS,
    SYSTEM_PROMPT,
    TAGS,
    build_messages,
    format_answer,
    label,
    parse_verdict,
)
from persrm_utils.profiles import get_profile

PROPS = settings(max_examples=150, deadline=None)

# Text that may contain brackets, letters and tag-like fragments but no complete tag string.
_fragments = st.sampled_from(
    ["[[A]]", "[[B]]", "[[", "]]", "<", ">", "/", "answer", "think", "<answer", "think>", "A", "B"]
)
_free = st.lists(st.one_of(st.text(max_size=12), _fragments), max_size=12).map("".join)
no_tags = _free.filter(lambda t: not any(tag in t for tag in TAGS))
letters = st.sampled_from(["A", "B"])


def _other(v: str) -> str:
    return "B" if v == "A" else "A"


# --- properties of parse_verdict --------------------------------------------------------------


@PROPS
@given(think=no_tags, v=letters)
def test_format_answer_parses_back_to_its_verdict(think, v):
    out = parse_verdict(format_answer(think, v))
    assert (out.letter, out.reason, out.n_answers, out.exact) == (v, "ok", 1, True)
    assert out.think == think.strip() and out.think_empty == (not think.strip())


@PROPS
@given(think=no_tags, v=letters, garbage=no_tags)
def test_garbage_without_tags_after_the_answer_keeps_the_verdict(think, v, garbage):
    out = parse_verdict(format_answer(think, v) + garbage)
    assert out.letter == v
    assert out.exact == (not garbage.strip())


@PROPS
@given(before=no_tags, after=no_tags, v=letters)
def test_an_answer_inside_the_reasoning_never_counts(before, after, v):
    think = f"{before}<answer>[[{_other(v)}]]</answer>{after}"
    out = parse_verdict(f"<think>\n{think}\n</think>\n<answer>[[{v}]]</answer>")
    assert out.letter == v and not out.exact


@PROPS
@given(think=no_tags, pre=no_tags, mid=no_tags, post=no_tags, earlier=st.booleans())
def test_both_letters_in_the_final_tag_is_invalid(think, pre, mid, post, earlier):
    first = "<answer>[[A]]</answer>" if earlier else ""
    text = f"<think>{think}</think>{first}<answer>{pre}[[A]]{mid}[[B]]{post}</answer>"
    out = parse_verdict(text)
    assert (out.letter, out.reason) == (None, "both_letters")


@PROPS
@given(text=_free.filter(lambda t: "<answer>" not in t and "<think>" not in t))
def test_text_without_an_answer_tag_has_no_verdict(text):
    out = parse_verdict(text)
    assert (out.letter, out.reason) == (None, "no_answer_tag")


@PROPS
@given(think=no_tags, v=letters, inner=st.booleans())
def test_a_cut_before_the_end_of_the_answer_tag_never_gives_a_verdict(think, v, inner):
    if inner:  # also with a tempting answer of the other letter inside the reasoning
        think = f"{think}<answer>[[{_other(v)}]]</answer>"
    full = f"<think>\n{think}\n</think>\n<answer>[[{v}]]</answer>"
    end = full.rindex("</answer>") + len("</answer>")
    for cut in range(end):
        assert parse_verdict(full[:cut]).letter is None, full[:cut]
    assert parse_verdict(full[:end]).letter == v


# --- one literal example per rule -------------------------------------------------------------

T = "The exemplars use long sentences; A does too."


@pytest.mark.parametrize(
    ("text", "letter", "reason"),
    [
        (f"<think>\n{T}\n</think>\n<answer>[[A]]</answer>", "A", "ok"),
        ("I prefer A. [[A]]", None, "no_answer_tag"),
        ("", None, "no_answer_tag"),
        ("<ANSWER>[[A]]</ANSWER>", None, "no_answer_tag"),  # tag names are lower case only
        (f"<think>{T}</think><answer>[[A]] or [[B]]</answer>", None, "both_letters"),
        (f"<think>{T}</think><answer>A</answer>", None, "no_letter"),
        (f"<think>{T}</think><answer>[[a]]</answer>", None, "no_letter"),  # upper case only
        (f"<think>{T}</think><answer>[[ A ]]</answer>", None, "no_letter"),
        (f"<think>{T} <answer>[[A]]</answer></think> so A.", None, "answer_inside_think"),
        (f"<think>{T} <answer>[[A]]</answer>", None, "unclosed_think"),
        (
            f"<think>{T}</think><answer>[[A]]</answer><think>on second thought",
            None,
            "unclosed_think",
        ),
        (f"<think>{T}</think><answer>[[A", None, "truncated"),
        (f"<think>{T}</think><answer>[[A]]</answer><answer>[[B]]", None, "truncated"),
        # the last complete answer counts
        (f"<think>{T}</think><answer>[[A]]</answer> no, <answer>[[B]]</answer>", "B", "ok"),
        # no reasoning block at all: the bare answer still counts (and is not exact)
        ("<answer>[[B]]</answer>", "B", "ok"),
        # a chat template that opened <think> in the prompt
        (f"{T}</think>\n<answer>[[A]]</answer>", "A", "ok"),
        (f"<think>{T}</think>\n<answer> The answer is [[B]]. </answer>", "B", "ok"),
    ],
)
def test_each_rule_on_a_literal_example(text, letter, reason):
    out = parse_verdict(text)
    assert (out.letter, out.reason) == (letter, reason)
    assert out.valid == (letter is not None)


def test_flags_for_a_format_reward():
    canonical = parse_verdict(format_answer(T, "B"))
    assert canonical.exact and canonical.think == T and canonical.n_answers == 1
    twice = parse_verdict(f"<think>{T}</think><answer>[[A]]</answer><answer>[[B]]</answer>")
    assert twice.letter == "B" and twice.multiple_answers and not twice.exact
    empty = parse_verdict("<think>\n\n</think>\n<answer>[[A]]</answer>")
    assert empty.letter == "A" and empty.think_empty and empty.think == ""
    bare = parse_verdict("<answer>[[A]]</answer>")
    assert bare.think is None and not bare.think_empty and not bare.exact
    assert not parse_verdict(f"Sure! {format_answer(T, 'A')}").exact
    assert not parse_verdict(f"<think>{T}</think><answer>Response [[A]]</answer>").exact
    assert parse_verdict(f"<think>{T}").think == T  # what it had thought so far


def test_format_answer_refuses_what_would_not_parse_back():
    assert format_answer("  why  ", "A") == "<think>\nwhy\n</think>\n<answer>[[A]]</answer>"
    with pytest.raises(DataError, match="tag"):
        format_answer("so <answer>[[B]]</answer>", "A")
    with pytest.raises(DataError, match="'A' or 'B'"):
        format_answer("why", "C")  # type: ignore[arg-type]


# --- the prompt -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    exemplars = collect(get_profile("smoke"))
    planned = plan_pairs(exemplars, 3, seed=0)
    by_id = {e.text_id: e for e in exemplars}
    cache = tmp_path_factory.mktemp("judge") / "negatives.jsonl"
    gen = CachedGenerator(offline_backend(planned, by_id), cache, flush_every=1000)
    made = make_pairs(planned, exemplars, gen, 60, "rules", progress=False)
    return [p for ps in made.pairs.values() for p in ps], by_id


def _section(user: str, name: str) -> str:
    """The text after ``[name] `` up to the next blank line."""
    return re.search(rf"\[{re.escape(name)}\] (.*?)(?:\n\n|$)", user, re.S).group(1)


def test_system_prompt_states_the_task_and_the_format():
    assert SYSTEM_PROMPT.startswith("You are a personalized reward model. Read the user's")
    assert "<think>...</think>" in SYSTEM_PROMPT
    assert "<answer>[[A]]</answer> or <answer>[[B]]</answer>" in SYSTEM_PROMPT


def test_k_exemplars_are_shown_in_order(smoke):
    pairs, by_id = smoke
    pair = max(pairs, key=lambda p: len(p.exemplar_ids))
    assert len(pair.exemplar_ids) == 3
    for k in range(4):
        system, user = build_messages(pair, by_id, k=k)
        assert system == {"role": "system", "content": SYSTEM_PROMPT} and user["role"] == "user"
        text = user["content"]
        assert text.count("[Exemplar ") == k and (NO_EXEMPLARS in text) == (k == 0)
        for i, tid in enumerate(pair.exemplar_ids, 1):
            ex = by_id[tid]
            shown = i <= k
            assert (f"[Exemplar {i}] Prompt: {ex.prompt}\nText: {ex.output}" in text) == shown
        assert text.index("[Prompt]") < text.index("[Response A]") < text.index("[Response B]")
    assert build_messages(pair, by_id) == build_messages(pair, by_id, k=3)
    with pytest.raises(DataError, match="3 exemplar"):
        build_messages(pair, by_id, k=4)


def test_the_real_text_appears_once_and_swap_exchanges_the_responses(smoke):
    pairs, by_id = smoke
    for pair in pairs:
        plain = build_messages(pair, by_id)[1]["content"]
        swapped = build_messages(pair, by_id, swap=True)[1]["content"]
        for text in (plain, swapped):
            assert text.count(pair.chosen.strip()) == 1
        assert (
            _section(plain, "Response A")
            == _section(swapped, "Response B")
            == (pair.response_a.strip())
        )
        assert (
            _section(plain, "Response B")
            == _section(swapped, "Response A")
            == (pair.response_b.strip())
        )
        assert label(pair) == pair.chosen_position and label(pair, swap=True) != label(pair)
        real = label(pair, swap=True)
        assert _section(swapped, f"Response {real}") == pair.chosen.strip()


def test_the_prompt_depends_on_the_label_only_through_the_order_of_the_texts(smoke):
    pairs, by_id = smoke
    for pair in pairs:
        flipped = pair.model_copy(
            update={
                "chosen": pair.rejected,
                "rejected": pair.chosen,
                "chosen_position": _other(pair.chosen_position),
                "negative_type": "cross_author",
                "negative_source": "real:elsewhere",
            }
        )
        assert build_messages(flipped, by_id) == build_messages(pair, by_id)
        template = build_messages(pair, by_id)[1]["content"]
        for part in (pair.response_a, pair.response_b, pair.prompt):
            template = template.replace(part.strip(), "")
        for tid in pair.exemplar_ids:
            template = template.replace(by_id[tid].output.strip(), "")
            template = template.replace(by_id[tid].prompt.strip(), "")
        lowered = template.lower()
        for word in ("real", "generated", "synthetic", "negative", "chosen", "rejected"):
            assert not re.search(rf"\b{word}\b", lowered), word


def test_bad_exemplar_ids_are_reported(smoke):
    pairs, by_id = smoke
    pair = pairs[0]
    own = pair.model_copy(update={"exemplar_ids": [pair.text_id]})
    with pytest.raises(DataError, match="its own text"):
        build_messages(own, by_id)
    with pytest.raises(DataError, match="not among the exemplars"):
        build_messages(pair, {})


def test_a_pair_without_an_opening_asks_about_authorship_and_others_keep_their_layout():
    from persrm_utils.judge.format import NO_PROMPT_QUESTION, QUESTION, compare_message
    from persrm_utils.records import Exemplar

    ex = Exemplar(author_id="u", text_id="u/1", prompt="Open.", output="Mine.", source="seed")
    normal = compare_message("An opening.", "Text one.", "Text two.", [ex])
    assert normal == (  # byte for byte what every pair of the series has always shown
        "[Exemplar 1] Prompt: Open.\nText: Mine.\n\n[Prompt] An opening.\n\n"
        f"[Response A] Text one.\n\n[Response B] Text two.\n\n{QUESTION}"
    )
    bare = compare_message("", "Text one.", "Text two.", [ex])
    assert "[Prompt]" not in bare and bare.endswith(NO_PROMPT_QUESTION)


def test_only_pairs_of_two_real_texts_may_have_no_opening_and_no_judged_text_is_an_exemplar():
    from pydantic import ValidationError

    from persrm_utils.judge.format import shown_exemplars
    from persrm_utils.records import Exemplar, Pair

    fields = dict(pair_id="p", split="test", author_id="u", text_id="u/1", chosen="Mine.",
                  rejected="Theirs.", exemplar_ids=["v/2"], chosen_position="A",
                  negative_source="real:v/2", seen_author=False)  # fmt: skip
    with pytest.raises(ValidationError, match="only a pair of two real texts"):
        Pair(prompt="", negative_type="style_random", **fields)
    Pair(prompt="", negative_type="cross_author", **fields)  # the cross-author set's 2nd form
    with pytest.raises(ValidationError, match="whitespace"):
        Pair(prompt="  ", negative_type="user_swap", **fields)
    pair = Pair(prompt="", negative_type="user_swap", **fields)
    ex = Exemplar(author_id="v", text_id="v/2", prompt="O.", output="Theirs.", source="seed")
    with pytest.raises(DataError, match="the other judged text"):
        shown_exemplars(pair, {"v/2": ex})


def test_the_diagnosis_says_learned_but_not_the_person_when_the_effect_may_be_zero():
    from persrm_utils.judge.diagnosis import NOT_THE_PERSON, personalization_message

    flat = {"n_pairs": 40, "effect": 0.026, "ci_low": -0.03, "ci_high": 0.08}
    message = personalization_message(flat, {"n_pairs": 40, "accuracy": 0.5, "ci_low": 0.45,
                                              "ci_high": 0.55})  # fmt: skip
    assert message.startswith(NOT_THE_PERSON)
    assert "user-swap" in message and "[-0.030, +0.080]" in message and "n=40" in message
    assert "user-swap items" in message  # what to change
    reads = personalization_message({"n_pairs": 40, "effect": 0.2, "ci_low": 0.1, "ci_high": 0.3})
    assert reads.startswith("READS THE PERSON")
    swap_above = {"n_pairs": 100, "accuracy": 0.66, "ci_low": 0.6, "ci_high": 0.72}
    assert personalization_message(flat, swap_above).startswith("READS THE PERSON")
    assert "not measured" in personalization_message(
        {"n_pairs": 4, "effect": 0.0, "ci_low": 0.0, "ci_high": 0.0}
    )


def test_an_exemplar_effect_with_user_swap_at_chance_is_not_called_reading_the_person():
    """Run cpu-e's collapsed judge had an exemplar effect of +0.048 [+0.022, +0.078] (it leaned
    on B even more without the exemplars) and a user-swap accuracy of 0.510 [0.492, 0.530]:
    notebook 05 and the run page called it "READS THE PERSON". Where only the exemplars can
    decide it was at chance, so the sentence must say the effect is not personalization."""
    from persrm_utils.judge.diagnosis import HELPED_NOT_SHOWN, personalization_message

    effect = {"n_pairs": 115, "effect": 0.048, "ci_low": 0.022, "ci_high": 0.078}
    at_chance = {"n_pairs": 100, "accuracy": 0.51, "ci_low": 0.492, "ci_high": 0.53}
    message = personalization_message(effect, at_chance)
    assert message.startswith(HELPED_NOT_SHOWN) and "READS THE PERSON" not in message
    assert "+0.048 [+0.022, +0.078]" in message and "0.510 [0.492, 0.530]" in message
    assert "position bias" in message  # where to look next


def test_a_judge_that_reads_the_person_but_is_fooled_by_mimics_is_told_so():
    """Run cpu-long-c's judge read the person on the user-swap test (0.795 [0.748, 0.840]) while
    the exemplar lowered its accuracy on the test pairs (-0.183 [-0.257, -0.122]): the Markov
    mimics are made of the exemplar's words, and it fell from 0.93 to 0.27 on them. The
    sentence said "the exemplars do not measurably help", which hides a measured harm."""
    from persrm_utils.judge.diagnosis import personalization_message

    hurt = {"n_pairs": 115, "effect": -0.183, "ci_low": -0.257, "ci_high": -0.122}
    reads = {"n_pairs": 100, "accuracy": 0.795, "ci_low": 0.748, "ci_high": 0.84}
    message = personalization_message(hurt, reads)
    assert message.startswith("READS THE PERSON") and "LOWER its accuracy" in message
    assert "style_mimic" in message and "-0.183 [-0.257, -0.122]" in message
    assert "do not measurably help" not in message
    flat = {"n_pairs": 115, "effect": 0.004, "ci_low": -0.039, "ci_high": 0.043}
    assert "do not measurably help" in personalization_message(flat, reads)


def test_a_judge_that_writes_nothing_is_called_broken_not_untrained():
    """Empty answers after a stage mean its weights broke (a learning rate far too high, say):
    "train longer or at a higher learning rate" would be the opposite of the fix."""
    from persrm_utils.judge.diagnosis import diagnose
    from persrm_utils.judge.judging import Judgement

    def judged(texts: list[str]) -> list[Judgement]:
        return [Judgement(f"p{i // 2}", "cross_author", bool(i % 2), "AB"[i % 2], None,
                          "no_answer_tag", text) for i, text in enumerate(texts)]  # fmt: skip

    empty = diagnose(judged(["", "  \n", ""] * 4))
    assert empty.state == "empty" and not empty.usable
    assert empty.message.startswith("EMPTY: every one of the 12 answers is empty")
    assert (
        "lower the learning rate" in empty.message and "higher learning rate" not in empty.message
    )
    untrained = diagnose(judged(["The first text is", "", "Both are"] * 4))
    assert untrained.state == "format_not_learned"
