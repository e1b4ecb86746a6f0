r"""GRPO's formulas (the package docstring, :mod:`pgcourse.grpo`, writes out the objective): group-relative
advantages, the leave-one-out baseline, the k1/k2/k3 KL estimators, the token weights of the three loss
types, and the per-token clipped loss with the k3 term.
"""
from __future__ import annotations

import torch

from ..ppo import clipped_objective
from ..ppo import kl_k3 as _k3_from_log_ratio
from ..validate import as_tensor, bool_tensor, float_tensor, one_of, positive_float, same_shape

LOSS_TYPES = ("grpo", "bnpo", "dr_grpo")


def group_advantages(rewards: torch.Tensor, eps: float = 1e-4, scale: bool = True) -> torch.Tensor:
    r"""Group-relative advantages for ``rewards`` shaped (prompts, group):

    .. math:: \hat A_{pi} = \frac{r_{pi} - \bar r_p}{s_p + \epsilon},\quad
              s_p = \sqrt{\tfrac{1}{G-1}\textstyle\sum_j (r_{pj} - \bar r_p)^2}

    (Bessel's correction). With ``scale=False`` only the group mean is subtracted. A group whose
    rewards are all equal gets zeros: it carries no signal about which completion is better.
    """
    rewards = float_tensor(rewards, "rewards", min_dim=2)
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be shaped (prompts, group), got {tuple(rewards.shape)}")
    eps = positive_float(eps, "eps", allow_zero=True)
    if not isinstance(scale, bool):
        raise TypeError(f"scale must be a bool, got {type(scale).__name__}")
    centered = rewards - rewards.mean(dim=1, keepdim=True)
    if not scale:
        return centered
    if rewards.shape[1] < 2:
        raise ValueError("rewards needs a group of at least 2 completions per prompt to take a std")
    return centered / (rewards.std(dim=1, keepdim=True) + eps)


def leave_one_out_baseline(rewards: torch.Tensor) -> torch.Tensor:
    r"""Each completion's baseline from the OTHER completions of its group (notebook 3's baseline, RLOO):

    .. math:: b_{pi} = \frac{1}{G-1}\sum_{j\ne i} r_{pj}, \qquad r_{pi} - b_{pi} = \frac{G}{G-1}\,(r_{pi} - \bar r_p).

    :math:`b_{pi}` does not depend on :math:`y_{pi}`, so it leaves the gradient unbiased; the group mean
    :math:`\bar r_p` includes :math:`r_{pi}` itself and shrinks the gradient by :math:`1 - 1/G`.
    """
    rewards = float_tensor(rewards, "rewards", min_dim=2)
    if rewards.dim() != 2 or rewards.shape[1] < 2:
        raise ValueError(f"rewards must be shaped (prompts, group) with a group of at least 2, got {tuple(rewards.shape)}")
    G = rewards.shape[1]
    return (rewards.sum(1, keepdim=True) - rewards) / (G - 1)


def _log_ratio(logp, ref_logp) -> torch.Tensor:
    logp = float_tensor(logp, "logp", min_dim=1)
    ref_logp = float_tensor(ref_logp, "ref_logp", min_dim=1)
    same_shape(ref_logp, "ref_logp", logp, "logp")
    return ref_logp - logp


def kl_k1(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    r"""k1 = :math:`-\log r`, :math:`r = \pi_{\text{ref}}(y)/\pi_\theta(y)`, :math:`y\sim\pi_\theta`: unbiased for
    :math:`\mathrm{KL}(\pi_\theta\,\|\,\pi_{\text{ref}})`, high variance, often negative."""
    return -_log_ratio(logp, ref_logp)


def kl_k2(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    r"""k2 = :math:`\tfrac12(\log r)^2`: never negative, low variance, biased (exact to second order)."""
    return 0.5 * _log_ratio(logp, ref_logp) ** 2


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    r"""k3 = :math:`r - 1 - \log r`: unbiased (as :math:`\mathbb E_{\pi_\theta}[r] = 1`) and never negative
    (as :math:`\log r \le r - 1`); the estimator GRPO puts in its loss."""
    return _k3_from_log_ratio(_log_ratio(logp, ref_logp))


def kl_estimators(logp: torch.Tensor, ref_logp: torch.Tensor) -> dict[str, torch.Tensor]:
    """The three estimators ``{"k1", "k2", "k3"}`` for samples drawn from the policy, elementwise."""
    return {"k1": kl_k1(logp, ref_logp), "k2": kl_k2(logp, ref_logp), "k3": kl_k3(logp, ref_logp)}


def token_weights(mask: torch.Tensor, loss_type: str = "grpo", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    r"""The weight of each token in the loss, (B, T): the loss is :math:`\sum_{i,t} w_{it}\,\ell_{it}` with

    * ``"grpo"``: :math:`w_{it} = m_{it} / (B\,|y_i|)` (each sequence's mean, then the mean over sequences);
    * ``"bnpo"``: :math:`w_{it} = m_{it} / \sum_{j,s} m_{js}` (the mean over all valid tokens of the batch);
    * ``"dr_grpo"``: :math:`w_{it} = m_{it} / (B\,T)`, T the padded length (a constant: no length weighting).

    :math:`|y_i| = \sum_t m_{it}`. A row with no valid token gets no weight. The weights of a microbatch
    are its rows of the FULL batch's weights: that is what makes gradient accumulation exact.
    """
    mask = as_mask(mask)
    loss_type = one_of(loss_type, "loss_type", LOSS_TYPES)
    m = mask.to(dtype)
    B, T = mask.shape
    if loss_type == "grpo":
        return m / (B * m.sum(1, keepdim=True).clamp_min(1))
    if loss_type == "bnpo":
        return m / m.sum().clamp_min(1)
    return m / (B * T)


def as_mask(mask) -> torch.Tensor:
    """``mask`` as a boolean (sequences, tokens) tensor, else a ValueError/TypeError naming it."""
    mask = as_tensor(mask, "mask")
    if mask.dim() != 2 or 0 in mask.shape:
        raise ValueError(f"mask must be shaped (sequences, tokens) with no empty axis, got {tuple(mask.shape)}")
    return bool_tensor(mask, "mask", mask, "mask")


def aggregate_tokens(values: torch.Tensor, mask: torch.Tensor, loss_type: str = "grpo") -> torch.Tensor:
    r"""Average per-token ``values`` (B, T) over the valid tokens ``mask`` (B, T), one of three ways:

    * ``"grpo"``: per sequence, then over sequences, :math:`\frac1B\sum_i \frac{1}{|y_i|}\sum_t m_{it} v_{it}`;
    * ``"bnpo"``: over all valid tokens of the batch, :math:`\sum_{i,t} m_{it} v_{it} / \sum_{i,t} m_{it}`;
    * ``"dr_grpo"``: a constant, :math:`\sum_{i,t} m_{it} v_{it} / (B\,T)`, T the padded length.

    That is :math:`\sum_{i,t} w_{it} v_{it}` with :func:`token_weights`. Masked entries never reach the
    result (not even as NaN). A row with no valid token counts as 0 in "grpo".
    """
    values = float_tensor(values, "values", finite=False, min_dim=2)
    if values.dim() != 2:
        raise ValueError(f"values must be shaped (sequences, tokens), got {tuple(values.shape)}")
    mask = bool_tensor(mask, "mask", values, "values")
    return _weighted_sum(values, mask, token_weights(mask, loss_type, values.dtype))


def _weighted_sum(values: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    total = torch.where(mask, values, torch.zeros_like(values))
    if not bool(torch.isfinite(total).all()):
        raise ValueError("values contains NaN or infinite values at valid (masked-in) tokens")
    return (total * weights).sum()


def grpo_loss(logp: torch.Tensor, old_logp: torch.Tensor, ref_logp: torch.Tensor, advantages: torch.Tensor,
              mask: torch.Tensor, clip_eps: float = 0.2, beta: float = 0.04, loss_type: str = "grpo", *,
              weights: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    r"""The GRPO loss and its statistics.

    Per token :math:`\ell_t = -\min(\rho_t A,\ \mathrm{clip}(\rho_t, 1-\varepsilon, 1+\varepsilon) A) + \beta\,k3_t`
    with :math:`\rho_t = e^{\log\pi_\theta - \log\pi_{\text{old}}}` and
    :math:`k3_t = e^{\log\pi_{\text{ref}} - \log\pi_\theta} - (\log\pi_{\text{ref}} - \log\pi_\theta) - 1`,
    averaged by :func:`aggregate_tokens` with ``loss_type`` — or, given ``weights`` (B, T), summed as
    :math:`\sum_{i,t} w_{it}\ell_{it}` over the valid tokens (a microbatch's share of a larger batch: pass its
    rows of the full batch's :func:`token_weights`). ``logp``, ``old_logp``, ``ref_logp`` and ``mask`` are
    (B, T); ``advantages`` is (B,) (one per sequence, broadcast over its tokens) or (B, T). Gradients flow
    through ``logp`` only.

    ``stats``, means over the valid tokens: ``clip_fraction`` (tokens whose clipped term is the active
    one), ``kl_ref`` (= ``approx_kl`` = ``k3``: k3 to the reference), ``kl_old`` (:math:`(\rho-1)-\log\rho`, the
    k3 estimate of KL(π_old‖π_θ) from the sampled tokens), ``ratio`` (mean ρ), ``tokens`` (their number);
    and ``policy_loss``, ``kl_loss`` (the two parts of the loss).
    """
    logp = float_tensor(logp, "logp", finite=False, min_dim=2)
    if logp.dim() != 2:
        raise ValueError(f"logp must be shaped (sequences, tokens), got {tuple(logp.shape)}")
    old_logp = float_tensor(old_logp, "old_logp", finite=False)
    same_shape(old_logp, "old_logp", logp, "logp")
    ref_logp = float_tensor(ref_logp, "ref_logp", finite=False)
    same_shape(ref_logp, "ref_logp", logp, "logp")
    mask = bool_tensor(mask, "mask", logp, "logp")
    advantages = float_tensor(advantages, "advantages")
    if advantages.dim() == 1:
        if advantages.shape[0] != logp.shape[0]:
            raise ValueError(f"advantages has {advantages.shape[0]} entries but logp has {logp.shape[0]} sequences")
        advantages = advantages[:, None].expand_as(logp)
    else:
        same_shape(advantages, "advantages", logp, "logp")
    clip_eps = positive_float(clip_eps, "clip_eps")
    beta = positive_float(beta, "beta", allow_zero=True)
    loss_type = one_of(loss_type, "loss_type", LOSS_TYPES)
    if weights is None:
        weights = token_weights(mask, loss_type, logp.dtype)
    else:
        weights = float_tensor(weights, "weights")
        same_shape(weights, "weights", logp, "logp")
    weights = weights.detach().to(logp)
    for name, x in (("logp", logp), ("old_logp", old_logp), ("ref_logp", ref_logp)):
        if not bool(torch.isfinite(x[mask]).all()):
            raise ValueError(f"{name} contains NaN or infinite values at valid (masked-in) tokens")

    zero = torch.zeros_like(logp)
    logp_v = torch.where(mask, logp, zero)  # masked entries cannot leak NaN/inf into the loss or its gradient
    old_v, ref_v = torch.where(mask, old_logp, zero).detach(), torch.where(mask, ref_logp, zero).detach()
    adv = advantages.detach()
    ratio = torch.exp(logp_v - old_v)
    objective = clipped_objective(ratio, adv, clip_eps)  # PPO's clipped surrogate, per token
    policy_term = -objective
    k3 = kl_k3(logp_v, ref_v)
    per_token = policy_term + beta * k3 if beta > 0 else policy_term
    loss = _weighted_sum(per_token, mask, weights)

    with torch.no_grad():
        n = mask.sum().clamp_min(1)
        mean = lambda x: float((x * mask).sum() / n)  # noqa: E731
        stats = {
            "clip_fraction": mean((objective < ratio * adv).to(logp.dtype)),  # the clipped side is active
            "kl_ref": mean(k3), "approx_kl": mean(k3), "k3": mean(k3),
            "kl_old": mean(_k3_from_log_ratio(logp_v - old_v)),
            "ratio": mean(ratio),
            "tokens": int(mask.sum()),
            "policy_loss": float(_weighted_sum(policy_term, mask, weights)),
            "kl_loss": float(_weighted_sum(beta * k3, mask, weights)),
        }
    return loss, stats
