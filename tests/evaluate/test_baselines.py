"""Baselines: the coin, character n-gram stylometry, and a Bradley-Terry reward model (TRL)."""

from __future__ import annotations

import math
import re
import tempfile
from pathlib import Path

import pytest

from persrm_utils.data.exemplars import collect
from persrm_utils.data.pairs import make_pairs, offline_backend, plan_pairs
from persrm_utils.errors import PersRMError
from persrm_utils.evaluate.baselines import (
    TfidfModel,
    bt_baseline,
    bt_rows,
    char_ngrams,
    random_baseline,
    row_lengths,
    stylometric_baseline,
    train_bt,
    visible_cue_baseline,
)
from persrm_utils.evaluate.metrics import accuracy_table, predictions_frame
from persrm_utils.generation.cache import CachedGenerator
from persrm_utils.judge.format import BT_SYSTEM_PROMPT, label
from persrm_utils.profiles import get_profile
from persrm_utils.records import Exemplar, Pair


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """Real smoke pairs (every split) and their exemplars, made as notebook 02 makes them."""
    profile = get_profile("smoke")
    exemplars = collect(profile)
    planned = plan_pairs(exemplars, profile.max_exemplars, profile.seed)
    by_id = {e.text_id: e for e in exemplars}
    cache = tmp_path_factory.mktemp("negatives") / "negatives.jsonl"
    gen = CachedGenerator(offline_backend(planned, by_id), cache, flush_every=1000)
    result = make_pairs(planned, exemplars, gen, profile.max_output_words, "rules", progress=False)
    return result.pairs, by_id


def _all(pairs_by_split: dict[str, list[Pair]]) -> list[Pair]:
    return [p for split in ("train", "val", "test", "seen_test") for p in pairs_by_split[split]]


def _pair(pair_id: str, chosen: str, rejected: str, exemplar_ids: list[str], pos="A") -> Pair:
    return Pair(
        pair_id=pair_id,
        split="test",
        author_id="alice",
        text_id=f"{pair_id}-own",
        prompt="Here is how it went.",
        chosen=chosen,
        rejected=rejected,
        negative_type="style_random",
        exemplar_ids=exemplar_ids,
        chosen_position=pos,
        negative_source="test",
        seen_author=False,
        meta={"k": len(exemplar_ids)},
    )


def _exemplar(text_id: str, output: str, author: str = "alice") -> Exemplar:
    return Exemplar(author_id=author, text_id=text_id, prompt="An opening.", output=output,
                    source="own")  # fmt: skip


def _check_both_orders(judgements, pairs) -> None:
    """Two judgements per pair, in order, with the right labels and valid letters."""
    assert len(judgements) == 2 * len(pairs)
    for i, pair in enumerate(pairs):
        first, second = judgements[2 * i], judgements[2 * i + 1]
        assert (first.pair_id, second.pair_id) == (pair.pair_id, pair.pair_id)
        assert (first.swap, second.swap) == (False, True)
        assert first.label == label(pair, False) and second.label == label(pair, True)
        assert first.letter in ("A", "B") and second.letter in ("A", "B")
        assert first.reason == second.reason == "ok"


def _picks_same_text(judgements) -> bool:
    """Every pair's two verdicts name the same underlying text (letters differ)."""
    return all(a.letter != b.letter for a, b in zip(judgements[::2], judgements[1::2], strict=True))


# ----------------------------------------------------------------------------------------------
# Random
# ----------------------------------------------------------------------------------------------


def test_random_baseline_is_a_fair_seeded_coin():
    pairs = [
        _pair(f"r{i:04d}", "real text", "other text", [], pos="AB"[i % 2]) for i in range(1000)
    ]
    judgements = random_baseline(pairs, seed=7)
    _check_both_orders(judgements, pairs)
    row = accuracy_table(predictions_frame(judgements, pairs, "random")).iloc[0]
    assert abs(row.accuracy - 0.5) < 0.04
    assert abs(row.swap_consistency - 0.5) < 0.06 and abs(row.position_bias - 0.5) < 0.04
    again = random_baseline(pairs, seed=7)
    assert [j.letter for j in again] == [j.letter for j in judgements]
    other = random_baseline(pairs, seed=8)
    assert [j.letter for j in other] != [j.letter for j in judgements]
    # a pair's coin does not depend on which other pairs are judged
    assert [j.letter for j in random_baseline(pairs[500:510], seed=7)] == [
        j.letter for j in judgements[1000:1020]
    ]


# ----------------------------------------------------------------------------------------------
# Stylometric
# ----------------------------------------------------------------------------------------------


def test_char_ngrams_and_idf():
    grams = char_ngrams("ab  ab\n", 2)
    assert grams == {"ab": 2, "b ": 1, " a": 1}
    assert sum(char_ngrams("abcd", (2, 3)).values()) == 3 + 2
    model = TfidfModel.fit(["abc", "abd"], 2)
    assert model.n_docs == 2 and model.df["ab"] == 2 and model.df["bc"] == 1
    assert model.idf("ab") < model.idf("bc") < model.idf("zz")  # rarer weighs more
    vec = model.vector("abcabc")
    assert math.isclose(math.sqrt(sum(w * w for w in vec.values())), 1.0)
    assert model.vector("") == {}
    with pytest.raises(PersRMError, match="n-gram"):
        char_ngrams("abc", 0)


def test_stylometric_picks_the_response_that_shares_the_exemplars_ngrams():
    exemplars = {
        "e1": _exemplar("e1", "Quixotic zephyrs vex; jumbled quixotic zephyrs waltz — quickly!"),
        "e2": _exemplar("e2", "Zephyrs, quixotic and vexing; a waltz of jumbled zephyrs."),
        "o1": _exemplar(
            "o1", "The market opened higher on Monday as investors bought shares.", "bob"
        ),
        "o2": _exemplar("o2", "The company said profits rose in the third quarter.", "bob"),
    }
    styled = "Jumbled zephyrs waltz; quixotic, vexing zephyrs — quickly."
    plain = "The results were announced on Tuesday and the shares rose."
    pairs = [
        _pair("s1", styled, plain, ["e1", "e2"], pos="A"),
        _pair("s2", styled, plain, ["e1"], pos="B"),
    ]
    for n in (3, (2, 3, 4)):
        judgements = stylometric_baseline(pairs, exemplars, n=n)
        _check_both_orders(judgements, pairs)
        assert all(j.correct for j in judgements)
        for j in judgements:
            a, b = (
                float(x) for x in re.fullmatch(r"cosine A=(\S+) B=(\S+)", j.completion).groups()
            )
            assert (a > b) == (j.letter == "A")
    # with the author's texts as the negative's exemplars instead, the verdict flips
    flipped = stylometric_baseline([_pair("s3", plain, styled, ["e1", "e2"])], exemplars)
    assert not any(j.correct for j in flipped)


def test_stylometric_ties_are_broken_by_the_texts_not_the_position():
    exemplars = {"e1": _exemplar("e1", "Something written by the author.")}
    # no exemplars shown: the profile is empty, both similarities are 0
    pairs = [
        _pair(f"t{i}", f"real text {i}", f"negative {i}", [], pos="AB"[i % 2]) for i in range(40)
    ]
    judgements = stylometric_baseline(pairs, exemplars)
    _check_both_orders(judgements, pairs)
    assert all("tie" in j.completion for j in judgements)
    assert _picks_same_text(judgements)
    row = accuracy_table(predictions_frame(judgements, pairs, "stylo")).iloc[0]
    assert 0.2 < row.accuracy < 0.8  # a fair coin over pairs, not always the real text


def test_visible_cues_count_what_the_short_trace_weighs_and_ties_are_not_positional():
    """The cue baseline is the verdict `short_think`'s last line gives; it must agree with the
    trace, or the figure would not say what the short reasoning can decide."""
    from persrm_utils.train.traces import short_think

    exemplars = {"e1": _exemplar("e1", 'He said "no" in 1999! Short ones. Very short.')}
    # A shares digits, quotes, the exclamation and the short sentences; B shares none
    cued = 'She wrote "yes" in 2001! Brief. Quite brief.'
    plain = (
        "The committee met on a quiet afternoon and decided after a long and careful "
        "discussion that nothing at all would change for the rest of the coming year"
    )
    pairs = [_pair("c1", cued, plain, ["e1"], pos="A"), _pair("c2", cued, plain, ["e1"], pos="B")]
    judgements = visible_cue_baseline(pairs, exemplars)
    _check_both_orders(judgements, pairs)
    assert all(j.correct for j in judgements)
    assert {j.completion for j in judgements} == {"cues A=4 B=0", "cues A=0 B=4"}
    trace = short_think([exemplars["e1"]], cued, plain, "A")
    assert trace.endswith("A matches the exemplar on more cues.")
    # no exemplar, or cues that tie: a hash of the texts decides, the same text in both orders
    blind = [_pair(f"t{i}", f"real {i}", f"other {i}", [], pos="AB"[i % 2]) for i in range(40)]
    ties = visible_cue_baseline(blind, exemplars)
    assert all("tie" in j.completion for j in ties) and _picks_same_text(ties)
    row = accuracy_table(predictions_frame(ties, blind, "cues")).iloc[0]
    assert 0.2 < row.accuracy < 0.8


def test_stylometric_beats_chance_on_real_smoke_pairs(smoke):
    pairs_by_split, by_id = smoke
    pairs = _all(pairs_by_split)
    judgements = stylometric_baseline(pairs, by_id)
    _check_both_orders(judgements, pairs)
    assert _picks_same_text(judgements)  # the same similarities in both orders
    table = accuracy_table(predictions_frame(judgements, pairs, "stylo"), by=["negative_type"])
    by_type = table.set_index("negative_type")
    # the seed authors are very distinct and style_random rewrites in a foreign voice
    assert by_type.loc["style_random", "n_pairs"] >= 8
    assert by_type.loc["style_random", "accuracy"] >= 0.75
    assert by_type.loc["style_random", "ci_low"] > 0.5
    assert by_type.loc["cross_author", "accuracy"] >= 0.75


# ----------------------------------------------------------------------------------------------
# Bradley-Terry reward model
# ----------------------------------------------------------------------------------------------


def test_bt_rows_are_conversational_preference_rows(smoke):
    pairs_by_split, by_id = smoke
    pair = pairs_by_split["train"][0]
    (row,) = bt_rows([pair], by_id)
    assert [m["role"] for m in row["prompt"]] == ["system", "user"]
    assert row["prompt"][0]["content"] == BT_SYSTEM_PROMPT
    user = row["prompt"][1]["content"]
    assert pair.prompt.strip() in user
    for tid in pair.exemplar_ids:
        assert by_id[tid].output.strip() in user
    # neither candidate is in the context: a scalar reward model scores one response at a time
    assert pair.chosen.strip() not in user and pair.rejected.strip() not in user
    assert row["chosen"] == [{"role": "assistant", "content": pair.chosen.strip()}]
    assert row["rejected"] == [{"role": "assistant", "content": pair.rejected.strip()}]
    (zero,) = bt_rows([pair], by_id, k=0)
    assert "No exemplars" in zero["prompt"][1]["content"]


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread: on a busy 2-core machine two threads fight and a step is ~10x slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PERSRM_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="module")
def trained_bt(smoke, tiny_cache, one_thread, tmp_path_factory):
    """The tiny model trained for 2 steps, with max_length set so that some rows are dropped."""
    from transformers import AutoTokenizer

    from persrm_utils.models.loader import resolve_source

    pairs_by_split, by_id = smoke
    profile = get_profile("smoke")
    rows = bt_rows(pairs_by_split["train"][:8], by_id, k=1)
    tokenizer = AutoTokenizer.from_pretrained(resolve_source(profile))
    lengths = sorted(row_lengths(tokenizer, rows))
    max_length = lengths[len(lengths) // 2]  # the longer rows must go
    out = tmp_path_factory.mktemp("bt")
    model, tok, stats = train_bt(profile, rows, out, max_steps=2, max_length=max_length,
                                 per_device_train_batch_size=2)  # fmt: skip
    return model, tok, stats, lengths, out


def test_bt_trains_and_reports_dropped_examples(trained_bt):
    _, _, stats, lengths, out = trained_bt
    assert stats.steps == 2 and len(stats.losses) == 2
    assert all(math.isfinite(loss) for _, loss in stats.losses)
    expected_drops = sum(n > stats.max_length for n in lengths)
    assert stats.dropped == expected_drops > 0
    assert stats.kept + stats.dropped == stats.examples == 8
    assert stats.longest_tokens == max(lengths)
    assert stats.mode == "lora" and stats.trainable_params > 0
    assert stats.seconds_per_step > 0
    assert (Path(stats.model_dir) / "adapter_config.json").is_file()
    assert (out / "bt_log.json").is_file()


def test_bt_baseline_judges_both_orders_consistently(trained_bt, smoke):
    model, tokenizer, _, _, _ = trained_bt
    pairs_by_split, by_id = smoke
    pairs = pairs_by_split["test"][:4]
    judgements = bt_baseline(model, tokenizer, pairs, by_id, batch_size=3)
    _check_both_orders(judgements, pairs)
    assert _picks_same_text(judgements)
    for i in range(len(pairs)):
        first, second = judgements[2 * i], judgements[2 * i + 1]
        for j in (first, second):
            a, b = (float(x) for x in re.fullmatch(r"score A=(\S+) B=(\S+)", j.completion).groups())
            if a != b:  # (equal only if the printed digits collide: then the tie rule decided)
                assert (a > b) == (j.letter == "A")
        # each text is scored once: swapping the texts swaps the printed scores
        a1, b1 = re.findall(r"=(\S+)", first.completion)
        a2, b2 = re.findall(r"=(\S+)", second.completion)
        assert (a1, b1) == (b2, a2)


def test_bt_refuses_a_max_length_that_drops_everything(smoke, tiny_cache):
    pairs_by_split, by_id = smoke
    rows = bt_rows(pairs_by_split["train"][:3], by_id)
    with (
        tempfile.TemporaryDirectory() as out,
        pytest.raises(PersRMError, match="longer than max_length=16") as err,
    ):
        train_bt(get_profile("smoke"), rows, out, max_steps=1, max_length=16)
    assert "raise max_length" in str(err.value)


def test_bt_full_fine_tune_of_a_4bit_model_is_refused_before_loading(smoke):
    pairs_by_split, by_id = smoke
    rows = bt_rows(pairs_by_split["train"][:1], by_id)
    with pytest.raises(PersRMError, match="4-bit"):
        train_bt(get_profile("smoke", load_in_4bit=True), rows, "unused", max_steps=1, full=True)


def test_bt_training_is_reproducible_whatever_the_global_rng(trained_bt, smoke, tmp_path):
    """The same rows and profile give the same reward model, even after other code drew numbers.

    The failure this prevents: the score head and LoRA matrices were drawn from the global RNG
    before ``RewardTrainer`` seeds it, so notebook 05 run twice reported different Bradley-Terry
    accuracies on the same pairs.
    """
    import torch

    pairs_by_split, by_id = smoke
    model, tokenizer, stats, _, _ = trained_bt
    rows = bt_rows(pairs_by_split["train"][:8], by_id, k=1)
    torch.manual_seed(12345)
    torch.rand(1000)  # whatever ran before in the notebook
    again, tok2, _ = train_bt(
        get_profile("smoke"),
        rows,
        tmp_path,
        max_steps=2,
        max_length=stats.max_length,
        per_device_train_batch_size=2,
    )
    pairs = pairs_by_split["test"][:3]
    first = [j.completion for j in bt_baseline(model, tokenizer, pairs, by_id)]
    second = [j.completion for j in bt_baseline(again, tok2, pairs, by_id)]
    assert first == second


def test_a_saved_reward_model_reloads_with_the_same_scores(trained_bt, smoke):
    """Notebook 06 referees best-of-N with the reward model 05 saved: it must be that model."""
    from persrm_utils.evaluate.baselines import load_bt

    pairs_by_split, by_id = smoke
    model, tokenizer, stats, _, _ = trained_bt
    pairs = pairs_by_split["test"][:3]
    reloaded, tok2 = load_bt(get_profile("smoke"), stats.model_dir)
    first = [j.completion for j in bt_baseline(model, tokenizer, pairs, by_id)]
    assert [j.completion for j in bt_baseline(reloaded, tok2, pairs, by_id)] == first
    with pytest.raises(PersRMError, match="run 05_evaluation first"):
        load_bt(get_profile("smoke"), Path(stats.model_dir) / "missing")


def test_bt_referee_says_whether_the_real_text_scores_higher(trained_bt, smoke):
    from persrm_utils.evaluate.baselines import bt_scores
    from persrm_utils.judge.format import bt_context
    from persrm_utils.use.best_of_n import BonTask, bt_real_preferred

    pairs_by_split, by_id = smoke
    model, tokenizer, _, _, _ = trained_bt
    pair = pairs_by_split["test"][0]
    task = BonTask("t1", pair.author_id, pair.text_id, pair.prompt, pair.chosen,
                   tuple(pair.exemplar_ids))  # fmt: skip
    drafts = {"t1": [pair.rejected, pair.chosen]}
    outcomes, real = bt_real_preferred(model, tokenizer, [task], drafts, by_id)
    context = bt_context(pair.prompt, task.exemplars(by_id))
    r, n = bt_scores(model, tokenizer, [[*context, {"role": "assistant", "content": t}]
                                        for t in (pair.chosen, pair.rejected)])  # fmt: skip
    assert real["t1"] == pytest.approx(r)
    assert outcomes["t1"] == [1.0 if r > n else 0.0 if r < n else 0.5, 0.5]  # itself: a tie


def test_bt_keeps_a_4bit_models_adapters_in_float32(smoke, tiny_cache, one_thread, tmp_path,
                                                    monkeypatch):  # fmt: skip
    """TRL 1.14.2's RewardTrainer casts a 4-bit model's trainable weights to bf16
    (reward_trainer.py:535); under fp16 the GradScaler then fails ("not implemented for
    'BFloat16'"). The LoRA matrices and the score head must train in float32."""
    import torch

    from persrm_utils.evaluate import baselines

    real = baselines._load_seqcls

    def quantized(*args, **kwargs):
        model, tokenizer = real(*args, **kwargs)
        model.is_loaded_in_4bit = True  # the one attribute TRL reads
        return model, tokenizer

    monkeypatch.setattr(baselines, "_load_seqcls", quantized)
    pairs_by_split, by_id = smoke
    rows = bt_rows(pairs_by_split["train"][:2], by_id, k=1)
    model, _, _ = train_bt(get_profile("smoke"), rows, tmp_path, max_steps=1, max_length=4096)
    assert {p.dtype for p in model.parameters() if p.requires_grad} == {torch.float32}


def test_char_ngrams_beat_chance_on_user_swap_items_whose_authors_differ_clearly():
    from persrm_utils.data.user_swap import user_swap_pairs
    from persrm_utils.evaluate.metrics import user_swap_summary

    voices = {
        "shouty": "WOW!!! The market went UP again!!! Amazing stuff, folks!!! Buy buy buy!!!",
        "formal": "The committee, having considered the matter, resolved; the motion carried.",
        "terse": "Rates held. Stocks fell. Oil rose. Traders waited. Bonds were flat today.",
    }
    exemplars = [
        Exemplar(author_id=name, text_id=f"{name}/{t}", prompt="An opening.",
                 output=f"{voice} ({t})", source="seed", meta={"split": "test"})
        for name, voice in voices.items()
        for t in range(4)
    ]  # fmt: skip
    by_id = {e.text_id: e for e in exemplars}
    pairs = user_swap_pairs(exemplars, "test", seed=0)
    judged = stylometric_baseline(pairs, by_id)
    out = user_swap_summary(predictions_frame(judged, pairs, "ngrams"), pairs)
    assert out["accuracy"] > 0.5 and out["both_right"] > 0
