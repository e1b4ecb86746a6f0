r"""Notebook 02's measurements, exercise references and key figure: how much variance the reward-to-go removes.

The sweeps measure, on the tabular MDPs of :mod:`pgcourse.mdp` with the uniform policy (zero
logits), the total variance :math:`\operatorname{tr}\operatorname{Var}[\hat g]` of one episode's estimate
(batch size 1) with :math:`\Psi_t = R(\tau)` and with :math:`\Psi_t = \gamma^t G_t`, each with its
standard error, and their paired difference, against the horizon H and the discount γ.
:func:`coin_flips_prediction` is the notebook's closed-form prediction for :func:`pgcourse.mdp.coin_flips`,
:func:`gamma0_variances` the exact one at γ = 0 (exercise 4); :func:`colleague_rtg_weights` is the
buggy reward-to-go of exercise 3; :func:`area_under_curve` and :class:`Paired` score the CartPole runs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from ..estimators import discount_factors
from ..mdp import TabularMDP, coin_flips, early_rewards
from ..plots import smoothed_curve
from ..stats import mean_se
from ..variance import Row, VarianceDifference, gradient_samples, summarize, variance_difference

PSIS = ("full_return", "reward_to_go")


def coin_flips_prediction(horizon: int, gamma: float = 1.0, noise: float = 1.0, edge: float = 0.1) -> tuple[float, float]:
    r"""Predicted per-episode :math:`\operatorname{tr}\operatorname{Var}[\hat g]` on ``coin_flips`` under the uniform policy,
    ``(full return, reward-to-go)``.

    Each step's score has squared norm 1/2 and mean 0 given the past; the rewards are independent
    with mean :math:`\mu = (\text{noise}+\text{edge})/2` and variance
    :math:`\sigma^2 = (\text{noise}^2+\text{edge}^2)/4`. Neglecting the small correlation between an
    action and its own edge,

    .. math:: \operatorname{tr}\operatorname{Var}[\hat g] \approx \tfrac12 \sum_{t<H} \mathbb E[\Psi_t^2], \qquad
              \mathbb E[\Psi_t^2] = \sigma^2 \sum_{k\in K_t} \gamma^{2k} + \mu^2 \Big(\sum_{k\in K_t}\gamma^k\Big)^2,

    with :math:`K_t = \{0,\dots,H-1\}` for the full return and :math:`K_t = \{t,\dots,H-1\}` for the reward-to-go.
    """
    mu, var = (noise + edge) / 2, (noise ** 2 + edge ** 2) / 4
    powers = [gamma ** k for k in range(horizon)]

    def second_moment(first: int) -> float:
        tail = powers[first:]
        return var * sum(p * p for p in tail) + mu ** 2 * sum(tail) ** 2

    full = 0.5 * horizon * second_moment(0)
    rtg = 0.5 * sum(second_moment(t) for t in range(horizon))
    return full, rtg


def gamma0_variances(horizon: int, noise: float = 1.0, edge: float = 0.1, batch_size: int = 1) -> tuple[float, float]:
    r"""Exact tr Cov[ĝ] of a batch of B episodes on ``coin_flips`` with γ = 0 and the uniform policy: ``(full, rtg)``.

    With γ = 0 the full return is :math:`R(\tau) = r_0` and :math:`\gamma^t G_t` is :math:`r_0` at t = 0 and 0
    after, so :math:`\hat g_{\text{full}} = r_0\sum_{t<H} s_t` and :math:`\hat g_{\text{rtg}} = r_0 s_0` (s_t the
    score). Every score has :math:`\lVert s_t\rVert^2 = \tfrac12` and mean zero given the past (which holds
    :math:`r_0` for t ≥ 1), so the cross terms vanish and, with
    :math:`\mathbb E[r_0^2] = (\nu^2 + \nu\varepsilon + \varepsilon^2)/2` and
    :math:`\lVert\nabla J\rVert^2 = \varepsilon^2/16` (only the first step counts),

    .. math:: \operatorname{tr}\operatorname{Cov}[\hat g_{\text{full}}] = \frac1B\Big(\frac H2\mathbb E[r_0^2]
              - \frac{\varepsilon^2}{16}\Big), \qquad
              \operatorname{tr}\operatorname{Cov}[\hat g_{\text{rtg}}] = \frac1B\Big(\frac12\mathbb E[r_0^2]
              - \frac{\varepsilon^2}{16}\Big).
    """
    second = (noise ** 2 + noise * edge + edge ** 2) / 2
    mean_sq = edge ** 2 / 16
    return (horizon * second / 2 - mean_sq) / batch_size, (second / 2 - mean_sq) / batch_size


def state_paid(pay: Sequence[float] = (0.5, 1.5), horizon: int = 3) -> TabularMDP:
    """Two states; leaving state s pays ``pay[s]`` whatever the action; action 1 moves to the other state, 0 stays."""
    P = torch.zeros(2, 2, 2, dtype=torch.float64)
    P[0, 0, 0] = P[0, 1, 1] = P[1, 0, 1] = P[1, 1, 0] = 1.0
    R = torch.as_tensor(pay, dtype=torch.float64).view(2, 1).expand(2, 2).contiguous()
    return TabularMDP(P, R, torch.tensor([1.0, 0.0], dtype=torch.float64), 1.0, horizon,
                      terminal=torch.zeros(2, dtype=torch.bool), name=f"state_paid(H={horizon})")


def variance_ratio(samples_full: torch.Tensor, samples_rtg: torch.Tensor) -> float:
    r""":math:`\operatorname{tr}\operatorname{Var}[\hat g_{\text{full}}] / \operatorname{tr}\operatorname{Var}[\hat g_{\text{rtg}}]`
    from two tables of batch estimates, each shaped (n_batches, ...), with the unbiased (n − 1) variance."""
    return summarize(samples_full, samples_full.mean(0)).variance / summarize(samples_rtg, samples_rtg.mean(0)).variance


def colleague_rtg_weights(rewards: torch.Tensor, gamma: float, dones: torch.Tensor) -> torch.Tensor:
    r"""A colleague's reward-to-go weights, meant to be :math:`\Psi_t = \gamma^t G_t`. It has one silent bug."""
    G = torch.zeros_like(rewards)
    later = torch.zeros_like(rewards[..., 0])            # what the episode pays after step t
    for t in reversed(range(rewards.shape[-1])):
        later = torch.where(dones[..., t], torch.zeros_like(later), later)   # nothing after an episode's last step
        G[..., t] = later                                # "an action is credited with what comes after it"
        later = rewards[..., t] + gamma * later
    return G * discount_factors(dones, gamma, rewards.dtype)


def area_under_curve(hist, budget: int, window: int = 20, points: int = 100) -> float:
    """Mean over env steps 0..budget of a run's learning curve (the 20-episode moving mean): how fast it learned."""
    grid = np.linspace(budget / points, budget, points)
    return float(np.nanmean(smoothed_curve(hist, window=window, grid=grid)[1]))


@dataclass
class Paired:
    """Two methods run with the same seeds: each seed's score and the paired differences b − a."""

    a: list[float]
    b: list[float]

    @property
    def diffs(self) -> list[float]:
        return [y - x for x, y in zip(self.a, self.b)]

    def summary(self) -> tuple[float, float]:
        """(mean difference, its standard error over seeds)."""
        m, se = mean_se(torch.tensor(self.diffs, dtype=torch.float64))
        return float(m), float(se)


@dataclass
class Point:
    """One setting of a sweep: the measured rows of both estimators (and a prediction, if any)."""

    horizon: int
    gamma: float
    full: Row
    rtg: Row
    predicted: tuple[float, float] | None = None
    difference: VarianceDifference | None = None    # Var(full) − Var(rtg) on the same episodes, with its SE

    @property
    def ratio(self) -> float:
        """Var(full) / Var(reward-to-go)."""
        return self.full.variance / self.rtg.variance

    @property
    def ratio_se(self) -> float:
        """Standard error of the ratio by the delta method (treating the two variances as independent)."""
        return self.ratio * math.hypot(self.full.variance_se / self.full.variance, self.rtg.variance_se / self.rtg.variance)


def measure(mdp: TabularMDP, batch_size: int = 1, n_batches: int = 4000, seed: int = 0,
            logits: torch.Tensor | None = None) -> tuple[Row, Row, VarianceDifference]:
    """Rows (bias, variance, MSE with SEs) of the full-return and reward-to-go estimators on the same episodes,
    and the paired difference of their variances."""
    if logits is None:
        logits = torch.zeros(mdp.n_states, mdp.n_actions, dtype=torch.float64)
    exact = mdp.exact_gradient(logits)
    samples = [gradient_samples(mdp, logits, p, batch_size, n_batches, seed) for p in PSIS]
    full, rtg = (summarize(s, exact, p) for s, p in zip(samples, PSIS))
    return full, rtg, variance_difference(*samples)


def sweep(make_mdp: Callable[..., TabularMDP], horizons: Sequence[int] = (1,), gammas: Sequence[float] = (1.0,),
          n_batches: int = 4000, seed: int = 0, predict: bool | None = None) -> list[Point]:
    """Per-episode variance of both estimators for every (horizon, γ); ``make_mdp(horizon=, gamma=)``."""
    predict = (make_mdp is coin_flips) if predict is None else predict
    out = []
    for H in horizons:
        for g in gammas:
            full, rtg, diff = measure(make_mdp(horizon=H, gamma=g), 1, n_batches, seed)
            out.append(Point(H, g, full, rtg, coin_flips_prediction(H, g) if predict else None, diff))
    return out


HORIZONS = (1, 2, 3, 5, 10, 20, 40)
GAMMAS = (0.0, 0.5, 0.8, 0.9, 0.95, 0.99, 1.0)
GAMMA_HORIZON = 20
MDP_MAKERS = {"coin flips": coin_flips, "early rewards": early_rewards}


def compute(n_batches: int = 2500, seed: int = 0) -> dict[str, dict[str, list[Point]]]:
    """The figure's measurements: ``{"horizon"|"gamma": {mdp name: [Point, ...]}}`` (seeded, deterministic)."""
    return {"horizon": {name: sweep(mk, HORIZONS, (1.0,), n_batches, seed) for name, mk in MDP_MAKERS.items()},
            "gamma": {name: sweep(mk, (GAMMA_HORIZON,), GAMMAS, n_batches, seed) for name, mk in MDP_MAKERS.items()}}


def draw(data: dict[str, dict[str, list[Point]]]):
    """Variance ratio Var(full)/Var(reward-to-go) against the horizon (left) and against γ (right), ± 2 SE."""
    from ..plots import new_figure

    fig = new_figure(figsize=(10.5, 4.0))
    axes = fig.subplots(1, 2)
    for ax, key, attr in ((axes[0], "horizon", "horizon"), (axes[1], "gamma", "gamma")):
        for (name, pts), marker in zip(data[key].items(), "os"):
            xs = [getattr(p, attr) for p in pts]
            ax.errorbar(xs, [p.ratio for p in pts], yerr=[2 * p.ratio_se for p in pts], fmt=marker + "-", capsize=2,
                        label=f"measured, {name}")
            if pts[0].predicted is not None:
                ax.plot(xs, [p.predicted[0] / p.predicted[1] for p in pts], "k--", lw=1, label=f"prediction, {name}")
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.grid(alpha=0.3, which="both")
    ax1, ax2 = axes
    ax1.axhline(3.0, color="grey", lw=0.8, ls=":", label=r"$H\to\infty$ limit 3 (coin flips)")
    ax1.set(xscale="log", xlabel="horizon $H$ (steps)",
            ylabel=r"$\mathrm{tr\,Var}[\hat g_{R(\tau)}] \,/\, \mathrm{tr\,Var}[\hat g_{G_t}]$",
            title=r"Variance ratio against the horizon ($\gamma = 1$; bars $\pm$2 SE)")
    ax1.set_xticks(HORIZONS, [str(h) for h in HORIZONS])
    ax2.set(yscale="log", xlabel=r"discount $\gamma$",
            ylabel=r"$\mathrm{tr\,Var}[\hat g_{R(\tau)}] \,/\, \mathrm{tr\,Var}[\hat g_{\gamma^t G_t}]$",
            title=f"Variance ratio against $\\gamma$ (H = {GAMMA_HORIZON}; bars $\\pm$2 SE)")
    ax1.legend(fontsize=8)
    ax2.legend(fontsize=8)
    return fig


def make():
    """The key figure of notebook 02 (``figures/02_reward_to_go.png``)."""
    return draw(compute())


FIGURES = {"02_reward_to_go.png": make}
