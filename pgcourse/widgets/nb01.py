r"""Widgets of notebook 01 (full return, REINFORCE).

``01.variance``: batch size B and horizon H → histogram of many batch estimates of one
coordinate of :math:`\hat g` (full return, on :func:`pgcourse.mdp.coin_flips`, uniform policy),
**in units of the exact value** :math:`\partial J/\partial\theta`: the exact value sits at 1 and
zero is marked, on an axis that never moves. So a longer horizon visibly widens the histogram
(the noise grows faster than the signal, about as :math:`\sqrt H`), and a bigger batch narrows it
(as :math:`1/\sqrt B`). Estimates beyond the axis are piled into its end bins and counted.
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
AXIS = 60.0              # the x axis spans ±AXIS times the exact value, whatever B and H
MAX_STEPS = 1 << 19      # for big B × H settings, fewer batches (at least 40) keep a redraw fast
_LOG2 = math.log10(2.0)


@lru_cache(maxsize=64)
def _mdp(horizon: int) -> TabularMDP:
    return coin_flips(horizon=horizon)


@lru_cache(maxsize=64)
def _exact(horizon: int) -> float:
    return float(_mdp(horizon).exact_gradient(torch.zeros(2, 2, dtype=torch.float64))[STATE, ACTION])


@register("01.variance", batch_size=("log", 16, 0.0, 8 * _LOG2, _LOG2), horizon=("int", 10, 1, 50, 1))
@torch_threads(1)   # small tensors: one thread avoids OpenMP barriers, which cost the most on a busy machine
def variance_histogram(batch_size: float = 16, horizon: int = 10):
    """Histogram of batch estimates of ∂J/∂θ[heads, a1] on coin_flips, divided by the exact value."""
    B, H = max(1, int(round(float(batch_size)))), int(horizon)
    n = int(min(N_BATCHES, max(40, MAX_STEPS // (B * H))))
    logits = torch.zeros(2, 2, dtype=torch.float64)
    exact = _exact(H)
    x = gradient_samples(_mdp(H), logits, "full_return", B, n, seed=0)[:, STATE, ACTION] / exact
    mean, sd = float(x.mean()), float(x.std())
    var = (sd * exact) ** 2
    outside = int((x.abs() > AXIS).sum())
    fig = new_figure(figsize=(7.0, 3.6), layout=None)
    fig.subplots_adjust(left=0.09, right=0.98, bottom=0.15, top=0.84)
    ax = fig.add_subplot()
    counts, edges = np.histogram(x.clamp(-AXIS, AXIS).numpy(), bins=80, range=(-AXIS, AXIS))
    ax.stairs(counts, edges, fill=True, color="tab:blue", alpha=0.75,
              label=f"{n} batch estimates" + (f" ({outside} beyond the axis, piled at its ends)" if outside else ""))
    ax.axvline(0.0, color="0.3", lw=1.0, ls=":", label="zero")
    ax.axvline(1.0, color="tab:red", lw=2.0, label=f"exact ∂J/∂θ (= 1 here; {exact:.4f} in absolute units)")
    ax.axvline(mean, color="black", lw=1.2, ls="--", label=f"mean of the estimates = {mean:.2f} ± {sd / math.sqrt(n):.2f}")
    ax.set_xlim(-AXIS, AXIS)
    ax.set_ylim(0, max(1.15 * float(counts.max()), 1.0))
    ax.set_xlabel("batch estimate of ∂J/∂θ[heads, a1], in units of the exact value")
    ax.set_ylabel("number of batches")
    ax.set_title(f"full return on coin flips, batch size B = {B}, horizon H = {H}: spread {sd:.1f} × the exact value\n"
                 f"variance of the estimates = {var:.4g}   (B × variance = {B * var:.4g})", fontsize=10)
    ax.legend(loc="upper left", fontsize=8, framealpha=0.85)
    return fig
