"""The likelihood baseline: the base model's PMI between exemplars and text, scored correctly."""

from __future__ import annotations

import math

import pytest

from persrm_utils.data.exemplars import collect
from persrm_utils.data.user_swap import user_swap_pairs
from persrm_utils.evaluate.likelihood import likelihood_baseline
from persrm_utils.evaluate.metrics import predictions_frame, user_swap_summary
from persrm_utils.judge.format import bt_context
from persrm_utils.judge.likelihood import likelihood_scores, text_logprobs
from persrm_utils.models.loader import load_model
from persrm_utils.profiles import get_profile
from persrm_utils.records import Exemplar


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PERSRM_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        profile = get_profile("smoke")
        loaded = load_model(profile)
        exemplars = collect(profile)
        yield loaded.model, loaded.tokenizer, exemplars


def _sequence_logprob(model, ids: list[int]) -> float:
    """log p(ids[1:] | ids[0]) from one unpadded forward pass."""
    import torch

    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits.float()
    logp = torch.log_softmax(logits[0, :-1], dim=-1)
    return float(logp.gather(-1, torch.tensor(ids[1:]).unsqueeze(-1)).sum())


def test_a_texts_log_probability_is_the_chain_rule_difference_and_ignores_padding(tiny):
    """Why: an off-by-one between the text's tokens and the logits that predict them, or a padded
    position scored, gives plausible numbers that mean nothing. The chain rule checks both:
    log p(text | context) = log p(context + text) - log p(context), each from its own pass."""
    model, tokenizer, exemplars = tiny
    contexts = [bt_context("", exemplars[:1]), bt_context("An opening.", []),
                bt_context("", exemplars[2:4])]  # fmt: skip
    texts = [exemplars[5].output, "Short.", exemplars[7].output]
    items = list(zip(contexts, texts, strict=True))
    batched = text_logprobs(model, tokenizer, items, batch_size=3)  # padded to the longest
    one_by_one = text_logprobs(model, tokenizer, items, batch_size=1)
    for context, text, got, alone in zip(contexts, texts, batched, one_by_one, strict=True):
        prefix = tokenizer.apply_chat_template(
            context, add_generation_prompt=True, tokenize=True, return_dict=True
        )["input_ids"]
        full = tokenizer.apply_chat_template(
            [*context, {"role": "assistant", "content": text}], tokenize=True, return_dict=True
        )["input_ids"]
        expected = _sequence_logprob(model, list(full)) - _sequence_logprob(model, list(prefix))
        assert got < 0
        assert math.isclose(got, expected, rel_tol=1e-4, abs_tol=1e-3)
        assert math.isclose(got, alone, rel_tol=1e-4, abs_tol=1e-3)


def test_the_verdicts_are_position_free_and_no_exemplar_is_a_tie(tiny):
    model, tokenizer, exemplars = tiny
    by_id = {e.text_id: e for e in exemplars}
    swap = user_swap_pairs(exemplars, ("test", "val"), n_pairs=3, k=1, seed=0)
    verdicts = likelihood_baseline(model, tokenizer, swap, by_id)
    assert len(verdicts) == 2 * len(swap)
    for first, second in zip(verdicts[::2], verdicts[1::2], strict=True):
        assert first.letter != second.letter  # the same text in both orders
        assert first.completion.startswith("pmi A=")
    summary = user_swap_summary(predictions_frame(verdicts, swap, "pmi"), swap)
    assert summary["n_pairs"] == 3 and 0 <= summary["accuracy"] <= 1

    blind = likelihood_scores(model, tokenizer, swap[:2], by_id, k=0)
    assert all(v == 0 for score in blind for v in score.values())
    tie = likelihood_baseline(model, tokenizer, swap[:1], by_id, k=0)
    assert "tie: broken by a hash of the texts" in tie[0].completion


def test_a_template_that_rewrites_earlier_turns_is_refused(tiny):
    from persrm_utils.errors import PersRMError
    from persrm_utils.judge.likelihood import _split_ids

    _, tokenizer, _ = tiny

    class Rewrites:
        def apply_chat_template(self, messages, add_generation_prompt=False, **_):
            ids = tokenizer.apply_chat_template(
                messages,
                add_generation_prompt=add_generation_prompt,
                tokenize=True,
                return_dict=True,
            )["input_ids"]
            return {"input_ids": list(ids)[1:] if not add_generation_prompt else list(ids)}

    with pytest.raises(PersRMError, match="does not extend its generation prompt"):
        _split_ids(Rewrites(), bt_context("", []), "A text.")


@pytest.mark.slow
def test_smollm2_gains_most_on_the_text_its_exemplar_repeats():
    """Why: the baseline claims to measure how much the exemplar helps the model predict a text.
    A real LM copies what it has just read, so a text identical to the exemplar must gain far
    more than an unrelated one; if it does not, the scoring is broken, not the model."""
    loaded = load_model(get_profile("cpu"))
    seen = ("Shares of the mining group rose 4 percent on Tuesday after it said quarterly "
            "output beat forecasts, traders said.")  # fmt: skip
    other = "I think the garden looks lovely this spring, and the roses are blooming early."
    ex = Exemplar(author_id="u", text_id="e1", prompt="A market report.", output=seen, source="own")
    from persrm_utils.records import USER_SWAP, Pair

    pair = Pair(pair_id="p", split="test", author_id="u", text_id="t", prompt="", chosen=seen,
                rejected=other, negative_type=USER_SWAP, exemplar_ids=["e1"],
                chosen_position="A", negative_source="real:x", seen_author=False,
                meta={"k": 1})  # fmt: skip
    (score,) = likelihood_scores(loaded.model, loaded.tokenizer, [pair], {"e1": ex})
    assert score[seen] > 10 and score[seen] > score[other] + 10


def test_the_teacher_keeps_whole_items_it_reads_under_both_users(tiny):
    """Why: a filter that kept one user's version of an item would turn the user-swap lesson
    (the same two texts, each author's label) into an ordinary pair the texts can decide."""
    from persrm_utils.judge.likelihood import items_the_model_reads

    model, tokenizer, exemplars = tiny
    by_id = {e.text_id: e for e in exemplars}
    swap = user_swap_pairs(exemplars, "train", n_pairs=12, k=1, seed=0)
    kept, stats = items_the_model_reads(model, tokenizer, swap, by_id)
    assert stats["candidates"] == 12 and len(kept) == 2 * stats["kept"]
    verdicts = likelihood_baseline(model, tokenizer, swap, by_id)
    right = {(p.pair_id): j.letter == j.label for p, j in zip(swap, verdicts[::2], strict=True)}
    groups: dict[str, list[str]] = {}
    for p in kept:
        groups.setdefault(p.meta["swap_group"], []).append(p.meta["user"])
        assert right[p.pair_id]  # every kept version is one the teacher got right
    assert all(sorted(users) == ["a", "b"] for users in groups.values())
    assert stats["accuracy"] == pytest.approx(sum(right.values()) / len(right), abs=1e-4)
    assert [p.pair_id for p in kept] == [p.pair_id for p in swap if p in kept]  # order kept
