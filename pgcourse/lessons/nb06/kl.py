r"""Notebook 06, section 7: the k1, k2, k3 estimators of a KL divergence, measured on two categoricals.

A policy :math:`q` and a reference :math:`p` over a few outcomes (a token); each estimator is a function
of one sample :math:`x\sim q`; its exact mean and spread are sums over the outcomes, its measured ones
averages over many samples.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from ...grpo import kl_estimators

__all__ = ["ESTIMATORS", "COLORS", "KLRow", "two_categoricals", "exact_kl", "estimator_moments", "estimator_draws",
           "kl_estimator_table", "plot_kl_moments", "kl_figure"]

ESTIMATORS = ("k1", "k2", "k3")


# ---- KL estimators -----------------------------------------------------------------------------

def two_categoricals(distance: float, k: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    r"""A policy :math:`q` and a reference :math:`p` over ``k`` outcomes; ``distance`` scales their log-odds gap
    (0: the same distribution). Float64."""
    base = torch.linspace(1.0, -1.0, k, dtype=torch.float64)
    direction = torch.tensor([(-1.0) ** j * (1 + j % 3) for j in range(k)], dtype=torch.float64)
    direction = direction / direction.norm()
    q = torch.softmax(base, 0)
    p = torch.softmax(base + distance * direction, 0)
    return q, p


def exact_kl(q: torch.Tensor, p: torch.Tensor) -> float:
    r""":math:`\mathrm{KL}(q\,\|\,p) = \sum_x q(x)\log\frac{q(x)}{p(x)}`."""
    return float((q * (q.log() - p.log())).sum())


def estimator_moments(q: torch.Tensor, p: torch.Tensor) -> dict[str, tuple[float, float]]:
    """Exact (mean, std) of a single-sample k1, k2, k3 with :math:`x\\sim q`, by summing over the outcomes."""
    est = kl_estimators(q.log(), p.log())
    out = {}
    for name, v in est.items():
        mean = float((q * v).sum())
        out[name] = (mean, math.sqrt(max(float((q * v * v).sum()) - mean ** 2, 0.0)))
    return out


def estimator_draws(q: torch.Tensor, p: torch.Tensor, n: int, n_batches: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """``n_batches`` estimates of KL(q‖p), each the mean of one estimator over ``n`` samples x ~ q (the same samples
    for k1, k2, k3)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.multinomial(q, n * n_batches, replacement=True, generator=g)
    est = kl_estimators(q.log()[x], p.log()[x])
    return {k: v.view(n_batches, n).mean(1) for k, v in est.items()}


@dataclass
class KLRow:
    distance: float
    kl: float
    mean: dict      # estimator -> measured mean of single-sample estimates
    se: dict        # estimator -> its standard error
    std: dict       # estimator -> measured std of a single-sample estimate
    exact: dict     # estimator -> exact (mean, std)


def kl_estimator_table(distances: Sequence[float] = (0.25, 0.5, 1.0, 2.0, 3.0), n_samples: int = 100_000,
                       seed: int = 0) -> list[KLRow]:
    """Measured bias and spread of k1, k2, k3 (``n_samples`` single-sample estimates) at each distance."""
    rows = []
    for i, d in enumerate(distances):
        q, p = two_categoricals(d)
        draws = estimator_draws(q, p, 1, n_samples, seed=seed + i)
        mean = {k: float(v.mean()) for k, v in draws.items()}
        std = {k: float(v.std()) for k, v in draws.items()}
        rows.append(KLRow(d, exact_kl(q, p), mean, {k: std[k] / math.sqrt(n_samples) for k in std}, std,
                          estimator_moments(q, p)))
    return rows


COLORS = {"k1": "tab:blue", "k2": "tab:orange", "k3": "tab:green"}


def plot_kl_moments(axes, distances: Sequence[float] | None = None) -> None:
    """Left: the mean of each estimator against the exact KL; right: the std of a single-sample estimate."""
    distances = distances if distances is not None else [0.05 * j for j in range(61)]
    kl, means, stds = [], {k: [] for k in ESTIMATORS}, {k: [] for k in ESTIMATORS}
    for d in distances:
        q, p = two_categoricals(d)
        kl.append(exact_kl(q, p))
        for k, (m, s) in estimator_moments(q, p).items():
            means[k].append(m)
            stds[k].append(s)
    ax = axes[0]
    ax.plot(distances, kl, color="k", lw=3, alpha=0.3, label="exact KL(q‖p)")
    for k in ESTIMATORS:
        ax.plot(distances, means[k], color=COLORS[k], ls="--" if k != "k2" else "-", label=f"E[{k}]")
    ax.set_xlabel("distance between policy and reference (log-odds scale)")
    ax.set_ylabel("expected value of the estimator")
    ax.set_title("bias: E[k1] = E[k3] = KL, E[k2] is not", fontsize=10)
    ax.legend(fontsize=8)
    ax = axes[1]
    for k in ESTIMATORS:
        ax.plot(distances, stds[k], color=COLORS[k], label=k)
    ax.plot(distances, kl, color="k", lw=3, alpha=0.3, label="KL (for scale)")
    ax.set_xlabel("distance between policy and reference (log-odds scale)")
    ax.set_ylabel("std of a one-sample estimate")
    ax.set_title("spread of a single-sample estimate", fontsize=10)
    ax.legend(fontsize=8)


def kl_figure():
    """The key figure of section 5: bias and std of k1, k2, k3 against how far apart the distributions are."""
    from ...plots import new_figure
    fig = new_figure(figsize=(11, 3.8))
    plot_kl_moments(fig.subplots(1, 2))
    return fig
