"""From advantage to loss: GRPO's objective written out, as TRL 1.14 computes it.

Notebook 04 computes advantages by hand; this module takes the next steps, on small tensors:

1. **The ratio.** For every token ``t`` of a completion, ``ratio_t = exp(logp_new_t - logp_old_t)``:
   how much more (or less) likely the current policy makes that token than the policy that
   sampled it. With one optimisation step per generation batch (TRL's default) the two are the
   same model and the ratio is exactly 1, but its *gradient* is not zero: it is the gradient of
   ``logp_new``, the policy gradient.
2. **Clipping** (PPO's trick): the per-token objective is ``min(ratio * A, clip(ratio, 1 - eps,
   1 + eps) * A)``. Once a token's probability has moved by more than ``eps`` in the direction its
   advantage asks for, it stops receiving gradient, so a lucky sample cannot drag the policy far.
3. **Averaging over tokens** (``loss_type``). The sum of per-token losses must be divided by
   something, and the choice weights long and short completions differently:

   * ``"grpo"``: average within each completion, then over completions. Every completion weighs the
     same, so each token of a short completion weighs more than a token of a long one: short right
     answers are pushed up harder, long wrong answers pushed down more gently. Dr. GRPO (Liu et al.,
     2025) shows this biases training toward ever longer wrong answers.
   * ``"dapo"`` (TRL's default, and what this series sets explicitly): sum over every token of the
     batch, divided by the number of tokens. Every token weighs the same, whatever its length.
   * ``"dr_grpo"``: sum divided by a constant (completions x ``max_completion_length``): no length
     weighting either, and the scale does not depend on how long this batch happened to be.
4. **Scaling by the group's std** (``scale_rewards``). ``"group"`` divides each advantage by its
   group's reward std; Dr. GRPO argues against it: a group whose rewards barely differ (a question
   that is too easy or too hard) gets its tiny differences blown up to full size, so such prompts
   weigh as much as informative ones. ``"none"`` keeps the raw ``r - mean``.
5. **KL to a reference** (``beta``). With ``beta > 0`` each token also pays ``beta * KL_t``, with
   TRL's estimator ``KL_t = exp(ref - new) - (ref - new) - 1`` (always >= 0, zero when the two
   policies agree). It keeps the policy near the reference; it costs one more forward pass per
   batch, through the reference (with PEFT, the same base weights with the starting adapter).
"""

from __future__ import annotations

from typing import Any, Literal

from persrm_utils.errors import ConfigError

LossType = Literal["grpo", "dapo", "dr_grpo"]


def group_advantages(rewards: Any, group_size: int, scale: str = "group") -> Any:
    """``(r - group mean)``, divided by ``(group std + 1e-4)`` unless ``scale == "none"``.

    TRL's std is the sample std (n - 1); the worked example of notebook 04
    (:func:`persrm_utils.train.rewards.advantages`) uses the population std. Both are zero for a
    uniform group, which is what matters for the learning signal.
    """
    import torch

    r = torch.as_tensor(rewards, dtype=torch.float32).view(-1, group_size)
    centred = r - r.mean(dim=1, keepdim=True)
    if scale == "none":
        return centred.flatten()
    if scale != "group":
        raise ConfigError(f"unknown scale {scale!r}", "use 'group' (TRL's default) or 'none'")
    return (centred / (r.std(dim=1, keepdim=True) + 1e-4)).flatten()


def per_token_kl(logp_new: Any, logp_ref: Any) -> Any:
    """TRL's KL estimator per token: ``exp(ref - new) - (ref - new) - 1``."""
    import torch

    delta = logp_ref - logp_new
    return torch.exp(delta) - delta - 1


def clipped_surrogate(
    logp_new: Any,
    logp_old: Any,
    advantages: Any,
    epsilon_low: float = 0.2,
    epsilon_high: float | None = None,
) -> Any:
    """The per-token loss ``-min(ratio * A, clip(ratio, 1 - eps_low, 1 + eps_high) * A)``.

    ``logp_*`` are (completions x tokens), ``advantages`` one per completion (spread over the
    completion's tokens). ``epsilon_high`` defaults to ``epsilon_low``, as TRL's
    ``epsilon_high=None`` does; DAPO's "clip higher" sets it larger (0.28) so that unlikely
    tokens with a positive advantage can grow further before their gradient stops.
    """
    import torch

    high = epsilon_low if epsilon_high is None else epsilon_high
    ratio = torch.exp(logp_new - logp_old)
    adv = torch.as_tensor(advantages, dtype=ratio.dtype).unsqueeze(1)
    clipped = torch.clamp(ratio, 1 - epsilon_low, 1 + high)
    return -torch.min(ratio * adv, clipped * adv)


def grpo_loss(
    logp_new: Any,
    logp_old: Any,
    advantages: Any,
    mask: Any,
    loss_type: LossType = "dapo",
    epsilon: float = 0.2,
    beta: float = 0.0,
    logp_ref: Any = None,
    max_completion_length: int | None = None,
    epsilon_high: float | None = None,
) -> Any:
    """The scalar GRPO loss of one batch, as TRL 1.14's ``GRPOTrainer._compute_loss``.

    ``logp_*`` and ``mask`` are (completions x tokens); ``advantages`` one per completion.
    Without gradient accumulation and on one process, ``"dapo"`` divides by the number of
    tokens in the batch, as TRL does then.
    """
    per_token = clipped_surrogate(logp_new, logp_old, advantages, epsilon, epsilon_high)
    if beta:
        per_token = per_token + beta * per_token_kl(logp_new, logp_ref)
    masked = per_token * mask
    if loss_type == "grpo":
        return (masked.sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()
    if loss_type == "dapo":
        return masked.sum() / mask.sum().clamp(min=1.0)
    if loss_type == "dr_grpo":
        length = max_completion_length or mask.shape[1]
        return masked.sum() / (mask.shape[0] * length)
    raise ConfigError(f"unknown loss_type {loss_type!r}", "use 'grpo', 'dapo' or 'dr_grpo'")


def token_weights(lengths: list[int], loss_type: LossType, max_completion_length: int) -> list:
    """How much one token of each completion weighs in the loss, by ``loss_type``.

    With equal advantages, this is the gradient each token receives relative to the others.
    """
    n, total = len(lengths), sum(lengths)
    if loss_type == "grpo":
        return [1 / (n * length) for length in lengths]
    if loss_type == "dapo":
        return [1 / total for _ in lengths]
    if loss_type == "dr_grpo":
        return [1 / (n * max_completion_length) for _ in lengths]
    raise ConfigError(f"unknown loss_type {loss_type!r}", "use 'grpo', 'dapo' or 'dr_grpo'")


def clipping_table(advantage: float, epsilon: float = 0.2) -> list[dict[str, float]]:
    """The clipped objective and whether a gradient flows, for a range of ratios."""
    import torch

    rows = []
    for ratio in (0.6, 0.8, 0.9, 1.0, 1.1, 1.2, 1.4):
        r = torch.tensor(ratio, requires_grad=True)
        clipped = torch.clamp(r, 1 - epsilon, 1 + epsilon)
        objective = torch.min(r * advantage, clipped * advantage)
        objective.backward()
        rows.append(
            {
                "ratio": ratio,
                "objective": round(objective.item(), 3),
                "gradient w.r.t. ratio": round(r.grad.item(), 3),
            }
        )
    return rows
