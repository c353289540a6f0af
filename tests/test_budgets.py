"""The CPU recipe's budgets: reasoning length, epochs, generation time, GRPO pre-flight, diagnosis.

Each test names the failure it prevents. The first cpu runs ended with a judge that answered
``[[B]]`` whatever the order, GRPO idling on groups with no reward variance, and 1 h 44 min of
CPU: these are the mechanisms that changed that, checked on real components (the tiny model,
the real trace writers, TRL's reward-function signature).
"""

from __future__ import annotations

import pytest

from persrm_utils.data.corpus import load_seed
from persrm_utils.data.exemplars import assign_splits, select
from persrm_utils.data.pairs import make_pairs, plan_pairs
from persrm_utils.errors import DataError
from persrm_utils.evaluate.metrics import MIN_PAIRS_FOR_CI, format_accuracy
from persrm_utils.generation.requests import OfflineBackend
from persrm_utils.judge import format as judge
from persrm_utils.judge.diagnosis import diagnose, require_usable
from persrm_utils.judge.judging import Judgement
from persrm_utils.profiles import get_profile
from persrm_utils.train.rewards import reward_funcs
from persrm_utils.train.sft import sft_steps
from persrm_utils.train.traces import reasoning_traces, short_think, visible_cues

EMPTY_THINK = "<think>\n\n</think>\n<answer>[[A]]</answer>"


@pytest.fixture(scope="module")
def smoke_data():
    profile = get_profile("smoke")
    exemplars = assign_splits(select(load_seed(), profile), profile)
    planned = plan_pairs(exemplars, profile.max_exemplars, profile.seed)
    return profile, exemplars, planned


@pytest.fixture(scope="module")
def smoke_pairs(smoke_data, tmp_path_factory):
    from persrm_utils.data.pairs import offline_backend
    from persrm_utils.generation.cache import CachedGenerator

    _, exemplars, planned = smoke_data
    by_id = {e.text_id: e for e in exemplars}
    cache = tmp_path_factory.mktemp("negatives") / "cache.jsonl"
    generator = CachedGenerator(offline_backend(planned, by_id), cache)
    made = make_pairs(planned, exemplars, generator, 60, "rules", False)
    return made.pairs["train"], by_id


# --- reasoning budget ------------------------------------------------------------------------


@pytest.mark.parametrize("reasoning", ["none", "short"])
def test_short_budgets_trace_every_pair_in_both_orders_with_the_true_label(smoke_pairs, reasoning):
    """A trace whose verdict is not the label, or a pair seen in one order only, teaches a
    position prior: the collapse onto one letter that the first cpu runs ended in."""
    pairs, by_id = smoke_pairs
    traces, stats = reasoning_traces(pairs, by_id, reasoning)
    assert stats["written"] == len(traces) == 2 * len(pairs)
    assert {(t.pair_id, t.swap) for t in traces} == {(p.pair_id, s) for p in pairs for s in (0, 1)}
    labels = [t.verdict for t in traces]
    assert labels.count("A") == labels.count("B")
    for t in traces:
        verdict = judge.parse_verdict(t.completion)
        assert verdict.letter == t.verdict and verdict.exact
        assert verdict.think_empty == (reasoning == "none")
    assert traces[0].source == ("verdict-only" if reasoning == "none" else "short-reasoning")


def test_visible_cues_name_only_what_the_text_shows():
    cues = visible_cues('Profit rose 4 percent. "Good," he said. Wow!')
    assert cues == {
        "numbers": "numbers",
        "quotes": "quotes",
        "exclamations": "exclamations",
        "sentences": "short sentences",
    }
    plain = visible_cues(
        "The company expects its results for the whole of the coming year to be broadly in line "
        "with the forecasts that analysts in London and New York had published in the spring."
    )
    assert plain["numbers"] == "no numbers" and plain["sentences"] == "long sentences"


def test_short_think_never_claims_more_than_the_cues_show(smoke_pairs):
    """The last line follows the cue count: a trace that says "A matches on more cues" when
    the cues favour B would teach reasoning that contradicts its own evidence."""
    _, by_id = smoke_pairs
    ex = [next(iter(by_id.values()))]
    ex = [ex[0].model_copy(update={"output": "Sales rose 4 percent in May, the company said."})]
    news = "Net profit fell 12 percent to 3.1 billion yen in the year to March."
    shout = "OMG this is SO wild!! Can't even."
    assert short_think(ex, news, shout, "A").endswith("A matches the exemplar on more cues.")
    assert short_think(ex, shout, news, "A").endswith(
        "The cues favour B, but A reads more like the exemplar."
    )
    assert "The cues tie" in short_think(ex, news, news, "B")


def test_full_budget_keeps_the_stylometric_writer(smoke_pairs):
    pairs, by_id = smoke_pairs
    traces, _ = reasoning_traces(pairs, by_id, "full")
    assert traces and all(t.source == "stylometric" for t in traces)
    assert "factors" in traces[0].meta


def test_unknown_reasoning_budget_is_refused(smoke_pairs):
    pairs, by_id = smoke_pairs
    with pytest.raises(DataError, match="reasoning='long'"):
        reasoning_traces(pairs, by_id, "long")  # type: ignore[arg-type]


# --- rewards for a verdict-only judge ----------------------------------------------------------


def test_verdict_only_rewards_pay_a_right_answer_with_an_empty_think():
    """With reasoning="none" the empty <think> is the format: the default correctness reward
    would score every completion -1, so GRPO would see no variance at all."""
    correctness, fmt = reward_funcs("none")
    assert correctness.__name__ == "correctness_reward" and fmt.__name__ == "format_reward"
    texts = [EMPTY_THINK, EMPTY_THINK.replace("[[A]]", "[[B]]"), "<answer>[[A]]</answer>"]
    assert correctness(texts, label=["A", "A", "A"]) == [1.0, -1.0, 1.0]
    assert fmt(texts) == [0.2, 0.2, 0.0]
    full_correctness, full_fmt = reward_funcs("full")
    assert full_correctness(texts, label=["A"] * 3) == [-1.0, -1.0, -1.0]
    assert full_fmt([EMPTY_THINK]) == [0.1]


# --- epochs -------------------------------------------------------------------------------------


def test_epochs_set_the_steps_from_the_data_size():
    profile = get_profile("cpu", sft_epochs=1.5)
    per_step = profile.sft_batch_size * profile.sft_grad_accum
    assert sft_steps(profile, 10 * per_step) == 15
    assert sft_steps(profile, 10 * per_step + 1) == 16  # a part-filled last step still runs
    assert sft_steps(profile, 4 * per_step, world_size=2) == 3
    assert sft_steps(profile.override(sft_epochs=1.25), 198) == 31  # run cpu-c's 198 traces
    assert sft_steps(profile.override(sft_epochs=None), 999) == profile.sft_max_steps


# --- negatives under a time budget -------------------------------------------------------------


def test_negatives_budget_hands_the_rest_to_the_offline_writers(smoke_data, tmp_path):
    """An LLM generator on a CPU takes seconds per negative: past its budget the offline writers
    finish the job, and every pair records who wrote its negative."""
    from persrm_utils.generation.cache import CachedGenerator

    _, exemplars, planned = smoke_data
    fake_llm = OfflineBackend(fn=lambda req: "A fluent but generated continuation. " * 3,
                              name="fake-llm", batch_size=2)  # fmt: skip
    unlimited = make_pairs(planned, exemplars, CachedGenerator(fake_llm, tmp_path / "a.jsonl"),
                           60, "rules", progress=False)  # fmt: skip
    sources = {p.negative_source for ps in unlimited.pairs.values() for p in ps}
    assert "fake-llm:fake-llm" in sources and not any("offline" in s for s in sources)

    spent = make_pairs(planned, exemplars, CachedGenerator(fake_llm, tmp_path / "b.jsonl"), 60,
                       "rules", progress=False, budget_s=1e-12)  # fmt: skip
    llm_made = [p for ps in spent.pairs.values() for p in ps if p.negative_type == "style_mimic"]
    assert llm_made and all(p.negative_source.startswith("offline-writers") for p in llm_made)
    assert not (tmp_path / "b.jsonl").exists() or not (tmp_path / "b.jsonl").read_text()


# --- GRPO pre-flight ---------------------------------------------------------------------------


def _constant(completions, **kw):
    return [0.5] * len(completions)


def _length(completions, **kw):
    from persrm_utils.train.rewards import completion_text

    return [float(len(completion_text(c))) for c in completions]


def test_preflight_keeps_prompts_with_variance_and_stops_when_there_is_none(smoke_pairs):
    """GRPO on groups whose rewards are all equal has zero loss and zero gradients: the first
    cpu run spent 50 minutes that way. The pre-flight must say so before training starts."""
    from persrm_utils.models.loader import load_model
    from persrm_utils.train.grpo import grpo_rows, preflight

    pairs, by_id = smoke_pairs
    profile = get_profile("smoke")
    loaded = load_model(profile)
    rows = grpo_rows(pairs, by_id)
    checked = preflight(loaded, rows, 2, 12, (_length,), n_prompts=3, seed=0)
    assert checked.checked == 3 and 1 <= checked.varied <= 3
    assert checked.varied <= len(checked.kept) <= 4  # whole pairs: 1.5 pairs were sampled
    assert all(row in rows for row in checked.kept)
    assert len(checked.group_rewards) == 3 and all(len(g) == 2 for g in checked.group_rewards)
    # the groups as notebook 04 shows them: each completion beside its reward (here its length)
    table = checked.groups_table(2)
    assert len(table) == 2 and [r["right answer"] for r in table] == checked.labels[:2]
    for row, texts, rewards in zip(table, checked.group_texts, checked.group_rewards, strict=False):
        assert [float(len(t)) for t in texts] == rewards
        assert row["completions -> reward"].count(" -> ") == 2
        assert row["kept"] == (rewards[0] != rewards[1])
    with pytest.raises(DataError, match="same reward") as err:
        preflight(loaded, rows, 2, 12, (_constant,), n_prompts=3, seed=0)
    assert "grpo_num_generations" in str(err.value)


def _varies_when_b(completions, label, **kw):
    """A reward whose groups vary only where the right answer is B (a judge sure of its As)."""
    return [_length([c])[0] if lab == "B" else 1.0 for c, lab in zip(completions, label,
                                                                     strict=True)]  # fmt: skip


def test_preflight_keeps_both_orders_of_a_pair_so_no_letter_pays_more(smoke_pairs):
    """Run cpu-e kept only the prompts whose own group varied: 4 with the right answer at A, 2
    at B, so on average its rewards favoured one letter. Kept pairs must come in both orders,
    also an order that ``n_prompts`` cut off before it was sampled, so the kept prompts are
    exactly label-balanced."""
    from persrm_utils.models.loader import load_model
    from persrm_utils.train.grpo import grpo_rows, preflight

    pairs, by_id = smoke_pairs
    loaded = load_model(get_profile("smoke"))
    rows = grpo_rows(pairs, by_id)
    checked = preflight(loaded, rows, 2, 12, (_varies_when_b,), n_prompts=5, seed=0)
    sampled_b = [lab == "B" for lab in checked.labels]
    assert checked.checked == 5 and 1 <= checked.varied <= sum(sampled_b)
    assert [row["label"] for row in checked.kept].count("A") == checked.varied
    assert [row["label"] for row in checked.kept].count("B") == checked.varied
    kept_ids = [row["pair_id"] for row in checked.kept]
    assert all(kept_ids.count(pid) == 2 for pid in kept_ids)  # whole pairs, both orders
    assert all(row in rows for row in checked.kept)


# --- diagnosis ------------------------------------------------------------------------------------


def _judged(letters: list[tuple[str | None, str | None]]) -> list[Judgement]:
    """One pair per tuple: (verdict when the real text is A, verdict when it is B)."""
    out = []
    for i, (first, second) in enumerate(letters):
        for swap, (label, letter) in enumerate((("A", first), ("B", second))):
            reason = "ok" if letter else "no_answer_tag"
            text = f"<answer>[[{letter}]]</answer>" if letter else "some words, no answer tag"
            out.append(Judgement(f"p{i}", "cross_author", bool(swap), label, letter, reason, text))
    return out


def test_diagnosis_names_a_collapse_that_accuracy_hides():
    """A judge that always says B scores exactly 0.5: the table alone reads "a bit weak"."""
    collapsed = diagnose(_judged([("B", "B")] * 20))
    assert collapsed.state == "collapsed" and collapsed.accuracy == 0.5
    assert collapsed.says_a == 0.0 and collapsed.swap_consistency == 0.0
    assert "COLLAPSED onto [[B]]" in collapsed.message and not collapsed.usable
    with pytest.raises(DataError, match="not usable for best-of-N"):
        require_usable(collapsed, "best-of-N")

    learned = diagnose(_judged([("A", "B")] * 16 + [("B", "A")] * 4))
    assert learned.state == "learned" and learned.usable
    assert learned.accuracy == 0.8 and learned.swap_consistency == 1.0
    require_usable(learned, "best-of-N")

    # run cpu-e's judge after GRPO: accuracy 0.639, says A 0.14, swap consistency 0.28, and
    # the diagnosis read "it picks the same text in both orders on most pairs"
    leaning = diagnose(_judged([("A", "B")] * 6 + [("B", "B")] * 14))
    assert leaning.state == "learned" and leaning.swap_consistency == 0.3
    assert 0.1 < leaning.says_a < 0.2 and leaning.accuracy == 0.65
    assert leaning.message.startswith("LEARNED, BUT LEANING ON [[B]]")
    assert "same text in both orders on most pairs" not in leaning.message
    assert "same text in both orders on most pairs" in learned.message

    assert diagnose(_judged([(None, None)] * 10)).state == "format_not_learned"
    chance = diagnose(_judged([("A", "A")] * 10 + [("B", "B")] * 10))
    assert chance.state == "chance" and chance.says_a == 0.5


def test_no_interval_is_printed_for_fewer_than_ten_pairs():
    row = {"n_pairs": MIN_PAIRS_FOR_CI - 1, "accuracy": 0.5, "ci_low": 0.5, "ci_high": 0.5}
    assert format_accuracy(row) == "0.500 (n=9, too few for an interval)"
    row |= {"n_pairs": 108, "accuracy": 0.65, "ci_low": 0.6, "ci_high": 0.7}
    assert format_accuracy(row) == "0.650 [0.600, 0.700]"
    assert format_accuracy(row, with_n=True) == "0.650 [0.600, 0.700], n=108"


def test_sft_curriculum_keeps_every_type_for_grpo(smoke_pairs):
    """SFT on the blatant type only must not take the other types away from GRPO: the `cpu`
    judge learns style_random in SFT and meets the rest in GRPO's pre-flight."""
    from persrm_utils.train.commands import sft_pairs

    pairs, _ = smoke_pairs
    kinds = {p.negative_type for p in pairs}
    assert len(kinds) >= 3, "the smoke train split has several types"
    assert sft_pairs(pairs, get_profile("smoke")) == pairs
    only = sft_pairs(pairs, get_profile("smoke", sft_negative_types=("style_random",)))
    assert only and {p.negative_type for p in only} == {"style_random"}
    assert get_profile("cpu").sft_negative_types == ("style_random",)
    assert get_profile("cpu").train_negative_types is None  # GRPO sees all four


# --- peak memory: micro-batches --------------------------------------------------------------


def test_cpu_trainers_keep_their_updates_but_hold_half_the_sequences_at_once(tmp_path):
    """Run cpu-c peaked at 9.1 GB in GRPO (8 completions per forward pass) and 7.9 GB in the
    Bradley-Terry baseline (4 pairs = 8 sequences per pass), above the 8 GB target. Both now
    pass 4 sequences at a time, as SFT does, and accumulate to the same optimizer step."""
    from persrm_utils.evaluate.baselines import bt_config_values
    from persrm_utils.train.grpo import grpo_config_values

    cpu = get_profile("cpu")
    grpo = grpo_config_values(cpu, tmp_path, cuda=False)
    assert grpo["per_device_train_batch_size"] == 4
    assert grpo["per_device_train_batch_size"] * grpo["gradient_accumulation_steps"] == 8
    assert 8 % grpo["num_generations"] == 0  # whole groups per generation round
    bt = bt_config_values(cpu, tmp_path, 10, 768, cuda=False)
    assert bt["per_device_train_batch_size"] * 2 == cpu.sft_batch_size  # 2 pairs: 4 sequences
    assert bt["per_device_train_batch_size"] * bt["gradient_accumulation_steps"] == 4  # pairs
    smoke_bt = bt_config_values(get_profile("smoke"), tmp_path, 10, 768, cuda=False)
    assert (smoke_bt["per_device_train_batch_size"], smoke_bt["gradient_accumulation_steps"]) == (
        1,
        2,
    )
