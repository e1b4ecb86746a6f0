r"""Baselines b for :math:`\Psi_t = G_t - b`.

Any b that does not depend on the action leaves the gradient unbiased (the EGLP lemma):
:math:`\mathbb E_{a\sim\pi}[\nabla\log\pi(a\mid s)\, b(s)] = b(s)\, \nabla \sum_a \pi(a\mid s) = 0`.
"""
from __future__ import annotations

import torch

from .validate import bool_tensor, float_tensor, unit_interval


def constant_baseline(like: torch.Tensor, b: float) -> torch.Tensor:
    """The constant baseline b, shaped like ``like``."""
    like = float_tensor(like, "like")
    return torch.full_like(like, float(b))


def batch_mean_baseline(x: torch.Tensor, mask: torch.Tensor | None = None, *, leave_one_out: bool = False) -> torch.Tensor:
    r"""The mean over the episodes of the batch (axis 0), per time step, at every entry of ``x`` (N, ...).

    Plain mean :math:`b = \frac1N\sum_j x_j` includes the episode's own return, which biases the
    gradient by O(1/N); leave-one-out :math:`b_i = \frac{1}{N-1}\sum_{j\ne i} x_j` does not.
    """
    x = float_tensor(x, "x")
    m = torch.ones_like(x, dtype=torch.bool) if mask is None else bool_tensor(mask, "mask", x, "x")
    w = m.to(x.dtype)
    total, count = (x * w).sum(0, keepdim=True), w.sum(0, keepdim=True)
    if leave_one_out:
        if x.shape[0] < 2:
            raise ValueError("x needs at least 2 episodes for a leave-one-out baseline")
        total, count = total - x * w, count - w
    return torch.where(count > 0, total / count.clamp_min(1), torch.zeros_like(total)).expand_as(x)


def ema(series: torch.Tensor, decay: float = 0.9, init: float = 0.0) -> torch.Tensor:
    r"""The exponential moving average available *before* each item of a 1-D series:
    :math:`b_0 = \text{init}`, :math:`b_{k+1} = \beta b_k + (1-\beta) x_k`.

    Entry k is the baseline for item k: it uses items 0..k−1 only (item k−j with weight
    :math:`(1-\beta)\beta^{j-1}`, init with :math:`\beta^k`), so it never includes item k itself.
    """
    series = float_tensor(series, "series")
    decay = unit_interval(decay, "decay")
    out = torch.empty_like(series)
    b = torch.as_tensor(init, dtype=series.dtype, device=series.device)
    for k in range(series.shape[0]):
        out[k] = b
        b = decay * b + (1 - decay) * series[k]
    return out


class MovingAverage:
    """A running exponential moving average, for training loops: ``b = ma.value; ma.update(x)``."""

    def __init__(self, decay: float = 0.9, init: float = 0.0):
        self.decay = unit_interval(decay, "decay")
        self.value = float(init)

    def update(self, x: float) -> float:
        self.value = self.decay * self.value + (1 - self.decay) * float(x)
        return self.value


def optimal_constant_baseline(score_sq_norms: torch.Tensor, returns: torch.Tensor) -> torch.Tensor:
    r"""The constant b minimizing the variance of :math:`\nabla\log p(\tau)(R - b)`:
    :math:`b^* = \mathbb E[\lVert\nabla\log p(\tau)\rVert^2 R] / \mathbb E[\lVert\nabla\log p(\tau)\rVert^2]`."""
    score_sq_norms = float_tensor(score_sq_norms, "score_sq_norms")
    returns = float_tensor(returns, "returns")
    if score_sq_norms.shape != returns.shape:
        raise ValueError(f"score_sq_norms {tuple(score_sq_norms.shape)} and returns {tuple(returns.shape)} must match")
    return (score_sq_norms * returns).sum() / score_sq_norms.sum()


def state_value_baseline(values: torch.Tensor, states: torch.Tensor, time_dependent: bool = True) -> torch.Tensor:
    """b(s_t) = V_t(s_t) gathered from a table: ``values`` (H+1, S) time-dependent or (S,); ``states`` (N, H)."""
    values = float_tensor(values, "values")
    if time_dependent:
        t = torch.arange(states.shape[-1], device=states.device).expand_as(states)
        return values[t, states]
    return values[states]
