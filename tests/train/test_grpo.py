"""GRPO: the rewards on literal strings (hacks included), the group signal, and real training."""

from __future__ import annotations

import pytest
import torch
from smoke_run import build_smoke_run
from training_helpers import grpo_rows_of

from persrm_utils.errors import ConfigError
from persrm_utils.judge.format import format_answer
from persrm_utils.profiles import get_profile
from persrm_utils.train.grpo import grpo_config, load_policy, sample_groups, train_grpo
from persrm_utils.train.rewards import (
    FORMAT_MAX,
    REWARD_FUNCS,
    advantages,
    completion_text,
    correctness_reward,
    format_reward,
    group_signal,
)

RIGHT = format_answer("A keeps the exemplars' short sentences and numbers.", "A")


@pytest.mark.parametrize(
    ("text", "reward"),
    [
        (RIGHT, 1.0),
        (format_answer("B is closer.", "B"), -1.0),
        ("<think>Either.</think>\n<answer>[[A]] [[B]]</answer>", -1.0),  # hedging
        ("<think>It is <answer>[[A]]</answer></think>", -1.0),  # verdict only inside think
        ("<answer>[[A]]</answer>", -1.0),  # no reasoning at all
        ("<think>   </think>\n<answer>[[A]]</answer>", -1.0),  # empty reasoning
        ("<think>x</think><answer>[[B]]</answer><answer>[[A]]</answer>", 1.0),  # last one counts
        ("<think>x</think><answer>[[A]]</answer><answer>[[B]]</answer>", -1.0),
        ("<think>The exemplars average 24 words and", -1.0),  # truncated
        ("", -1.0),
    ],
)
def test_correctness_reward_and_its_guards(text, reward):
    assert correctness_reward([text], label=["A"]) == [reward]


def test_rewards_accept_chat_style_completions():
    """TRL passes conversational completions as message lists, plain ones as strings."""
    chat = [[{"role": "assistant", "content": RIGHT}]]
    assert completion_text(chat[0]) == RIGHT
    assert correctness_reward(chat, label=["A"]) == [1.0]
    assert format_reward(chat) == [FORMAT_MAX]


def test_format_reward_is_small_and_graded():
    texts = ["nothing", "<think>half", "<think>x</think>\n<answer>[[B]]</answer> extra", RIGHT]
    scores = format_reward(texts)
    assert scores == sorted(scores) and scores[0] == 0.0 and scores[-1] == FORMAT_MAX
    assert FORMAT_MAX < 1.0, "format must never outweigh one right verdict"


def test_group_signal_and_advantages():
    rewards = [1.0, -1.0, 1.0, -1.0, -1.0, -1.0, -1.0, -1.0]
    signal = group_signal(rewards, 4)
    assert signal["frac_reward_zero_std"] == 0.5 and signal["groups"] == 2
    adv = advantages(rewards, 4)
    assert adv[4:] == [0.0] * 4, "a uniform group teaches nothing"
    assert adv[0] > 0 > adv[1] and abs(sum(adv[:4])) < 1e-9
    with pytest.raises(ConfigError, match="do not split into groups of 2"):
        group_signal([1.0, 2.0, 3.0], 2)


def test_grpo_config_follows_the_profile_and_the_hardware(tmp_path):
    """Renamed or removed GRPOConfig arguments fail here first, not in a learner's notebook."""
    profile = get_profile("t4")
    cpu = grpo_config(profile, tmp_path, cuda=False)
    assert cpu.num_generations == 4 and cpu.max_completion_length == profile.max_completion_length
    assert cpu.use_cpu and not cpu.bf16 and not cpu.fp16
    assert cpu.save_steps == profile.grpo_max_steps // 3


@pytest.fixture(scope="module")
def smoke_rows(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PERSRM_RUNS_DIR", str(tmp_path_factory.mktemp("runs")))
        run = build_smoke_run("grpo")
    return grpo_rows_of(run)


def test_rows_hold_both_orders_with_their_labels(smoke_rows):
    by_pair: dict[str, set[str]] = {}
    for row in smoke_rows:
        by_pair.setdefault(row["pair_id"], set()).add(row["label"])
        assert row["prompt"][0]["role"] == "system" and row["label"] in ("A", "B")
    assert all(labels == {"A", "B"} for labels in by_pair.values())


def test_grpo_with_a_varying_reward_changes_the_adapter(smoke_rows, tmp_path, monkeypatch):
    """A 0/1 reward is constant on a random model (no gradient); a length reward varies."""
    monkeypatch.setenv("PERSRM_CACHE_DIR", str(tmp_path / "cache"))
    profile = get_profile("smoke", grpo_max_steps=2, max_completion_length=16,
                          grpo_learning_rate=5e-2)  # fmt: skip
    policy = load_policy(profile, None)
    before = {n: p.detach().clone() for n, p in policy.model.named_parameters() if "lora_B" in n}

    def length_reward(completions, **kwargs):
        return [len(completion_text(c)) / 100 for c in completions]

    result = train_grpo(profile, smoke_rows[:8], tmp_path / "grpo", (length_reward,),
                        loaded=policy, resume=False)  # fmt: skip
    assert result.steps == 2 and result.history
    assert all("frac_reward_zero_std" in h for h in result.history)
    after = dict(policy.model.named_parameters())
    changed = sum(not torch.equal(before[n], after[n].detach()) for n in before)
    assert changed == len(before), "every LoRA B matrix should have moved"
    assert (tmp_path / "grpo" / "adapter" / "adapter_model.safetensors").is_file()


def test_a_prompt_that_leaves_no_room_for_the_completion_is_refused_before_training(
    smoke_rows, tmp_path
):
    """Unsloth cuts GRPO forwards at max_seq_length on some paths and plain TRL never does, so a
    row that does not fit trains differently (or crashes) only on a GPU; it is named up front."""
    from transformers import AutoTokenizer

    from persrm_utils.models.tiny import seed_texts, tiny_model_dir
    from persrm_utils.train.grpo import check_prompt_lengths, prompt_tokens

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir(texts=seed_texts()))
    lengths = [prompt_tokens(tokenizer, r["prompt"]) for r in smoke_rows]
    profile = get_profile("smoke")
    assert check_prompt_lengths(smoke_rows, tokenizer, profile) == max(lengths)
    tight = profile.override(max_seq_length=max(lengths) + profile.max_completion_length - 1)
    longest = smoke_rows[lengths.index(max(lengths))]
    with pytest.raises(ConfigError) as err:
        check_prompt_lengths(smoke_rows, tokenizer, tight)
    message = str(err.value)
    assert f"GRPO prompt {longest['pair_id']} is {max(lengths)} tokens" in message
    assert f"more than max_seq_length {tight.max_seq_length}" in message
    assert "max_output_words" in message
    with pytest.raises(ConfigError, match="GRPO prompt"):  # train_grpo checks before step 1
        train_grpo(tight, smoke_rows, tmp_path / "grpo", REWARD_FUNCS, resume=False)
    assert not (tmp_path / "grpo" / "adapter").exists()


def test_preflight_samples_a_group_per_prompt(smoke_rows, tmp_path, monkeypatch):
    monkeypatch.setenv("PERSRM_CACHE_DIR", str(tmp_path / "cache"))
    policy = load_policy(get_profile("smoke"), None)
    texts = sample_groups(policy, smoke_rows[:2], group_size=3, max_new_tokens=8)
    assert len(texts) == 6
    labels = [r["label"] for r in smoke_rows[:2] for _ in range(3)]
    total = [c + f for c, f in zip(correctness_reward(texts, labels), format_reward(texts),
                                   strict=True)]  # fmt: skip
    assert group_signal(total, 3)["groups"] == 2
    assert len(REWARD_FUNCS) == 2


def test_kl_reference_is_the_base_model_and_no_ref_adapter_is_saved(smoke_rows, tmp_path,
                                                                     monkeypatch):  # fmt: skip
    """Plain TRL 1.14.2 gives a PeftModel with beta > 0 a frozen "ref" copy of the starting
    (SFT) adapter as reference, and saves it to adapter/ref/; Unsloth uses the base model. With
    the copy, the first step's KL is exactly 0 (reference = policy); with the base it is not."""
    from peft import get_peft_model

    from persrm_utils.models.loader import load_model, lora_config

    monkeypatch.setenv("PERSRM_CACHE_DIR", str(tmp_path / "cache"))
    profile = get_profile("smoke", grpo_max_steps=1, max_completion_length=8)
    sft = get_peft_model(load_model(profile).model, lora_config(profile))
    with torch.no_grad():  # an "SFT adapter" that moved away from the base model
        for name, param in sft.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5, generator=torch.Generator().manual_seed(0))
    sft.save_pretrained(tmp_path / "sft")
    policy = load_policy(profile, tmp_path / "sft")
    result = train_grpo(profile, smoke_rows[:4], tmp_path / "grpo", REWARD_FUNCS, loaded=policy,
                        resume=False, beta=0.1)  # fmt: skip
    assert "ref" not in policy.model.peft_config
    assert not (tmp_path / "grpo" / "adapter" / "ref").exists()
    assert result.history[0]["kl"] > 0


def test_sampling_a_group_is_one_generate_call_per_group(smoke_rows, tmp_path, monkeypatch):
    """Sampled requests used to run one ``generate`` call each: G calls per pre-flight prompt."""
    monkeypatch.setenv("PERSRM_CACHE_DIR", str(tmp_path / "cache"))
    policy = load_policy(get_profile("smoke"), None)
    calls = []
    real = policy.model.generate

    def counting(*args, **kwargs):
        calls.append(len(kwargs["input_ids"]))
        return real(*args, **kwargs)

    monkeypatch.setattr(policy.model, "generate", counting)
    texts = sample_groups(policy, smoke_rows[:2], group_size=3, max_new_tokens=6, seed=1)
    assert calls == [3, 3] and len(texts) == 6
    monkeypatch.setattr(policy.model, "generate", real)
    again = sample_groups(policy, smoke_rows[:2], group_size=3, max_new_tokens=6, seed=1)
    assert again == texts, "seeded sampling must be reproducible"


def test_grpo_pool_adds_user_swap_items_sft_never_saw_and_keeps_the_types_asked(runs_root):
    """Run cpu-long-a's GRPO drew its prompts from the synthetic pair types only, so the one
    lever that moved SFT (user-swap items) never reached GRPO. ``grpo_user_swap_items`` adds
    them, drawn apart from SFT's own items: a reward on them cannot come from a remembered SFT
    label. ``grpo_negative_types=()`` leaves only them; an empty pool is refused up front."""
    from persrm_utils.errors import DataError
    from persrm_utils.records import USER_SWAP
    from persrm_utils.train.commands import grpo_pairs, load_stage_inputs, sft_pairs

    run = build_smoke_run("pool")
    train, _, by_id = load_stage_inputs(run.path)
    assert grpo_pairs(train, get_profile("smoke"), by_id) == train  # the default: every pair

    profile = get_profile("smoke", sft_user_swap_items=3, grpo_user_swap_items=6,
                          grpo_negative_types=("cross_author",))  # fmt: skip
    pool = grpo_pairs(train, profile, by_id)
    crossed = [p for p in train if p.negative_type == "cross_author"]
    assert crossed and [p for p in pool if p.negative_type != USER_SWAP] == crossed
    swap = [p for p in pool if p.negative_type == USER_SWAP]
    groups = {p.meta["swap_group"] for p in swap}
    assert 1 <= len(groups) <= 6 and len(swap) == 2 * len(groups)  # users a and b of each item
    assert {by_id[p.text_id].meta["split"] for p in swap} == {"train"}  # never unseen authors
    sft_groups = {p.meta["swap_group"] for p in sft_pairs([], profile, by_id)}
    assert len(sft_groups) == 3 and not groups & sft_groups

    only_swap = grpo_pairs(train, profile.override(grpo_negative_types=()), by_id)
    assert only_swap == swap
    with pytest.raises(DataError, match="leaves GRPO no prompts") as err:
        grpo_pairs(train, profile.override(grpo_negative_types=(), grpo_user_swap_items=0), by_id)
    assert "grpo_negative_types" in str(err.value) and "user-swap" in str(err.value)
