"""Does the base model already read the person? The exemplar's pointwise mutual information.

The judge is asked to say which of two texts the writer of the exemplars wrote. Before blaming
the data or the recipe when it cannot, ask whether the language model under it carries that
knowledge at all. A causal LM answers without any training: show it the exemplars, then a text,
and see how much the exemplars made the text more predictable,

    PMI(text; exemplars) = log p(text | exemplars) - log p(text | no exemplars)   (in nats).

This is the language-model form of classic authorship attribution (the author whose writing
best predicts the text): a text by the exemplars' writer should gain more from seeing them than
a text by someone else. The second term matters: without it, the plainer of two texts would win
whatever the exemplars say. The higher PMI wins the pair.

Each text is scored on its own, so a verdict made from these scores cannot depend on where the
text is shown. The contexts are the Bradley-Terry reward model's
(:func:`~persrm_utils.judge.format.bt_context`: the same exemplar blocks, the opening when there
is one), with "No exemplars are available for this user." as the exemplar-free context.
Only the text's own tokens are scored (the assistant turn after the chat template's header,
its end-of-turn marker included, which both contexts share).

Two users of these scores: the baseline of notebook 05 and the probes
(:func:`persrm_utils.evaluate.likelihood.likelihood_baseline`), and the teacher that chooses the
training user-swap items SFT learns from (:func:`items_the_model_reads`,
:mod:`persrm_utils.train.user_swap_items`). They live in the judge layer so that training can
use them without importing the evaluation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from persrm_utils.errors import PersRMError
from persrm_utils.judge.format import bt_context, shown_exemplars
from persrm_utils.records import Exemplar, Pair


def _split_ids(tokenizer: Any, context: list[dict[str, str]], text: str) -> tuple[list[int], int]:
    """The token ids of ``context`` + the assistant turn ``text``, and where the text starts.

    The start is the length of the context templated with its generation prompt (the assistant
    header); a template that does not extend that prefix cannot be scored this way, and says so.
    """
    prefix = tokenizer.apply_chat_template(
        context, add_generation_prompt=True, tokenize=True, return_dict=True
    )["input_ids"]
    full = tokenizer.apply_chat_template(
        [*context, {"role": "assistant", "content": text.strip()}],
        tokenize=True,
        return_dict=True,
    )["input_ids"]
    prefix, full = list(prefix), list(full)
    if full[: len(prefix)] != prefix or len(full) <= len(prefix):
        raise PersRMError(
            "the chat template's assistant turn does not extend its generation prompt",
            "score texts with a ChatML-style template (SmolLM2, Qwen2.5); this model's template "
            "rewrites earlier turns when an assistant turn is added.",
        )
    return full, len(prefix)


def text_logprobs(
    model: Any,
    tokenizer: Any,
    items: Sequence[tuple[list[dict[str, str]], str]],
    batch_size: int = 8,
) -> list[float]:
    """The summed log-probability (nats) of each ``(context, text)``'s text tokens, batched.

    Right-padded batches with an attention mask: a padded position is never scored, so the
    batch size does not change a score beyond float noise.
    """
    import torch

    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    encoded = [_split_ids(tokenizer, context, text) for context, text in items]
    was_training = model.training
    model.eval()
    out: list[float] = []
    try:
        with torch.no_grad():
            for start in range(0, len(encoded), batch_size):
                chunk = encoded[start : start + batch_size]
                width = max(len(ids) for ids, _ in chunk)
                ids = torch.full((len(chunk), width), pad, dtype=torch.long)
                mask = torch.zeros((len(chunk), width), dtype=torch.long)
                for row, (seq, _) in enumerate(chunk):
                    ids[row, : len(seq)] = torch.tensor(seq)
                    mask[row, : len(seq)] = 1
                logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
                for row, (seq, text_start) in enumerate(chunk):
                    # token t is predicted at position t - 1; the softmax in float32 is taken
                    # over the text's positions only (a whole batch of 150k-word vocabularies in
                    # float32 is gigabytes on a T4)
                    logp = torch.log_softmax(logits[row, text_start - 1 : len(seq) - 1].float(), -1)
                    targets = torch.tensor(seq[text_start:], device=logp.device)
                    out.append(float(logp.gather(-1, targets.unsqueeze(-1)).sum()))
                del logits
    finally:
        model.train(was_training)
    return out


def likelihood_scores(
    model: Any,
    tokenizer: Any,
    pairs: Sequence[Pair],
    by_id: Mapping[str, Exemplar],
    k: int | None = None,
    batch_size: int = 8,
) -> list[dict[str, float]]:
    """Per pair, each of its two texts' PMI with the pair's shown exemplars (nats).

    A text's exemplar-free log-probability depends only on the opening and the text, so it is
    computed once per (opening, text) however many pairs share it: the user-swap test shows the
    same two texts under two users, and that halves its cost.
    """
    with_ex: list[tuple[list[dict[str, str]], str]] = []
    blind: dict[tuple[str, str], int] = {}  # (opening, text) -> its row among the blind scores
    for pair in pairs:
        shown = shown_exemplars(pair, by_id, k)
        for text in (pair.chosen, pair.rejected):
            with_ex.append((bt_context(pair.prompt, shown), text))
            blind.setdefault((pair.prompt, text), len(blind))
    cond = text_logprobs(model, tokenizer, with_ex, batch_size)
    base = text_logprobs(
        model, tokenizer, [(bt_context(prompt, []), text) for prompt, text in blind], batch_size
    )
    out = []
    for i, pair in enumerate(pairs):
        texts = (pair.chosen, pair.rejected)
        out.append(
            {
                text: round(cond[2 * i + j] - base[blind[(pair.prompt, text)]], 6)
                for j, text in enumerate(texts)
            }
        )
    return out


def items_the_model_reads(
    model: Any,
    tokenizer: Any,
    swap_pairs: Sequence[Pair],
    by_id: Mapping[str, Exemplar],
    batch_size: int = 8,
) -> tuple[list[Pair], dict[str, float]]:
    """The user-swap items whose writer the base model's likelihood names under *both* users.

    A user-swap item of two training authors is a clean lesson only if the exemplars really
    tell the two texts apart; many 30-word texts of two Reuters writers do not, and their
    labels then teach noise. The untrained model's likelihood is a teacher that needs no labels
    of ours: keep the items where the user's own text has the higher PMI under both users, both
    versions, in their order (a tie is not a reading). Use it on *training* authors only:
    filtering the test items would grade the judge on the questions the teacher found easy.

    Returns the kept pairs and what happened: ``candidates`` and ``kept`` items and the
    teacher's user-swap ``accuracy`` on the candidates (the share of versions it reads).
    """
    scores = likelihood_scores(model, tokenizer, swap_pairs, by_id, batch_size=batch_size)
    right: dict[str, list[bool]] = {}
    for pair, score in zip(swap_pairs, scores, strict=True):
        right.setdefault(str(pair.meta["swap_group"]), []).append(
            score[pair.chosen] > score[pair.rejected]
        )
    clean = {group for group, oks in right.items() if len(oks) == 2 and all(oks)}
    kept = [p for p in swap_pairs if p.meta["swap_group"] in clean]
    scored = [ok for oks in right.values() for ok in oks]
    return kept, {
        "candidates": len(right),
        "kept": len(clean),
        "accuracy": round(sum(scored) / max(1, len(scored)), 4),
    }
