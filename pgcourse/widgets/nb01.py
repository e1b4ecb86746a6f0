r"""Widgets of notebook 01 (full return, REINFORCE).

``01.variance``: batch size B and horizon H → histogram of many batch estimates of one
coordinate of :math:`\hat g` (full return, on :func:`pgcourse.mdp.coin_flips`), the exact
:math:`\partial J/\partial\theta` marked, and the variance printed.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

from ..device import torch_threads
from ..mdp import TabularMDP, coin_flips
from ..variance import gradient_samples
from . import new_figure, register

N_BATCHES = 400          # batch estimates per histogram
STATE, ACTION = 1, 1     # the coordinate shown: θ[heads, a1]
_LOG2 = math.log10(2.0)


@lru_cache(maxsize=64)
def _mdp(horizon: int) -> TabularMDP:
    return coin_flips(horizon=horizon)


@lru_cache(maxsize=64)
def _exact(horizon: int) -> float:
    return float(_mdp(horizon).exact_gradient(torch.zeros(2, 2, dtype=torch.float64))[STATE, ACTION])


@lru_cache(maxsize=64)
def _spread(horizon: int) -> float:
    """The standard deviation of a one-episode estimate (B = 1), from 4000 episodes: fixes the x-range per H."""
    x = gradient_samples(_mdp(horizon), torch.zeros(2, 2, dtype=torch.float64), "full_return", 1, 4000, seed=1)
    return float(x[:, STATE, ACTION].std())


@register("01.variance", batch_size=("log", 16, 0.0, 8 * _LOG2, _LOG2), horizon=("int", 10, 1, 50, 1))
@torch_threads(1)   # small tensors: one thread avoids OpenMP barriers, which cost the most on a busy machine
def variance_histogram(batch_size: float = 16, horizon: int = 10):
    """Histogram of N_BATCHES batch estimates of ∂J/∂θ[heads, a1] on coin_flips (uniform policy)."""
    B, H = max(1, int(round(float(batch_size)))), int(horizon)
    mdp = _mdp(H)
    logits = torch.zeros(2, 2, dtype=torch.float64)
    x = gradient_samples(mdp, logits, "full_return", B, N_BATCHES, seed=0)[:, STATE, ACTION]
    exact = _exact(H)
    mean, var = float(x.mean()), float(x.var())
    se = math.sqrt(var / N_BATCHES)
    # The x-range is fixed for a given H (±2.5 one-episode standard deviations), so that a larger B
    # shows the histogram narrowing; estimates beyond it are piled into the edge bins.
    half = 2.5 * _spread(H) + 1e-12
    lo, hi = exact - half, exact + half
    fig = new_figure(figsize=(7.0, 3.6))
    ax = fig.add_subplot()
    counts, edges = np.histogram(x.clamp(lo, hi).numpy(), bins=61, range=(lo, hi))
    ax.stairs(counts, edges, fill=True, color="tab:blue", alpha=0.75, label=f"{N_BATCHES} batch estimates")
    ax.axvline(exact, color="tab:red", lw=2.0, label=f"exact ∂J/∂θ = {exact:.3f}")
    ax.axvline(mean, color="black", lw=1.2, ls="--", label=f"mean of estimates = {mean:.3f} ± {se:.3f}")
    ax.set_xlim(lo, hi)
    ax.set_xlabel(r"batch estimate $\hat g$ of $\partial J/\partial\theta_{\mathrm{heads},\,a_1}$")
    ax.set_ylabel("number of batches")
    ax.set_title(f"full return on coin flips, batch size B = {B}, horizon H = {H}\n"
                 f"variance of the estimates = {var:.4g}   (B × variance = {B * var:.4g})", fontsize=10)
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    return fig
