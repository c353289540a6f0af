"""The verdict-only judge writes one token: the harness writes ``<think></think><answer>[[``
before it and ``]]</answer>`` after it, the same way in SFT, GRPO and evaluation.

The failure these tests prevent: trained on the whole 18-token answer, SmolLM2's loss fell to the
level of the tags within ten steps and then sat at ln 2 over 19 tokens for the rest of the run;
the judge answered one letter whatever the order (RESULTS.md, runs cpu-a and cpu-long). Every
piece below must agree on where the prefix ends, or the judge is trained on one boundary and
asked on another.
"""

from __future__ import annotations

import pytest

from persrm_utils import tags
from persrm_utils.errors import ConfigError, DataError
from persrm_utils.generation.openai_compat import OpenAIBackend
from persrm_utils.generation.requests import GenRequest
from persrm_utils.judge import format as judge
from persrm_utils.profiles import get_profile
from persrm_utils.train.rewards import correctness_reward, reward_funcs

PREFIX = judge.VERDICT_PREFIX
MESSAGES = [{"role": "system", "content": "You judge."}, {"role": "user", "content": "A or B?"}]


def test_prefix_letter_and_closing_make_exactly_the_judge_format():
    """If harness text + letter were not the canonical answer, the parser (and the rewards) would
    read a prefilled verdict differently from a written one; and anything but a bare capital
    letter must still be refused."""
    assert judge.full_answer(PREFIX, "A") == judge.format_answer("", "A")
    assert judge.full_answer(PREFIX, "A]]</answer>") == judge.format_answer("", "A")
    verdict = judge.parse_verdict(judge.full_answer(PREFIX, "B"))
    assert verdict.letter == "B" and verdict.exact and verdict.think_empty
    for wrong in ("a", " The", ""):
        assert judge.parse_verdict(judge.full_answer(PREFIX, wrong)).reason == "no_letter"
    assert judge.full_answer("", "<answer>[[A]]") == "<answer>[[A]]"  # no prefix: no closing
    assert tags.answer_prefix("none") == PREFIX
    assert tags.answer_prefix("none", prefill=False) == ""
    assert tags.answer_prefix("short") == tags.answer_prefix("full") == ""
    assert get_profile("cpu").answer_prefix == PREFIX
    assert get_profile("cpu", answer_prefill=False).answer_prefix == ""
    assert get_profile("smoke").answer_prefix == "" == get_profile("t4").answer_prefix


def test_a_prefix_is_part_of_what_a_request_is_but_leaves_old_cache_keys_alone():
    """Two requests that continue different prefixes must not share a cache entry; a request
    without one must keep the key it had before prefixes existed (caches on disk stay valid)."""
    plain = GenRequest(MESSAGES, 8)
    assert plain.key == GenRequest(MESSAGES, 8, prefix="").key
    assert plain.key != GenRequest(MESSAGES, 8, prefix=PREFIX).key
    with pytest.raises(ConfigError, match="prefix must be a str"):
        GenRequest(MESSAGES, 8, prefix=None)  # type: ignore[arg-type]


def test_a_chat_api_refuses_a_prefix_instead_of_ignoring_it():
    """A chat API would silently start a fresh answer, so the verdict would be read from text the
    model never meant to follow the prefix."""
    backend = OpenAIBackend("http://127.0.0.1:9/v1", "m")
    with pytest.raises(ConfigError, match="cannot continue"):
        backend.generate([GenRequest(MESSAGES, 8, prefix=PREFIX)])


def test_rewards_read_the_prefix_column_that_trl_passes():
    """TRL hands every dataset column to the reward functions: a one-token completion "A" is
    right only when read inside the tags its ``answer_prefix`` stands for."""
    completions = ["A", "B"]
    prefixes = [PREFIX, PREFIX]
    correctness, fmt = reward_funcs("none")
    assert correctness(completions, label=["A", "A"], answer_prefix=prefixes) == [1.0, -1.0]
    assert fmt(completions, answer_prefix=prefixes) == [0.2, 0.2]
    assert correctness(completions, label=["A", "A"]) == [-1.0, -1.0]  # no tags: no verdict
    assert correctness_reward(completions, ["A", "A"], answer_prefix=prefixes) == [-1.0, -1.0]


@pytest.fixture(scope="module")
def smoke_none(tmp_path_factory):
    """The smoke run's pairs and verdict-only traces, with the tiny model's tokenizer."""
    from smoke_run import build_smoke_run

    from persrm_utils.models.loader import load_model
    from persrm_utils.train.commands import load_stage_inputs
    from persrm_utils.train.traces import reasoning_traces, to_sft_rows

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PERSRM_RUNS_DIR", str(tmp_path_factory.mktemp("runs")))
        mp.setenv("PERSRM_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        run = build_smoke_run("prefill")
        train, _, by_id = load_stage_inputs(run.path)
        profile = get_profile("smoke", reasoning="none", max_completion_length=1)
        loaded = load_model(profile)
    traces, _ = reasoning_traces(train, by_id, "none")
    return profile, loaded, train, by_id, to_sft_rows(traces)


def test_prefilled_rows_train_only_the_letter(smoke_none):
    """The tags are context, not targets: the loss is on the one token that decides; and the
    prompt tokens must be exactly those the judge is given at inference (chat template +
    prefix, tokenized as one text)."""
    from persrm_utils.train.sft import prefilled_rows

    profile, loaded, _, _, rows = smoke_none
    tok = loaded.tokenizer
    out = prefilled_rows(rows, tok, profile.answer_prefix)
    assert len(out) == len(rows)
    for row, src in zip(out, rows, strict=True):
        n_prompt = sum(label == -100 for label in row["labels"])
        prompt = tok.apply_chat_template(src["messages"][:-1], tokenize=False,
                                         add_generation_prompt=True)  # fmt: skip
        assert (
            row["input_ids"][:n_prompt]
            == tok(prompt + PREFIX, add_special_tokens=False)["input_ids"]
        )
        letter = judge.parse_verdict(src["messages"][-1]["content"]).letter
        assert row["labels"][n_prompt:] == tok(letter, add_special_tokens=False)["input_ids"]
        assert len(row["labels"]) == n_prompt + 1 == len(row["input_ids"])
    bad = [{"messages": [*rows[0]["messages"][:-1], {"role": "assistant", "content": "[[A]]"}]}]
    with pytest.raises(DataError, match="SFT row 0"):
        prefilled_rows(bad, tok, PREFIX)


def test_verdict_only_sft_judging_and_grpo_share_the_prefix(smoke_none, tmp_path, monkeypatch):
    """Real TRL trainers on the tiny model: SFT on the prefilled rows, the judge continuing the
    prefix, and GRPO on text prompts whose rewards see the prefix (a GRPO that dropped it would
    score every completion -1 and never vary)."""
    from persrm_utils.judge.judging import judge_pairs
    from persrm_utils.models.loader import load_model
    from persrm_utils.train.grpo import grpo_rows, prefilled_prompts, preflight, train_grpo
    from persrm_utils.train.sft import load_with_adapter, train_sft

    monkeypatch.setenv("PERSRM_CACHE_DIR", str(tmp_path / "cache"))
    profile, _, train, by_id, rows = smoke_none
    sft = train_sft(profile.override(sft_max_steps=2), rows[:8], tmp_path / "sft",
                    loaded=load_model(profile), resume=False)  # fmt: skip
    assert sft.steps == 2 and all(loss > 0 for _, loss in sft.losses)

    tuned = load_with_adapter(profile, tmp_path / "sft" / "adapter")
    judged = judge_pairs(tuned.model, tuned.tokenizer, train[:2], by_id, 8, "t",
                         both_orders=True, prefix=profile.answer_prefix)  # fmt: skip
    assert len(judged) == 4
    assert all(j.completion.startswith(PREFIX) and j.completion.endswith("</answer>")
               for j in judged)  # fmt: skip

    grpo = grpo_rows(train[:4], by_id, prefix=profile.answer_prefix)
    assert all(r["answer_prefix"] == PREFIX for r in grpo)
    assert "answer_prefix" not in grpo_rows(train[:1], by_id)[0]
    texts = prefilled_prompts(grpo, tuned.tokenizer)
    assert all(isinstance(r["prompt"], str) and r["prompt"].endswith(PREFIX) for r in texts)

    seen: list[list[str]] = []

    def spy(completions, answer_prefix=None, **kw):
        seen.append(list(answer_prefix or []))
        return [float(len(str(c))) for c in completions]

    checked = preflight(tuned, grpo, 2, 1, (spy,), n_prompts=4, seed=0)
    assert seen[-1] == [PREFIX] * 8 and checked.checked == 4
    result = train_grpo(profile.override(grpo_max_steps=1, grpo_batch_size=4,
                                         grpo_num_generations=2), grpo, tmp_path / "grpo",
                        (spy,), sft_adapter=tmp_path / "sft" / "adapter",
                        resume=False)  # fmt: skip
    assert result.steps == 1 and seen[-1] == [PREFIX] * len(seen[-1]) and seen[-1]
