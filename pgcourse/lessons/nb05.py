r"""Notebook 05 (PPO): the measurements behind its claims, and its figures.

**Stale samples** (:func:`stale_drift`): episodes are sampled once by :math:`\pi_\text{old}` and
reused while the policy moves to :math:`\pi_\theta`. Three estimates of :math:`\nabla J(\theta)` from
them, each :math:`\frac1B\sum_i\sum_t \nabla_\theta\log\pi_\theta(a_t\mid s_t)\,w_t\,\gamma^t G_t`:

* no correction, :math:`w_t = 1` (what reusing a batch for k plain policy-gradient steps does);
* the per-step ratio :math:`w_t = \rho_t = \pi_\theta(a_t\mid s_t)/\pi_\text{old}(a_t\mid s_t)` (PPO's surrogate);
* the trajectory ratio :math:`w_t = \rho(\tau) = \prod_u \rho_u`, unbiased since
  :math:`\mathbb E_{\tau\sim\pi_\text{old}}[\rho(\tau) f(\tau)] = \mathbb E_{\tau\sim\pi_\theta}[f(\tau)]`.

**Ratio variance** (:func:`ratio_variance`): on :func:`pgcourse.mdp.coin_flips` (the states do not
depend on the actions) with :math:`\pi_\text{old}` uniform and :math:`\pi_\text{new}(a_1) = p` in both
states, :math:`\rho(\tau)` has mean 1 and variance exactly :math:`(1+\chi^2)^H - 1` with
:math:`\chi^2 = \sum_a \pi_\text{new}(a)^2/\pi_\text{old}(a) - 1 = (2p-1)^2`.

**The clipped surrogate** (:func:`plot_clip_objective`): :math:`\min(\rho A, \operatorname{clip}(\rho, 1-\epsilon, 1+\epsilon)A)`
against ρ, for A > 0 and A < 0.

``python -m pgcourse figures`` writes ``05_ppo_clip.png`` and ``05_ppo_ratios.png``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import torch

from .. import estimators as est
from ..mdp import TabularMDP, coin_flips, delayed_reward
from ..policies import softmax_log_prob, softmax_score_sum
from ..device import torch_threads
from ..ppo import clipped_objective
from ..variance import Row, summarize

CORRECTIONS = ("none", "per_step", "trajectory")
LABELS = {"none": "no correction (stale)", "per_step": r"per-step ratio $\rho_t$ (PPO)",
          "trajectory": r"trajectory ratio $\rho(\tau)$"}
COLORS = {"none": "C3", "per_step": "C0", "trajectory": "C2"}


# ---- episodes from the old policy, re-scored under a new one ---------------------------------------

@dataclass
class OldEpisodes:
    """Episodes sampled once by :math:`\\pi_\\text{old}`, flattened to their real steps (batch after batch)."""

    mdp: TabularMDP
    theta_old: torch.Tensor
    batch_size: int
    n_batches: int
    states: torch.Tensor      # (n,) state of each real step
    actions: torch.Tensor     # (n,)
    weights: torch.Tensor     # (n,) γ^t G_t
    episode: torch.Tensor     # (n,) which episode the step belongs to
    group: torch.Tensor       # (n,) which batch the step belongs to
    old_logp: torch.Tensor    # (n,) log π_old(a_t|s_t)


def sample_old(mdp: TabularMDP, theta_old: torch.Tensor, batch_size: int = 16, n_batches: int = 1000,
               seed: int = 0) -> OldEpisodes:
    """Sample ``batch_size × n_batches`` episodes of :math:`\\pi_\\text{old}` (softmax of ``theta_old``)."""
    n = batch_size * n_batches
    ep = mdp.sample(theta_old, n, seed)
    m = ep.mask
    w = est.reward_to_go_weights(ep.rewards, mdp.gamma, ep.dones)  # γ^t G_t
    episode = torch.arange(n, device=m.device).unsqueeze(-1).expand_as(m)[m]
    s, a = ep.states[m], ep.actions[m]
    return OldEpisodes(mdp, theta_old, batch_size, n_batches, s, a, w[m], episode, episode // batch_size,
                       softmax_log_prob(theta_old, s, a))


def log_ratios(old: OldEpisodes, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-step :math:`\\log\\rho_t` (n,) and per-episode :math:`\\log\\rho(\\tau) = \\sum_t \\log\\rho_t` (episodes,)."""
    lr = softmax_log_prob(theta, old.states, old.actions) - old.old_logp
    per_episode = torch.zeros(old.batch_size * old.n_batches, dtype=lr.dtype, device=lr.device)
    return lr, per_episode.index_add_(0, old.episode, lr)


def estimates(old: OldEpisodes, theta: torch.Tensor, correction: str = "none") -> torch.Tensor:
    """``n_batches`` estimates of :math:`\\nabla J(\\theta)` (n_batches, S, A) from the old episodes."""
    if correction not in CORRECTIONS:
        raise ValueError(f"correction must be one of {CORRECTIONS}, got {correction!r}")
    w = old.weights
    if correction != "none":
        step, traj = log_ratios(old, theta)
        w = w * (step.exp() if correction == "per_step" else traj.exp()[old.episode])
    return softmax_score_sum(theta, old.states, old.actions, w, old.group, old.n_batches) / old.batch_size


def mean_kl(mdp: TabularMDP, theta_old: torch.Tensor, theta: torch.Tensor) -> float:
    r""":math:`\mathrm{KL}(\pi_\text{old}(\cdot|s)\,\|\,\pi_\theta(\cdot|s))` averaged over the states that :math:`\pi_\text{old}` visits."""
    d = mdp.state_visitation(theta_old).sum(0)
    lp_old, lp = torch.log_softmax(theta_old, -1), torch.log_softmax(theta, -1)
    kl = (lp_old.exp() * (lp_old - lp)).sum(-1)
    return float((d * kl).sum() / d.sum())


# ---- reusing a batch for k steps ------------------------------------------------------------------

def lesson_mdp() -> tuple[TabularMDP, torch.Tensor]:
    """The corridor of notebook 03 (``delayed_reward(6)``, +1 at the end) and a uniform old policy."""
    mdp = delayed_reward(length=6)
    return mdp, torch.zeros(mdp.n_states, mdp.n_actions, dtype=torch.float64)


@dataclass
class StaleDrift:
    """Along the path of k plain gradient steps on one reused batch: how far each estimate is from ∇J(θ_k)."""

    steps: list[int]
    kl: list[float]                 # KL(π_old ‖ π_k), averaged over the old policy's states
    J: list[float]                  # exact J(θ_k)
    grad_norm: list[float]          # ‖∇J(θ_k)‖
    cosine: list[float]             # cos(E[stale estimate], ∇J(θ_k))
    rows: dict[str, list[Row]] = field(default_factory=dict)   # per correction, per step: bias, variance, MSE

    def rel_bias(self, correction: str) -> list[float]:
        return [r.bias / g for r, g in zip(self.rows[correction], self.grad_norm)]

    def rel_bias_se(self, correction: str) -> list[float]:
        return [r.bias_se / g for r, g in zip(self.rows[correction], self.grad_norm)]

    def table(self) -> str:
        head = (f"{'k':>2} {'KL':>7} {'J':>6} {'cos':>6}  " +
                "  ".join(f"{c + ' bias/|g|':>22}" for c in CORRECTIONS) + "  " +
                "  ".join(f"{c + ' var':>14}" for c in CORRECTIONS))
        lines = [head, "-" * len(head)]
        for i, k in enumerate(self.steps):
            b = "  ".join(f"{self.rel_bias(c)[i]:>13.3f} ± {self.rel_bias_se(c)[i]:.3f}" for c in CORRECTIONS)
            v = "  ".join(f"{self.rows[c][i].variance:>14.4f}" for c in CORRECTIONS)
            lines.append(f"{k:>2} {self.kl[i]:>7.4f} {self.J[i]:>6.3f} {self.cosine[i]:>6.3f}  {b}  {v}")
        return "\n".join(lines)


@torch_threads(1)
def stale_drift(mdp: TabularMDP | None = None, theta_old: torch.Tensor | None = None, *, n_steps: int = 8,
                lr: float = 1.0, batch_size: int = 16, n_batches: int = 1000, seed: int = 0) -> StaleDrift:
    """Reuse the old episodes for ``n_steps`` plain gradient-ascent steps and measure each estimate at every step.

    The path is that of the *mean* uncorrected estimate over all ``n_batches`` (what a very large
    reused batch does), so that the drift shows apart from the noise; at each θ_k every correction's
    bias, variance and MSE over the batches of size ``batch_size`` are measured against the exact ∇J(θ_k).
    """
    if mdp is None:
        mdp, theta_old = lesson_mdp()
    old = sample_old(mdp, theta_old, batch_size, n_batches, seed)
    out = StaleDrift([], [], [], [], [], {c: [] for c in CORRECTIONS})
    theta = theta_old.clone()
    for k in range(n_steps + 1):
        exact = mdp.exact_gradient(theta)
        xs = {c: estimates(old, theta, c) for c in CORRECTIONS}
        for c in CORRECTIONS:
            out.rows[c].append(summarize(xs[c], exact, c))
        stale_mean = xs["none"].mean(0)
        out.steps.append(k)
        out.kl.append(mean_kl(mdp, theta_old, theta))
        out.J.append(float(mdp.expected_return(theta)))
        out.grad_norm.append(float(exact.norm()))
        out.cosine.append(float((stale_mean * exact).sum() / (stale_mean.norm() * exact.norm())))
        theta = theta + lr * stale_mean
    return out


def plot_stale_drift(d: StaleDrift, ax) -> None:
    """Relative bias ‖E[ĝ] − ∇J(θ_k)‖ / ‖∇J(θ_k)‖ of the three estimates against the number of reuse steps k."""
    for c in CORRECTIONS:
        y, se = d.rel_bias(c), d.rel_bias_se(c)
        ax.errorbar(d.steps, y, yerr=[2 * s for s in se], fmt="o-", color=COLORS[c], capsize=2, ms=4, label=LABELS[c])
    top = ax.secondary_xaxis("top", functions=(lambda k: k, lambda k: k))
    top.set_xticks(d.steps[::2], [f"{d.kl[i]:.3f}" for i in range(0, len(d.steps), 2)], fontsize=7)
    top.set_xlabel(r"KL($\pi_\mathrm{old}\,\|\,\pi_k$) per state", fontsize=8)
    ax.set_xlabel("gradient steps $k$ on the same batch")
    ax.set_ylabel(r"$\|\mathbb{E}[\hat g] - \nabla J(\theta_k)\| \,/\, \|\nabla J(\theta_k)\|$")
    ax.set_title("Reused samples: bias of the estimate (±2 SE)", fontsize=10)
    ax.legend(fontsize=8)


# ---- importance ratios: mean 1, variance (1 + χ²)^H − 1 -----------------------------------------------

@dataclass
class RatioVariance:
    """Measured mean and variance of ρ(τ) (and its effective sample size) against the exact variance."""

    horizons: list[int]
    probs: list[float]                     # π_new(a1)
    n_episodes: int
    kl: list[float]                        # per-step KL(π_old ‖ π_new)
    chi2: list[float]                      # per-step χ²
    mean: dict[int, list[float]]           # per horizon, per p
    mean_se: dict[int, list[float]]
    var: dict[int, list[float]]
    exact_var: dict[int, list[float]]
    ess: dict[int, list[float]]            # (Σρ)² / Σρ² / n: the fraction of the episodes that effectively count

    def table(self) -> str:
        lines = [f"{'H':>3} {'p':>5} {'KL/step':>8} {'mean of rho':>16} {'var measured':>13} {'var exact':>11} {'ESS/n':>7}"]
        for H in self.horizons:
            for i, p in enumerate(self.probs):
                lines.append(f"{H:>3} {p:>5.2f} {self.kl[i]:>8.4f} {self.mean[H][i]:>8.3f} ± {self.mean_se[H][i]:.3f} "
                             f"{self.var[H][i]:>13.4g} {self.exact_var[H][i]:>11.4g} {self.ess[H][i]:>7.3f}")
        return "\n".join(lines)


@torch_threads(1)
def ratio_variance(horizons: Sequence[int] = (5, 10, 20), probs: Sequence[float] = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8),
                   n_episodes: int = 20000, seed: int = 0) -> RatioVariance:
    """Sample coin-flip episodes from the uniform policy and weight them by ρ(τ) for π_new(a1) = p in both states."""
    out = RatioVariance(list(horizons), [float(p) for p in probs], n_episodes, [], [], {}, {}, {}, {}, {})
    for p in probs:
        out.kl.append(0.5 * math.log(0.5 / p) + 0.5 * math.log(0.5 / (1 - p)))
        out.chi2.append((2 * p - 1) ** 2)
    for H in horizons:
        mdp = coin_flips(horizon=H)
        old = sample_old(mdp, torch.zeros(2, 2, dtype=torch.float64), 1, n_episodes, seed + H)
        for key in ("mean", "mean_se", "var", "exact_var", "ess"):
            getattr(out, key)[H] = []
        for p, chi2 in zip(probs, out.chi2):
            theta = torch.tensor([[0.0, math.log(p / (1 - p))]] * 2, dtype=torch.float64)
            rho = log_ratios(old, theta)[1].exp()
            out.mean[H].append(float(rho.mean()))
            out.mean_se[H].append(float(rho.std() / math.sqrt(n_episodes)))
            out.var[H].append(float(rho.var()))
            out.exact_var[H].append((1 + chi2) ** H - 1)
            out.ess[H].append(float(rho.sum() ** 2 / (rho ** 2).sum() / n_episodes))
    return out


def plot_ratio_variance(rv: RatioVariance, ax) -> None:
    """Var ρ(τ) against the per-step KL, measured (markers) and exact (lines), one colour per horizon; log scale."""
    for j, H in enumerate(rv.horizons):
        ax.plot(rv.kl[1:], rv.exact_var[H][1:], "-", color=f"C{j}", lw=1.5, label=f"$H={H}$: exact $(1+\\chi^2)^H - 1$")
        ax.plot(rv.kl[1:], rv.var[H][1:], "o", color=f"C{j}", ms=5, label=f"$H={H}$: measured, {rv.n_episodes} episodes")
    ax.plot(rv.kl[1:], rv.chi2[1:], "k--", lw=1, label=r"one step: Var $\rho_t = \chi^2$")
    ax.set_yscale("log")
    ax.set_xlabel(r"KL($\pi_\mathrm{old}\,\|\,\pi_\mathrm{new}$) per step")
    ax.set_ylabel(r"Var$_{\pi_\mathrm{old}}[\rho(\tau)]$")
    ax.set_title("Trajectory importance ratios: mean 1, variance explodes", fontsize=10)
    ax.legend(fontsize=7, ncol=1, loc="upper left")


def ratios_figure(drift: StaleDrift | None = None, rv: RatioVariance | None = None):
    """Key figure: the bias of reused samples (left) and the variance of trajectory ratios (right)."""
    from ..plots import new_figure
    drift = stale_drift() if drift is None else drift
    rv = ratio_variance() if rv is None else rv
    fig = new_figure(figsize=(11, 4.2))
    a1, a2 = fig.subplots(1, 2)
    plot_stale_drift(drift, a1)
    plot_ratio_variance(rv, a2)
    return fig


# ---- the clipped surrogate -----------------------------------------------------------------------

def plot_clip_objective(axes, clip_eps: float = 0.2, advantage: float = 1.0, lo: float = 0.0, hi: float = 2.0) -> None:
    """Two panels (A > 0, A < 0): the clipped objective and the unclipped ρA against ρ; shaded where its gradient is 0.

    One legend, in the first panel (the second has the same entries in its own colour).
    """
    rho = torch.linspace(max(lo, 1e-3), hi, 121, dtype=torch.float64)
    for ax, A in zip(axes, (abs(advantage), -abs(advantage))):
        clipped = clipped_objective(rho, torch.tensor(A, dtype=rho.dtype), clip_eps)
        ax.plot(rho, rho * A, color="0.55", ls="--", lw=1.5, label=r"unclipped $\rho A$")
        ax.plot(rho, clipped, color="C0" if A > 0 else "C3", lw=2.5,
                label=r"$\min(\rho A,\ \mathrm{clip}(\rho, 1-\epsilon, 1+\epsilon)A)$")
        flat = (rho > 1 + clip_eps) if A > 0 else (rho < 1 - clip_eps)
        if bool(flat.any()):
            x = rho[flat]
            ax.axvspan(float(x.min()), float(x.max()), color="0.9", zorder=0, label="clipped: gradient 0")
        for x in (1 - clip_eps, 1 + clip_eps):
            ax.axvline(x, color="k", lw=0.8, ls=":")
        ax.axvline(1.0, color="k", lw=0.6)
        ax.set_xlabel(r"ratio $\rho = \pi_\theta(a|s) / \pi_{\theta_\mathrm{old}}(a|s)$")
        ax.set_ylabel("objective (to maximize)")
        ax.set_xlim(lo, hi)
        ax.set_xticks([x / 2 for x in range(int(lo * 2), int(hi * 2) + 1)])
        ax.set_title(f"$A = {A:+g}$, $\\epsilon = {clip_eps:g}$", fontsize=10)
        if ax is axes[0]:
            ax.legend(fontsize=7, loc="upper left")


def clip_figure(clip_eps: float = 0.2):
    """Key figure: PPO's clipped objective against the ratio, for A > 0 and A < 0."""
    from ..plots import new_figure
    fig = new_figure(figsize=(9, 3.6))
    plot_clip_objective(fig.subplots(1, 2), clip_eps)
    return fig


# ---- CartPole summaries -------------------------------------------------------------------------------

def plot_update_stats(hists: dict, key: str, ax, ylabel: str, log: bool = False) -> None:
    """One training statistic per update (``History.extra[key]``) against env steps, one line per run."""
    for i, (label, h) in enumerate(hists.items()):
        ax.plot(h.env_steps, h.extra[key], color=f"C{i}", lw=1.2, label=label)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("env steps")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)


FIGURES = {"05_ppo_clip.png": clip_figure, "05_ppo_ratios.png": ratios_figure}
