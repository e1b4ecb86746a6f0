r"""Notebook 01 (full return, REINFORCE): its MDPs, measurements, exercise references and figures.

``01_unbiasedness.png``: on FrozenLake, the mean of many batch estimates :math:`\hat g` (full
return) against the exact gradient :math:`\nabla_\theta J`, coordinate by coordinate, with ±2
standard errors, and the standard scores :math:`(\bar g - \nabla J)/\mathrm{SE}` below.
Also: the bandit of exercise 5 and its closed-form variance, the colleague's (buggy) weights of
exercise 4, and the per-seed summaries of the CartPole runs that the notebook's claim reads.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import matplotlib.ticker
import numpy as np
import torch

from ..estimators import full_return_weights
from ..mdp import TabularMDP, frozen_lake
from ..plots import estimates_vs_exact, new_figure, smoothed_curve
from ..stats import mean_se
from ..variance import Row, gradient_samples

# FrozenLake's actions and a good action in each cell (4x4 map, slippery): the policy of the notebook
# puts logit 2 on that action, so it takes it with probability e²/(e²+3) ≈ 0.71.
LAKE_ARROWS = ("←", "↓", "→", "↑")
LAKE_GOOD_ACTIONS = (0, 3, 3, 3, 0, 0, 0, 0, 3, 1, 0, 0, 0, 2, 1, 0)
# The unbiasedness measurement: n_batches batch estimates of batch_size episodes each.
UNBIASED = {"batch_size": 16, "n_batches": 4000, "seed": 1}


def lake_policy(strength: float = 2.0) -> torch.Tensor:
    """Logits (16, 4) of a FrozenLake policy leaning towards a good action in each cell (float64)."""
    good = torch.tensor(LAKE_GOOD_ACTIONS)
    return strength * torch.nn.functional.one_hot(good, 4).to(torch.float64)


def bandit(rewards: Sequence[float]) -> TabularMDP:
    """A one-step MDP (a bandit): one state, one action per arm, arm a pays ``rewards[a]``; horizon 1."""
    r = torch.as_tensor(rewards, dtype=torch.float64).reshape(-1)
    if r.numel() < 2:
        raise ValueError(f"rewards must give at least 2 arms, got {r.numel()}")
    A = r.numel()
    return TabularMDP(torch.ones(1, A, 1, dtype=torch.float64), r.view(1, A), torch.ones(1, dtype=torch.float64),
                      1.0, 1, terminal=torch.zeros(1, dtype=torch.bool), name=f"bandit({A} arms)")


def bandit_variance(logits: torch.Tensor, rewards: torch.Tensor, batch_size: int = 1) -> float:
    r"""tr Cov[ĝ] of REINFORCE on a bandit with arm logits θ (A,) and rewards r (A,), for a batch of B pulls.

    One pull of arm a gives :math:`\hat g = r_a\,(e_a - \pi)`, so with :math:`\nabla J = \sum_a \pi_a r_a (e_a - \pi)`

    .. math:: \operatorname{tr}\operatorname{Cov}[\hat g] = \frac1B\Big(\sum_a \pi_a\, r_a^2\,\lVert e_a - \pi\rVert^2
              - \lVert\nabla J\rVert^2\Big).
    """
    logits = torch.as_tensor(logits, dtype=torch.float64).reshape(-1)
    r = torch.as_tensor(rewards, dtype=torch.float64).reshape(-1)
    pi = torch.softmax(logits, -1)
    diff = torch.eye(pi.numel(), dtype=torch.float64) - pi            # row a: e_a - pi
    grad = (pi * r) @ diff
    second = (pi * r ** 2 * diff.pow(2).sum(-1)).sum()
    return float(second - grad.pow(2).sum()) / int(batch_size)


def colleague_weights(rewards: torch.Tensor, gamma: float, dones: torch.Tensor) -> torch.Tensor:
    r"""A colleague's REINFORCE weights: meant to be :math:`\Psi_t = R(\tau)`, the episode's return, at each step.

    One episode per row, padded after its last step (``dones`` True there), as ``TabularMDP.sample`` gives.
    It has one silent bug.
    """
    R = full_return_weights(rewards, gamma, dones)              # R(tau) at every step of the row's episode
    length = dones.float().argmax(-1, keepdim=True) + 1         # the episode's number of steps
    return R / length    # per step of the episode, "so that long episodes do not dominate the batch"


def power_law_fit(x: Sequence[float], y: Sequence[float]) -> tuple[float, float, float]:
    r"""Least-squares line through :math:`(\log x, \log y)`: ``(slope, standard error of the slope, intercept)``.

    The standard error is the usual OLS one, :math:`\sqrt{s^2 / \sum_i (u_i - \bar u)^2}` with
    :math:`s^2` the residual variance on n − 2 degrees of freedom.
    """
    u, v = np.log(np.asarray(x, dtype=float)), np.log(np.asarray(y, dtype=float))
    if u.size < 3:
        raise ValueError("power_law_fit needs at least 3 points")
    slope, intercept = np.polyfit(u, v, 1)
    resid = v - (slope * u + intercept)
    s2 = float(resid @ resid) / (u.size - 2)
    return float(slope), math.sqrt(s2 / float(((u - u.mean()) ** 2).sum())), float(intercept)


def plot_unbiasedness(samples: torch.Tensor, exact: torch.Tensor, mdp: TabularMDP,
                      action_labels: Sequence[str] | None = None):
    """Mean ± 2 SE of ``samples`` (n, S, A) against ``exact`` (S, A) for every non-terminal state's coordinates."""
    n = samples.shape[0]
    live = (~mdp.terminal).nonzero().flatten().tolist()
    A = mdp.n_actions
    labels = action_labels or mdp.action_names or [f"a{a}" for a in range(A)]
    x = samples.double()[:, live, :].reshape(n, -1)
    g = exact.double()[live, :].reshape(-1)
    mean, se = x.mean(0), x.std(0) / math.sqrt(n)
    z = (mean - g) / se
    pos = np.arange(g.numel())
    fig = new_figure(figsize=(10.0, 5.6))
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[2.2, 1.0])
    for k in range(1, len(live)):
        for ax in (top, bottom):
            ax.axvline(k * A - 0.5, color="0.85", lw=0.8)
    top.axhline(0.0, color="0.6", lw=0.8)
    estimates_vs_exact(mean.numpy(), se.numpy(), g.numpy(), ax=top,
                       title=f"REINFORCE (full return) is unbiased on {mdp.name} (H = {mdp.horizon}, γ = {mdp.gamma}):\n"
                             f"the mean of {n} batch estimates against the exact gradient")
    top.set_xlabel("")
    top.set_ylabel(r"$\partial J / \partial \theta_{s,a}$")
    top.legend(loc="upper right", fontsize=8)
    bottom.axhspan(-2, 2, color="tab:green", alpha=0.12, lw=0, label="within ±2 SE")
    bottom.axhline(0.0, color="0.6", lw=0.8)
    bottom.plot(pos, z.numpy(), "o", ms=3.5, color="black")
    bottom.set_ylabel("(mean − exact) / SE")
    bottom.set_ylim(-4.5, 4.5)
    bottom.legend(loc="upper right", fontsize=8, frameon=False)
    bottom.set_xticks(pos, [f"{s}{labels[a]}" for s in live for a in range(A)], fontsize=7, rotation=90)
    bottom.set_xlabel("coordinate of θ: state s and action a")
    return fig


def make_unbiasedness(samples: torch.Tensor | None = None):
    """The key figure: FrozenLake, the lake policy, UNBIASED's batches (``samples``: already drawn ones)."""
    lake = frozen_lake()
    theta = lake_policy()
    if samples is None:
        samples = gradient_samples(lake, theta, "full_return", **UNBIASED)
    return plot_unbiasedness(samples, lake.exact_gradient(theta), lake, LAKE_ARROWS)


def _integer_ticks(ax, values: Sequence[int]) -> None:
    """Label a log-scaled x axis with the measured values themselves."""
    ax.set_xticks([float(v) for v in values], [str(v) for v in values])
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())


def plot_batch_size(batch_sizes: Sequence[int], rows: Sequence[Row]):
    """Total variance tr Σ of ĝ against the batch size, log-log, with its fitted power law."""
    var = np.array([r.variance for r in rows])
    err = np.array([r.variance_se for r in rows])
    slope, se, icpt = power_law_fit(batch_sizes, var)
    b = np.asarray(batch_sizes, dtype=float)
    fig = new_figure(figsize=(6.0, 4.0))
    ax = fig.add_subplot()
    ax.errorbar(b, var, yerr=2 * err, fmt="o", color="black", capsize=3, label="measured (± 2 SE)")
    ax.plot(b, np.exp(icpt) * b ** slope, color="tab:blue", label=f"fit: slope {slope:.3f} ± {se:.3f}")
    ax.plot(b, float(np.mean(b * var)) / b, color="tab:red", ls=":",
            label=r"exactly $\mathrm{tr}\,\Sigma_1 / B$ (mean of $B\times$variance)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    _integer_ticks(ax, batch_sizes)
    ax.set_xlabel("batch size B (episodes per estimate)")
    ax.set_ylabel(r"total variance $\mathrm{tr}\,\mathrm{Cov}[\hat g]$")
    ax.set_title("variance of REINFORCE falls as 1/B")
    ax.legend(frameon=False)
    return fig


def plot_horizon(horizons: Sequence[int], rows: Sequence[Row], exact_norms: Sequence[float]):
    """Left: total variance against the horizon (log-log, fitted). Right: relative noise √trΣ / ‖∇J‖."""
    h = np.asarray(horizons, dtype=float)
    var = np.array([r.variance for r in rows])
    err = np.array([r.variance_se for r in rows])
    rel = np.sqrt(var) / np.asarray(exact_norms, dtype=float)
    slope, se, icpt = power_law_fit(h, var)
    rslope, rse, ricpt = power_law_fit(h, rel)
    fig = new_figure(figsize=(10.0, 3.8))
    left, right = fig.subplots(1, 2)
    left.errorbar(h, var, yerr=2 * err, fmt="o", color="black", capsize=3, label="measured (± 2 SE)")
    left.plot(h, np.exp(icpt) * h ** slope, color="tab:blue", label=f"fit: slope {slope:.2f} ± {se:.2f}")
    left.set_ylabel(r"total variance $\mathrm{tr}\,\mathrm{Cov}[\hat g]$")
    left.set_title("the variance grows with the horizon")
    right.plot(h, rel, "o", color="black", label="measured")
    right.plot(h, np.exp(ricpt) * h ** rslope, color="tab:blue", label=f"fit: slope {rslope:.2f} ± {rse:.2f}")
    right.set_ylabel(r"relative noise $\sqrt{\mathrm{tr}\,\mathrm{Cov}[\hat g]}$ / ‖∇J‖")
    right.set_title("noise grows faster than the signal")
    right.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    right.yaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    for ax in (left, right):
        ax.set_xscale("log")
        ax.set_yscale("log")
        _integer_ticks(ax, horizons)
        ax.set_xlabel("horizon H (steps per episode)")
        ax.legend(frameon=False)
    return fig


# ---- CartPole: what the runs did, seed by seed ----------------------------------------------------

def _first_last_peak(hist, window: int = 20) -> tuple[float, float, float]:
    """Mean return of a run's first and last ``window`` episodes, and its best ``window``-episode moving mean."""
    r = np.asarray(hist.episode_returns, dtype=float)
    smooth = smoothed_curve(hist, window=window)[1][window - 1:]
    return float(r[:window].mean()), float(r[-window:].mean()), float(smooth.max())


def describe_runs(hists, window: int = 20) -> str:
    """One line per seed: episodes, first/last ``window``-episode means, the best moving mean; then the collapses."""
    lines, collapsed = [], []
    for k, h in enumerate(hists):
        first, last, peak = _first_last_peak(h, window)
        lines.append(f"seed {k}: {len(h.episode_returns):>5} episodes; mean return of the first {window}: {first:5.1f}, "
                     f"of the last {window}: {last:5.1f}; best {window}-episode mean {peak:5.1f}")
        if last < peak / 2:
            collapsed.append(k)
    lines.append(f"seeds that ended below half of their best (a collapse): {collapsed if collapsed else 'none'}")
    return "\n".join(lines)


@dataclass
class Learned:
    """Did every run learn? ``holds`` when the worst final mean beats the best starting mean (the spread)."""

    first: list[float]
    last: list[float]

    @property
    def holds(self) -> bool:
        return min(self.last) > max(self.first)

    @property
    def evidence(self) -> str:
        gain = torch.tensor([b - a for a, b in zip(self.first, self.last)], dtype=torch.float64)
        m, se = mean_se(gain)
        return (f"{len(self.first)} seeds: mean return of the first 20 episodes {min(self.first):.0f}–{max(self.first):.0f}, "
                f"of the last 20 {min(self.last):.0f}–{max(self.last):.0f} (worst run's end above best run's start); "
                f"gain {float(m):.0f} ± {float(se):.0f} (SE over seeds, t = {float(m / se):.1f}; no learning: t ~ t_{len(self.first) - 1})")


def learned(hists, window: int = 20) -> Learned:
    """The first and last ``window``-episode mean returns of each run (a :class:`Learned`)."""
    stats = [_first_last_peak(h, window) for h in hists]
    return Learned([s[0] for s in stats], [s[1] for s in stats])


FIGURES = {"01_unbiasedness.png": make_unbiasedness}
