"""GRPO's loss written out: ratio, clipping, token averaging, std scaling and the KL term."""

from __future__ import annotations

import pytest
import torch

from persrm_utils.by_hand.grpo_loss import (
    clipped_surrogate,
    clipping_table,
    group_advantages,
    grpo_loss,
    per_token_kl,
    token_weights,
)


def _batch():
    logp = torch.log(torch.tensor([[0.5, 0.5, 0.5, 0.5], [0.5, 0.5, 0.0 + 1e-9, 0.0 + 1e-9]]))
    mask = torch.tensor([[1.0, 1, 1, 1], [1, 1, 0, 0]])
    return logp, mask


def test_uniform_group_has_zero_advantage_whatever_the_scaling():
    for scale in ("group", "none"):
        adv = group_advantages([1.0, 1.0, -1.0, 1.0], 2, scale)
        assert adv[:2].abs().max() == 0 and adv[2:].abs().max() > 0


def test_group_scaling_blows_up_tiny_differences():
    tiny = group_advantages([0.01, 0.0], 2, "group")
    raw = group_advantages([0.01, 0.0], 2, "none")
    assert tiny.abs().max() > 0.5 and raw.abs().max() == pytest.approx(0.005)


def test_ratio_one_gives_the_policy_gradient():
    logp, mask = _batch()
    new = logp.clone().requires_grad_(True)
    adv = torch.tensor([1.0, -1.0])
    grpo_loss(new, logp, adv, mask, "dapo").backward()
    # d(-ratio * A)/d logp_new = -A at ratio 1, divided by the 6 tokens of the batch
    assert torch.allclose(new.grad[0], torch.full((4,), -1 / 6))
    assert torch.allclose(new.grad[1], torch.tensor([1 / 6, 1 / 6, 0, 0]))


def test_grpo_weighs_short_completions_tokens_more_than_dapo():
    logp, mask = _batch()
    adv = torch.tensor([1.0, 1.0])
    grads = {}
    for loss_type in ("grpo", "dapo", "dr_grpo"):
        new = logp.clone().requires_grad_(True)
        grpo_loss(new, logp, adv, mask, loss_type, max_completion_length=8).backward()
        grads[loss_type] = new.grad
    assert grads["grpo"][1, 0] == pytest.approx(2 * grads["grpo"][0, 0])  # 2 tokens vs 4
    assert grads["dapo"][1, 0] == pytest.approx(grads["dapo"][0, 0])
    assert grads["dr_grpo"][0, 0] == pytest.approx(-1 / 16)
    assert token_weights([4, 2], "grpo", 8) == [1 / 8, 1 / 4]
    assert token_weights([4, 2], "dapo", 8) == [1 / 6, 1 / 6]


def test_clipping_stops_the_gradient_beyond_epsilon():
    rows = {r["ratio"]: r for r in clipping_table(advantage=1.0, epsilon=0.2)}
    assert rows[1.0]["gradient w.r.t. ratio"] == 1.0
    assert rows[1.4]["gradient w.r.t. ratio"] == 0.0  # already pushed up enough
    assert rows[0.6]["gradient w.r.t. ratio"] == 1.0  # still below: keep pushing
    rows = {r["ratio"]: r for r in clipping_table(advantage=-1.0, epsilon=0.2)}
    assert rows[0.6]["gradient w.r.t. ratio"] == 0.0  # already pushed down enough


def test_kl_is_zero_at_the_reference_and_adds_with_beta():
    logp, mask = _batch()
    assert per_token_kl(logp, logp).abs().max() == 0
    moved = logp + 0.1
    assert (per_token_kl(moved, logp) > 0).all()
    adv = torch.tensor([0.0, 0.0])
    assert grpo_loss(moved, moved, adv, mask, beta=0.0, logp_ref=logp) == 0
    assert grpo_loss(moved, moved, adv, mask, beta=0.1, logp_ref=logp) > 0


def test_clip_higher_lets_a_rewarded_token_grow_further():
    """TRL's epsilon_high (DAPO): the upper clip bound is 1 + eps_high, the lower 1 - eps_low."""
    old = torch.log(torch.tensor([[0.4, 0.4]]))
    new = (old + torch.log(torch.tensor([[1.25, 0.75]]))).requires_grad_(True)
    for adv, upper, lower in ((1.0, -1.2, -0.75), (-1.0, 1.25, 0.8)):
        loss = clipped_surrogate(new, old, torch.tensor([adv]), 0.2)  # symmetric: [0.8, 1.2]
        assert loss.detach().squeeze().tolist() == pytest.approx([upper, lower])
    higher = clipped_surrogate(new, old, torch.tensor([1.0]), 0.2, 0.28)
    assert higher.detach().squeeze().tolist() == pytest.approx([-1.25, -0.75])
    (grad,) = torch.autograd.grad(higher.sum(), new)
    assert grad[0, 0] != 0  # 1.25 < 1.28: still inside, still learning
    mask = torch.ones(1, 2)
    loss = grpo_loss(new, old, torch.tensor([1.0]), mask, epsilon=0.2, epsilon_high=0.28)
    assert loss.item() == pytest.approx(-1.0)  # (-1.25 - 0.75) / 2 tokens
