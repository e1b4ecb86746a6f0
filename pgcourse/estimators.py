r"""The policy-gradient estimator and the weights :math:`\Psi_t` it can use.

.. math:: \hat g = \frac1N \sum_{i=1}^N \sum_t \nabla_\theta \log \pi_\theta(a_t^i\mid s_t^i)\, \Psi_t^i

With a discount γ < 1 the objective is :math:`J = \mathbb E[\sum_t \gamma^t r_t]`; its unbiased
per-step forms carry :math:`\gamma^t` (``discount_t=True``, the default here). Most code drops
it (``discount_t=False``): that estimates a different, biased direction, which notebook 2 measures.
"""
from __future__ import annotations

import math
import numbers

import torch

from .returns import discounted_return, gae, reward_to_go, steps_since_start
from .validate import as_tensor, bool_tensor, float_tensor, same_shape, unit_interval


def pg_loss(logp: torch.Tensor, weights: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    r"""The surrogate :math:`L = -\frac1N \sum_i \sum_t m_t \log\pi(a_t|s_t)\, \text{stopgrad}(\Psi_t)`.

    Its gradient is :math:`-\hat g`, so minimizing it ascends J. ``logp`` and ``weights`` are
    shaped (N, T) (or (T,) for a single episode, or (..., T): every leading index is one row);
    ``mask`` marks valid steps.
    """
    logp = float_tensor(logp, "logp", finite=False)
    weights = float_tensor(weights, "weights")
    same_shape(weights, "weights", logp, "logp")
    if mask is not None:
        mask = bool_tensor(mask, "mask", logp, "logp")
        logp = torch.where(mask, logp, torch.zeros_like(logp))
    elif not bool(torch.isfinite(logp).all()):
        raise ValueError("logp contains NaN or infinite values (pass a mask for padded steps)")
    n_episodes = math.prod(logp.shape[:-1])
    return -(logp * weights.detach()).sum() / n_episodes


def discount_factors(dones: torch.Tensor, gamma: float, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    r""":math:`\gamma^t`, with t counted from the start of each step's episode."""
    gamma = unit_interval(gamma, "gamma")
    dones = bool_tensor(dones, "dones", dones, "dones")
    return torch.pow(torch.tensor(gamma, dtype=dtype, device=dones.device), steps_since_start(dones).to(dtype))


def _episode_args(rewards, dones, name="rewards"):
    rewards = float_tensor(rewards, name)
    dones = torch.zeros_like(rewards, dtype=torch.bool) if dones is None else bool_tensor(dones, "dones", rewards, name)
    return rewards, dones


def _per_step(x: torch.Tensor, dones: torch.Tensor, gamma: float, discount_t: bool) -> torch.Tensor:
    return x * discount_factors(dones, gamma, x.dtype) if discount_t else x


def full_return_weights(rewards, gamma: float = 1.0, dones=None) -> torch.Tensor:
    r""":math:`\Psi_t = R(\tau) = \sum_k \gamma^k r_k`, the same for every step of an episode."""
    return discounted_return(rewards, gamma, dones)


def reward_to_go_weights(rewards, gamma: float = 1.0, dones=None, *, discount_t: bool = True) -> torch.Tensor:
    r""":math:`\Psi_t = \gamma^t G_t` (unbiased), or :math:`G_t` with ``discount_t=False`` (biased if γ<1)."""
    rewards, dones = _episode_args(rewards, dones)
    return _per_step(reward_to_go(rewards, gamma, dones), dones, gamma, discount_t)


def baseline_weights(rewards, baseline, gamma: float = 1.0, dones=None, *, discount_t: bool = True) -> torch.Tensor:
    r""":math:`\Psi_t = \gamma^t (G_t - b_t)`; ``baseline`` is a number or a tensor shaped like ``rewards``."""
    rewards, dones = _episode_args(rewards, dones)
    if isinstance(baseline, numbers.Real) and not isinstance(baseline, bool):
        baseline = torch.tensor(float(baseline))
    b = as_tensor(baseline, "baseline")
    b = float_tensor(b if b.is_floating_point() else b.to(rewards.dtype), "baseline", min_dim=0)
    b = b.to(rewards.device, rewards.dtype)
    if b.dim() > 0:
        same_shape(b, "baseline", rewards, "rewards")
    return _per_step(reward_to_go(rewards, gamma, dones) - b, dones, gamma, discount_t)


def q_weights(q, gamma: float = 1.0, dones=None, *, discount_t: bool = True) -> torch.Tensor:
    r""":math:`\Psi_t = \gamma^t Q(s_t, a_t)`."""
    q, dones = _episode_args(q, dones, "q")
    return _per_step(q, dones, gamma, discount_t)


def advantage_weights(advantages, gamma: float = 1.0, dones=None, *, discount_t: bool = True) -> torch.Tensor:
    r""":math:`\Psi_t = \gamma^t A(s_t, a_t)`."""
    advantages, dones = _episode_args(advantages, dones, "advantages")
    return _per_step(advantages, dones, gamma, discount_t)


def td_residual_weights(rewards, values, next_values, terminated, truncated=None, gamma: float = 1.0,
                        *, discount_t: bool = True) -> torch.Tensor:
    r""":math:`\Psi_t = \gamma^t \delta_t`, :math:`\delta_t = r_t + \gamma(1-\text{terminated}_t) V(s_{t+1}) - V(s_t)`: GAE with λ = 0."""
    return gae_weights(rewards, values, next_values, terminated, truncated, gamma, 0.0, discount_t=discount_t)


def gae_weights(rewards, values, next_values, terminated, truncated=None, gamma: float = 0.99, lam: float = 0.95,
                *, discount_t: bool = True) -> torch.Tensor:
    r""":math:`\Psi_t = \gamma^t A^{\text{GAE}(\gamma,\lambda)}_t` (see :func:`pgcourse.returns.gae`)."""
    adv, _ = gae(rewards, values, next_values, terminated, truncated, gamma=gamma, lam=lam)
    term = bool_tensor(terminated, "terminated", adv, "rewards")
    dones = term if truncated is None else term | bool_tensor(truncated, "truncated", adv, "rewards")
    return _per_step(adv, dones, gamma, discount_t)
