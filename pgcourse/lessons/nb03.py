r"""Notebook 03 (baselines): the measurements behind its claims, and its figures.

Every function here is seeded and deterministic. The notebook calls them, prints their numbers
and shows their figures; ``python -m pgcourse figures`` writes the key figure
``03_baselines.png`` (the variance of :math:`\nabla\log p(\tau)\,(R-b)` against a constant b).

The lesson's MDP is :func:`pgcourse.mdp.delayed_reward` (a corridor of 6 cells, +1 at the end)
with a policy that goes right with probability :math:`e/(1+e)\approx 0.73` in every cell:
successful episodes are short, so the squared score norm and the return are correlated and the
optimal constant baseline differs visibly from the mean return.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from .. import estimators as est
from ..baselines import batch_mean_baseline, ema, optimal_constant_baseline
from ..device import torch_threads
from ..mdp import Episodes, TabularMDP, delayed_reward
from ..policies import softmax_score_sum
from ..returns import discounted_return
from ..variance import VarianceTable, gradient_samples, summarize

GRID = tuple(round(-1.0 + 0.25 * k, 2) for k in range(13))  # b = -1.0, -0.75, ..., 2.0


def lesson_mdp() -> tuple[TabularMDP, torch.Tensor]:
    """The MDP and the policy logits (S, A) that the notebook measures: ``delayed_reward(6)``, θ = (0, 1) per cell."""
    mdp = delayed_reward(length=6)
    logits = torch.zeros(mdp.n_states, mdp.n_actions, dtype=torch.float64)
    logits[:, 1] = 1.0
    return mdp, logits


# ---- Ψ callables for pgcourse.variance.gradient_samples ----------------------------------------

PsiFn = Callable[[Episodes, TabularMDP, torch.Tensor], torch.Tensor]


def episode_returns(ep: Episodes, mdp: TabularMDP) -> torch.Tensor:
    """R(τ) of each episode: ``ep`` shaped (..., H) gives (...,)."""
    return discounted_return(ep.rewards, mdp.gamma, ep.dones)[..., 0]


def full_return_minus(b: float) -> PsiFn:
    r""":math:`\Psi_t = R(\tau) - b` for a constant b (the score of the whole trajectory times R − b)."""
    def psi(ep: Episodes, mdp: TabularMDP, logits: torch.Tensor) -> torch.Tensor:
        return est.full_return_weights(ep.rewards, mdp.gamma, ep.dones) - b
    return psi


def full_return_minus_batch_mean(leave_one_out: bool = False) -> PsiFn:
    r""":math:`\Psi_t = R_i - b_i`, :math:`b_i` the mean return of episode i's batch (or of the other episodes in it).

    ``gradient_samples`` hands a callable the episodes laid out (batch_size, n_batches, H), so
    :func:`pgcourse.baselines.batch_mean_baseline` (a mean over axis 0) is a mean within each batch.
    """
    def psi(ep: Episodes, mdp: TabularMDP, logits: torch.Tensor) -> torch.Tensor:
        b = batch_mean_baseline(episode_returns(ep, mdp), leave_one_out=leave_one_out)   # (B, n)
        return est.full_return_weights(ep.rewards, mdp.gamma, ep.dones) - b[..., None]
    return psi


def full_return_minus_ema(decay: float = 0.9, init: float = 0.0) -> PsiFn:
    r""":math:`\Psi_t = R_i - b_k`, :math:`b_k` the exponential moving average of the mean returns of the batches before k.

    The batches of one call of ``gradient_samples`` (one chunk) form the sequence, in order.
    """
    def psi(ep: Episodes, mdp: TabularMDP, logits: torch.Tensor) -> torch.Tensor:
        b = ema(episode_returns(ep, mdp).mean(0), decay, init)                             # (n,)
        return est.full_return_weights(ep.rewards, mdp.gamma, ep.dones) - b[:, None]
    return psi


def episode_scores(mdp: TabularMDP, logits: torch.Tensor, ep: Episodes) -> torch.Tensor:
    r"""The score of each whole episode, :math:`\nabla_\theta\log p(\tau_i) = \sum_t \nabla_\theta\log\pi(a_t\mid s_t)`, shaped (N, S, A)."""
    m = ep.mask
    group = torch.arange(len(ep), device=m.device).unsqueeze(-1).expand_as(m)
    ones = torch.ones(int(m.sum()), dtype=logits.dtype, device=logits.device)
    return softmax_score_sum(logits, ep.states[m], ep.actions[m], ones, group[m], len(ep))


# ---- the U-shape ---------------------------------------------------------------------------------

@dataclass
class PerEpisode:
    r"""Per-episode statistics of :math:`g_i(b) = s_i (R_i - b)`, :math:`s_i = \nabla\log p(\tau_i)`.

    The total variance of one episode's estimate is exactly quadratic in a constant b,
    :math:`v(b) = a - 2bc + b^2 d`, and a batch of B episodes has :math:`v(b)/B`.
    """

    n: int
    mean_return: float
    b_star: float          # E[‖s‖² R] / E[‖s‖²]
    a: float               # tr Cov(s R)
    c: float               # tr Cov(s R, s)
    d: float               # tr Cov(s)

    def variance(self, b, batch_size: int = 1):
        """Total variance of a batch estimate with constant baseline b (number or tensor)."""
        return (self.a - 2 * b * self.c + b * b * self.d) / batch_size

    @property
    def b_min(self) -> float:
        """The vertex c/d of the sample parabola (→ b* as n grows)."""
        return self.c / self.d


@torch_threads(1)   # small tensors: one thread avoids OpenMP barriers
def per_episode(mdp: TabularMDP, logits: torch.Tensor, n_episodes: int = 20000, seed: int = 1) -> PerEpisode:
    """Sample episodes and compute b*, the mean return and the parabola's coefficients."""
    ep = mdp.sample(logits, n_episodes, seed)
    s = episode_scores(mdp, logits, ep).reshape(n_episodes, -1)
    R = episode_returns(ep, mdp)
    sq = s.pow(2).sum(-1)
    g0 = s * R[:, None]
    n = n_episodes
    cov = lambda x, y: float(((x - x.mean(0)) * (y - y.mean(0))).sum(-1).mean() * n / (n - 1))  # noqa: E731
    return PerEpisode(n, float(R.mean()), float(optimal_constant_baseline(sq, R)), cov(g0, g0), cov(g0, s), cov(s, s))


@dataclass
class ConstantScan:
    """Direct measurements of bias and variance over a grid of constant baselines, plus the per-episode theory."""

    batch_size: int
    n_batches: int
    grid: list[float]
    variance: list[float]
    variance_se: list[float]
    bias: list[float]
    bias_se: list[float]
    theory: PerEpisode
    grad_norm: float

    @property
    def grid_min(self) -> float:
        """The grid point with the smallest measured variance."""
        return self.grid[min(range(len(self.grid)), key=self.variance.__getitem__)]

    def at(self, b: float) -> tuple[float, float]:
        """Measured (variance, SE) at grid point b."""
        i = min(range(len(self.grid)), key=lambda k: abs(self.grid[k] - b))
        return self.variance[i], self.variance_se[i]


@torch_threads(1)   # small tensors: one thread avoids OpenMP barriers
def constant_baseline_scan(mdp: TabularMDP | None = None, logits: torch.Tensor | None = None, *,
                           grid: Sequence[float] = GRID, batch_size: int = 16, n_batches: int = 2000,
                           seed: int = 0, n_episodes: int = 20000) -> ConstantScan:
    """Measure ĝ with Ψ = R − b for each b in ``grid`` (same seed, so the same episodes for every b)."""
    if mdp is None:
        mdp, logits = lesson_mdp()
    exact = mdp.exact_gradient(logits)
    rows = [summarize(gradient_samples(mdp, logits, full_return_minus(b), batch_size, n_batches, seed), exact)
            for b in grid]
    return ConstantScan(batch_size, n_batches, [float(b) for b in grid], [r.variance for r in rows],
                        [r.variance_se for r in rows], [r.bias for r in rows], [r.bias_se for r in rows],
                        per_episode(mdp, logits, n_episodes, seed + 1), float(exact.norm()))


def plot_parabola(ax, theory: PerEpisode, batch_size: int, lo: float = -1.0, hi: float = 2.0,
                  b_current: float | None = None) -> None:
    """The parabola v(b)/B with b = 0, E[R], b* (and optionally the learner's b) marked; labelled axes."""
    B = batch_size
    bs = torch.linspace(lo, hi, 201, dtype=torch.float64)
    ax.plot(bs, theory.variance(bs, B), color="C0", lw=2, label=f"$(a - 2bc + b^2 d)/B$ from {theory.n} episodes")
    marks = [(0.0, "C3", "$b = 0$"), (theory.mean_return, "C2", r"$b = \mathbb{E}[R]$"),
             (theory.b_star, "C1", r"$b^* = \mathbb{E}[\|s\|^2R]/\mathbb{E}[\|s\|^2]$")]
    for b, color, label in marks:
        v = theory.variance(b, B)
        ax.plot([b], [v], "D", color=color, ms=8, zorder=5, label=f"{label} = {b:.3f}: {v:.4f}")
        ax.axvline(b, color=color, lw=0.8, ls=":")
    if b_current is not None:
        v = theory.variance(b_current, B)
        ax.plot([b_current], [v], "*", color="C4", ms=16, zorder=6, label=f"your $b$ = {b_current:.2f}: {v:.4f}")
    ax.set_xlabel("constant baseline $b$")
    ax.set_ylabel(r"total variance $\mathrm{tr}\,\mathrm{Cov}(\hat g)$")
    ax.set_title(f"Variance of $\\nabla\\log p(\\tau)\\,(R-b)$, batch size {B}")


def plot_constant_scan(scan: ConstantScan, ax) -> None:
    """The U: the parabola, and the variance measured directly at each grid point (±2 SE)."""
    plot_parabola(ax, scan.theory, scan.batch_size, min(scan.grid), max(scan.grid))
    ax.errorbar(scan.grid, scan.variance, yerr=[2 * s for s in scan.variance_se], fmt="o", color="k", ms=4,
                capsize=2, label=f"measured: {scan.n_batches} batches per $b$ (±2 SE)")
    ax.legend(fontsize=8, loc="upper center")


def u_shape_figure(scan: ConstantScan | None = None):
    """The key figure of notebook 03."""
    from ..plots import new_figure
    scan = constant_baseline_scan() if scan is None else scan
    fig = new_figure(figsize=(7, 4.2))
    plot_constant_scan(scan, fig.add_subplot())
    return fig


# ---- batch mean: the O(1/N) bias -----------------------------------------------------------------

@dataclass
class Shrink:
    r"""Mean projection :math:`\langle\bar g, g\rangle/\lVert g\rVert^2` of a baseline's estimates, per batch size."""

    sizes: list[int]
    factor: dict[str, list[float]]
    factor_se: dict[str, list[float]]
    bias: dict[str, list[float]]
    bias_se: dict[str, list[float]]
    grad_norm: float


@torch_threads(1)   # small tensors: one thread avoids OpenMP barriers
def batch_mean_shrink(mdp: TabularMDP | None = None, logits: torch.Tensor | None = None, *,
                      sizes: Sequence[int] = (2, 3, 4, 6, 8), episodes: int = 32000, seed: int = 0) -> Shrink:
    """For each batch size N, the projection of E[ĝ] on the exact gradient, with the batch mean and leave-one-out."""
    if mdp is None:
        mdp, logits = lesson_mdp()
    exact = mdp.exact_gradient(logits)
    g = exact.reshape(-1)
    out = {k: ([], [], [], []) for k in ("batch mean", "leave-one-out")}
    for N in sizes:
        for name, loo in (("batch mean", False), ("leave-one-out", True)):
            x = gradient_samples(mdp, logits, full_return_minus_batch_mean(loo), N, episodes // N, seed)
            p = x.reshape(x.shape[0], -1) @ g / (g @ g)
            row = summarize(x, exact)
            for lst, v in zip(out[name], (float(p.mean()), float(p.std() / math.sqrt(len(p))), row.bias, row.bias_se)):
                lst.append(v)
    return Shrink(list(sizes), {k: v[0] for k, v in out.items()}, {k: v[1] for k, v in out.items()},
                  {k: v[2] for k, v in out.items()}, {k: v[3] for k, v in out.items()}, float(exact.norm()))


def plot_shrink(sh: Shrink, ax) -> None:
    """Measured shrink factor against N, with the predicted 1 − 1/N and the unbiased 1."""
    Ns = torch.linspace(min(sh.sizes), max(sh.sizes), 100)
    ax.plot(Ns, 1 - 1 / Ns, color="C0", lw=1.5, label=r"prediction $1 - 1/N$")
    ax.axhline(1.0, color="C2", lw=1.5, label="unbiased: 1")
    for name, color, dx in (("batch mean", "C0", -0.05), ("leave-one-out", "C2", 0.05)):
        ax.errorbar([n + dx for n in sh.sizes], sh.factor[name], yerr=[2 * s for s in sh.factor_se[name]], fmt="o",
                    color=color, capsize=3, label=f"measured, {name} (±2 SE)")
    ax.set_xlabel("batch size $N$")
    ax.set_ylabel(r"$\langle \mathbb{E}[\hat g], \nabla J\rangle / \|\nabla J\|^2$")
    ax.set_title("Batch-mean baseline shrinks the gradient by $1 - 1/N$")
    ax.legend(fontsize=8)


def shrink_figure(sh: Shrink):
    from ..plots import new_figure
    fig = new_figure(figsize=(6.5, 3.8))
    plot_shrink(sh, fig.add_subplot())
    return fig


# ---- every baseline side by side -------------------------------------------------------------------

@torch_threads(1)   # small tensors: one thread avoids OpenMP barriers
def baseline_table(mdp: TabularMDP | None = None, logits: torch.Tensor | None = None, *, batch_size: int = 8,
                   n_batches: int = 4000, seed: int = 0, ema_decay: float = 0.9) -> VarianceTable:
    """Bias, variance and MSE of ĝ for each baseline of the notebook (same seed, so the same episodes)."""
    if mdp is None:
        mdp, logits = lesson_mdp()
    th = per_episode(mdp, logits, seed=seed + 1)
    B = batch_size
    forms = [
        ("R, no baseline", "full_return", {}),
        (f"R - E[R] (= {th.mean_return:.3f})", full_return_minus(th.mean_return), {}),
        (f"R - b* (= {th.b_star:.3f})", full_return_minus(th.b_star), {}),
        ("R - batch mean", full_return_minus_batch_mean(), {}),
        ("R - leave-one-out mean", full_return_minus_batch_mean(leave_one_out=True), {}),
        (f"R - EMA({ema_decay}) of past batches", full_return_minus_ema(ema_decay), {}),
        ("G_t, no baseline", "reward_to_go", {}),
        ("G_t - V_t(s_t), exact", "reward_to_go_minus_value", {}),
    ]
    exact = mdp.exact_gradient(logits)
    rows = [summarize(gradient_samples(mdp, logits, psi, B, n_batches, seed, **kw), exact, name)
            for name, psi, kw in forms]
    return VarianceTable(rows, f"{mdp.name}: batch size {B}, {n_batches} batches, ‖∇J‖ = {float(exact.norm()):.4f}")


FIGURES = {"03_baselines.png": u_shape_figure}
