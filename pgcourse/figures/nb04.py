r"""Notebook 04 (value functions and advantage): the measurements behind its claims, and its figures.

Every function here is seeded and deterministic. The notebook calls them, prints their numbers
and shows their figures; ``python -m pgcourse figures`` writes ``04_six_psi_forms.png`` (the key
figure: the variance of the six :math:`\Psi_t` forms), ``04_advantage_map.png`` and
``04_gae_lambda.png``.

The lesson's MDP is FrozenLake 4x4 (slippery) with a price on mistakes: falling into a hole
costs 1, reaching the goal pays 1, every step costs 0.02, γ = 0.95, H = 40. The policy is the
uniform one improved by three soft steps :math:`\theta \leftarrow \theta + A_0(s,\cdot)/\tau`.

A *critic* here is a table ``(H + 1, S)`` of values :math:`\hat V_t(s)` (row H is 0: no steps
left), the same shape as the exact ``V`` of :meth:`pgcourse.mdp.TabularMDP.values`, so the
exact V and a learned :math:`\hat V` go through the same code.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable, Sequence

import numpy as np
import torch

from .. import estimators as est
from ..device import torch_threads
from ..mdp import Episodes, TabularMDP, frozen_lake
from ..returns import n_step_advantage, reward_to_go
from ..variance import PSI_FORMS, Row, VarianceTable, compare, gradient_samples, summarize

GAMMA, HORIZON = 0.95, 40
GOAL, HOLE, STEP_COST = 1.0, -1.0, 0.02
TAU, IMPROVE_STEPS = 0.1, 3
ACTIONS = ("left", "down", "right", "up")      # FrozenLake's action order
CRITIC_EPISODES, CRITIC_SEED = 20, 1           # the learned critic of sections 3-5: 20 episodes of returns
BATCH_SIZE, N_BATCHES = 16, 1000               # each measurement: 1000 batch estimates of 16 episodes
LAMBDAS = tuple(round(0.05 * k, 2) for k in range(21))
N_STEPS = (1, 2, 3, 5, 10, HORIZON)
FORM_LABELS = {
    "full_return": r"$R(\tau)$",
    "reward_to_go": r"$G_t$",
    "reward_to_go_minus_value": r"$G_t - V(s_t)$",
    "q_value": r"$Q(s_t,a_t)$",
    "advantage": r"$A(s_t,a_t)$",
    "td_residual": r"$\delta_t$",
}


# ---- the MDP and the policy ----------------------------------------------------------------------------

@lru_cache(maxsize=1)
def _lesson() -> tuple[TabularMDP, torch.Tensor]:
    base = frozen_lake(horizon=HORIZON, gamma=GAMMA)
    live = ~base.terminal
    goal = base.terminal & (base.R_sas > 0).any(0).any(0)
    holes = base.terminal & ~goal
    R = base.R_sas.clone()
    R -= STEP_COST * live.double()[:, None, None]                              # every step costs
    R += HOLE * (live[:, None, None] & holes[None, None, :]).double()         # falling in costs 1
    mdp = TabularMDP(base.P, R, base.mu0, GAMMA, HORIZON, terminal=base.terminal,
                     name="FrozenLake 4x4 (goal +1, hole -1, step -0.02)", action_names=list(ACTIONS))
    logits = torch.zeros(mdp.n_states, mdp.n_actions, dtype=torch.float64)
    for _ in range(IMPROVE_STEPS):
        logits = logits + mdp.advantages(logits)[0] / TAU
    return mdp, logits


def lesson_mdp() -> tuple[TabularMDP, torch.Tensor]:
    """The MDP and the policy logits (S, A) the notebook measures (a fresh copy of the logits)."""
    mdp, logits = _lesson()
    return mdp, logits.clone()


def holes_and_goal(mdp: TabularMDP) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean (S,) masks of the lake's holes and its goal (both terminal)."""
    goal = mdp.terminal & (mdp.R_sas > 0).any(0).any(0)
    return mdp.terminal & ~goal, goal


def soft_improvement(mdp: TabularMDP, logits: torch.Tensor, tau: float = TAU) -> torch.Tensor:
    r"""One soft policy-improvement step :math:`\theta(s,a) \leftarrow \theta(s,a) + A_0(s,a)/\tau`."""
    return logits + mdp.advantages(logits)[0] / tau


# ---- critics: tables (H + 1, S) ----------------------------------------------------------------------

def fit_critic(mdp: TabularMDP, logits: torch.Tensor, n_episodes: int, seed: int = CRITIC_SEED) -> torch.Tensor:
    r"""A critic :math:`\hat V(s)` fitted by least squares on the returns of ``n_episodes`` sampled episodes.

    .. math:: \hat V = \arg\min_v \sum_i \sum_t \bigl(v(s^i_t) - G^i_t\bigr)^2 ,

    whose solution, with one parameter per state, is the mean reward-to-go of the visits to each
    state (0 for a state never visited). It does not see the time: rows 0..H-1 of the returned
    table are all :math:`\hat V`, row H is 0 (nothing is left after the last step).
    """
    ep = mdp.sample(logits, n_episodes, seed)
    G = reward_to_go(ep.rewards, mdp.gamma, ep.dones)
    s, g = ep.states[ep.mask], G[ep.mask]
    total = torch.zeros(mdp.n_states, dtype=g.dtype).index_add_(0, s, g)
    count = torch.zeros(mdp.n_states, dtype=g.dtype).index_add_(0, s, torch.ones_like(g))
    v = torch.where(count > 0, total / count.clamp_min(1), torch.zeros_like(total))
    table = v.expand(mdp.horizon + 1, -1).clone()
    table[-1] = 0.0
    return table


def time_blind_values(mdp: TabularMDP, logits: torch.Tensor) -> torch.Tensor:
    r"""The best time-blind critic, :math:`\bar V(s) = \sum_t d_t(s) V_t(s) / \sum_t d_t(s)`, as a table (H + 1, S).

    It is what :func:`fit_critic` converges to with infinitely many episodes (a least-squares fit
    over the visits), so its error is the floor of a critic that cannot see the clock.
    """
    V, _ = mdp.values(logits)
    d = mdp.state_visitation(logits)                                   # (H, S)
    v = (d * V[:-1]).sum(0) / d.sum(0).clamp_min(1e-300)
    table = v.expand(mdp.horizon + 1, -1).clone()
    table[-1] = 0.0
    return table


def critic_error(mdp: TabularMDP, logits: torch.Tensor, table: torch.Tensor) -> float:
    r"""Root-mean-square error over the visited (t, s):
    :math:`\sqrt{\sum_{t,s} d_t(s)\,(\hat V_t(s) - V_t(s))^2 / \sum_{t,s} d_t(s)}`."""
    V, _ = mdp.values(logits)
    d = mdp.state_visitation(logits)
    return math.sqrt(float((d * (table[:-1] - V[:-1]) ** 2).sum() / d.sum()))


def bellman_q(mdp: TabularMDP, table: torch.Tensor) -> torch.Tensor:
    r"""Action values from state values through one Bellman step, shaped (H, S, A):

    .. math:: Q_t(s,a) = \bar R(s,a) + \gamma \sum_{s'} P(s'\mid s,a)\, V_{t+1}(s') .
    """
    return mdp.R + mdp.gamma * torch.einsum("sap,tp->tsa", mdp.P, table[1:].to(mdp.P.dtype))


def step_values(table: torch.Tensor, ep: Episodes) -> tuple[torch.Tensor, torch.Tensor]:
    """:math:`V_t(s_t)` and :math:`V_{t+1}(s_{t+1})` (0 where the step terminated) at every step of ``ep``."""
    t = torch.arange(ep.states.shape[-1]).expand_as(ep.states)
    v = table[t, ep.states]
    v_next = torch.where(ep.terminated, torch.zeros_like(v), table[t + 1, ep.next_states])
    return v, v_next


PsiFn = Callable[[Episodes, TabularMDP, torch.Tensor], torch.Tensor]


def critic_psi(form: str, table: torch.Tensor, lam: float | None = None, n: int | None = None) -> PsiFn:
    r"""A :math:`\Psi_t` (with its :math:`\gamma^t`) built from the critic ``table``, for ``gradient_samples``.

    ``form``: ``"reward_to_go_minus_value"`` (:math:`G_t - \hat V`), ``"q_value"`` (:math:`\hat Q` by
    :func:`bellman_q`), ``"advantage"`` (:math:`\hat Q - \hat V`), ``"td_residual"``
    (:math:`\hat\delta_t`), ``"gae"`` (GAE(λ), needs ``lam``) or ``"n_step"`` (needs ``n``).
    """
    forms = ("reward_to_go_minus_value", "q_value", "advantage", "td_residual", "gae", "n_step")
    if form not in forms:
        raise ValueError(f"form must be one of {forms}, got {form!r}")

    def psi(ep: Episodes, mdp: TabularMDP, logits: torch.Tensor) -> torch.Tensor:
        g, r, dones = mdp.gamma, ep.rewards, ep.dones
        v, v_next = step_values(table, ep)
        if form == "reward_to_go_minus_value":
            return est.baseline_weights(r, v, g, dones)
        if form in ("q_value", "advantage"):
            t = torch.arange(ep.states.shape[-1]).expand_as(ep.states)
            q = bellman_q(mdp, table)[t, ep.states, ep.actions]
            return est.q_weights(q, g, dones) if form == "q_value" else est.advantage_weights(q - v, g, dones)
        if form == "td_residual":
            return est.td_residual_weights(r, v, v_next, ep.terminated, ep.truncated, g)
        if form == "gae":
            return est.gae_weights(r, v, v_next, ep.terminated, ep.truncated, g, lam)
        return est.advantage_weights(n_step_advantage(r, v, v_next, ep.terminated, ep.truncated, g, n), g, dones)
    return psi


@lru_cache(maxsize=4)
def lesson_critic(kind: str = "learned") -> torch.Tensor:
    """The notebook's critics: ``"exact"`` (V of the MDP), ``"learned"`` (fitted on 20 episodes)."""
    mdp, logits = _lesson()
    if kind == "exact":
        return mdp.values(logits)[0]
    if kind == "learned":
        return fit_critic(mdp, logits, CRITIC_EPISODES, CRITIC_SEED)
    raise ValueError(f"kind must be 'exact' or 'learned', got {kind!r}")


# ---- measurements ---------------------------------------------------------------------------------------

@lru_cache(maxsize=2)
@torch_threads(1)
def six_forms(batch_size: int = BATCH_SIZE, n_batches: int = 2 * N_BATCHES, seed: int = 0) -> VarianceTable:
    """The six Ψ forms of ``pgcourse.variance.PSI_FORMS`` with the exact V and Q, against the exact gradient."""
    mdp, logits = _lesson()
    return compare(mdp, logits, PSI_FORMS, batch_size, n_batches, seed)


CRITIC_FORMS = ("reward_to_go_minus_value", "q_value", "advantage", "td_residual")


@torch_threads(1)
def critic_forms(table: torch.Tensor, batch_size: int = BATCH_SIZE, n_batches: int = 2 * N_BATCHES,
                 seed: int = 0, title: str = "") -> VarianceTable:
    """The four critic-based Ψ forms built from ``table`` (exact or learned), same episodes for each."""
    mdp, logits = _lesson()
    exact = mdp.exact_gradient(logits)
    rows = [summarize(gradient_samples(mdp, logits, critic_psi(f, table), batch_size, n_batches, seed), exact, f)
            for f in CRITIC_FORMS]
    return VarianceTable(rows, title)


@lru_cache(maxsize=1)
def learned_critic_forms() -> VarianceTable:
    """:func:`critic_forms` with the learned critic of 20 episodes, on the episodes of :func:`six_forms`."""
    return critic_forms(lesson_critic("learned"), title="the four critic-based forms with the learned critic "
                                                        f"({CRITIC_EPISODES} episodes)")


@dataclass
class Sweep:
    r"""Bias², variance and their sum for a family of :math:`\Psi` (one per ``xs``), at ``batch_size``.

    ``bias2`` is :math:`\lVert\bar g - \nabla J\rVert^2 - \operatorname{tr}\Sigma/n`, unbiased for the
    squared bias (so it can dip below 0 by noise). The variance of a mean of B independent episodes
    falls as 1/B, so :meth:`at` rescales it to any batch size.
    """

    label: str
    xs: list
    rows: list[Row]
    batch_size: int
    n_batches: int
    bias2: np.ndarray = field(init=False)
    bias2_se: np.ndarray = field(init=False)
    variance: np.ndarray = field(init=False)
    variance_se: np.ndarray = field(init=False)

    def __post_init__(self):
        n = self.n_batches
        self.variance = np.array([r.variance for r in self.rows])
        self.variance_se = np.array([r.variance_se for r in self.rows])
        self.bias2 = np.array([r.bias ** 2 for r in self.rows]) - self.variance / n
        self.bias2_se = np.array([2 * r.bias * r.bias_se for r in self.rows])

    def at(self, batch_size: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(bias², variance, bias² + variance) of the estimate from ``batch_size`` episodes."""
        var = self.variance * self.batch_size / batch_size
        return self.bias2, var, self.bias2 + var

    def best(self, batch_size: float) -> tuple[float, float]:
        """The x with the smallest bias² + variance at ``batch_size``, and that sum."""
        total = self.at(batch_size)[2]
        k = int(np.argmin(total))
        return self.xs[k], float(total[k])


@lru_cache(maxsize=4)
@torch_threads(1)
def lambda_sweep(critic: str = "learned", batch_size: int = BATCH_SIZE, n_batches: int = 600,
                 seed: int = 0) -> Sweep:
    r""":math:`\Psi_t = \gamma^t \hat A^{\text{GAE}(\gamma,\lambda)}_t` from the ``critic`` for every λ of ``LAMBDAS``.

    The same seed, so the same episodes, for every λ: the curves differ only through λ.
    """
    mdp, logits = _lesson()
    table, exact = lesson_critic(critic), mdp.exact_gradient(logits)
    rows = [summarize(gradient_samples(mdp, logits, critic_psi("gae", table, lam=lam), batch_size, n_batches, seed),
                      exact, f"GAE({lam})") for lam in LAMBDAS]
    return Sweep(f"GAE(λ), {critic} critic", list(LAMBDAS), rows, batch_size, n_batches)


@lru_cache(maxsize=4)
@torch_threads(1)
def n_step_sweep(critic: str = "learned", batch_size: int = BATCH_SIZE, n_batches: int = N_BATCHES,
                 seed: int = 0) -> Sweep:
    r""":math:`\Psi_t = \gamma^t \hat A^{(n)}_t` for every n of ``N_STEPS``; same episodes for each."""
    mdp, logits = _lesson()
    table, exact = lesson_critic(critic), mdp.exact_gradient(logits)
    rows = [summarize(gradient_samples(mdp, logits, critic_psi("n_step", table, n=n), batch_size, n_batches, seed),
                      exact, f"{n}-step") for n in N_STEPS]
    return Sweep(f"n-step, {critic} critic", list(N_STEPS), rows, batch_size, n_batches)


@dataclass
class CriticScan:
    """Error of the learned critic against the exact V, by the number of episodes it was fitted on."""

    episodes: list[int]
    errors: np.ndarray         # (len(episodes), n_seeds) RMS errors
    floor: float               # the best time-blind critic's error


@torch_threads(1)
def critic_error_scan(episodes: Sequence[int] = (5, 10, 20, 50, 100, 200, 500, 1000, 2000),
                      seeds: Sequence[int] = tuple(range(1, 11))) -> CriticScan:
    """RMS error of :func:`fit_critic` against the exact :math:`V_t(s)` for several data sizes and seeds."""
    mdp, logits = _lesson()
    errors = np.array([[critic_error(mdp, logits, fit_critic(mdp, logits, n, s)) for s in seeds] for n in episodes])
    return CriticScan(list(episodes), errors, critic_error(mdp, logits, time_blind_values(mdp, logits)))


@dataclass
class BiasScan:
    r"""Bias of :math:`\hat g` against the size of the critic's error,
    :math:`\hat V_\varepsilon = V + \varepsilon(\hat V - V)`."""

    scales: list[float]
    rmse: list[float]                      # the critic's RMS error at each scale
    bias: dict[str, np.ndarray]            # label -> bias norm at each scale
    bias_se: dict[str, np.ndarray]


BIAS_FORMS = {"TD residual (λ = 0)": 0.0, "GAE(λ = 0.5)": 0.5, "GAE(λ = 0.9)": 0.9,
              r"$G_t - \hat V(s_t)$ (λ = 1)": 1.0}


@torch_threads(1)
def bias_scan(scales: Sequence[float] = (0.0, 0.5, 1.0, 1.5, 2.0), batch_size: int = BATCH_SIZE,
              n_batches: int = N_BATCHES // 2, seed: int = 0) -> BiasScan:
    """The bias of GAE(λ) for the forms of ``BIAS_FORMS`` as the critic's error grows (same episodes for all)."""
    mdp, logits = _lesson()
    exact_v, learned = lesson_critic("exact"), lesson_critic("learned")
    g = mdp.exact_gradient(logits)
    bias = {k: np.zeros(len(scales)) for k in BIAS_FORMS}
    bias_se = {k: np.zeros(len(scales)) for k in BIAS_FORMS}
    rmse = []
    for i, eps in enumerate(scales):
        table = exact_v + eps * (learned - exact_v)
        rmse.append(critic_error(mdp, logits, table))
        for label, lam in BIAS_FORMS.items():
            x = gradient_samples(mdp, logits, critic_psi("gae", table, lam=lam), batch_size, n_batches, seed)
            row = summarize(x, g, label)
            bias[label][i], bias_se[label][i] = row.bias, row.bias_se
    return BiasScan(list(scales), rmse, bias, bias_se)


# ---- figures --------------------------------------------------------------------------------------------

def _figure(*args, **kwargs):
    from matplotlib.figure import Figure
    kwargs.setdefault("layout", "constrained")
    return Figure(*args, **kwargs)


_ARROWS = {0: (-1, 0), 1: (0, 1), 2: (1, 0), 3: (0, -1)}   # left, down, right, up in image coordinates


def advantage_map(mdp: TabularMDP, logits: torch.Tensor, t: int = 0, fig=None):
    r"""The lake: each cell coloured by :math:`V_t(s)`, an arrow per action, green where
    :math:`A_t(s,a) > 0`, red where it is negative.

    Arrow length grows with :math:`|A_t(s,a)|` (from a minimum, so that every action shows); the
    number in a cell is :math:`V_t(s)`.
    """
    from matplotlib.colors import TwoSlopeNorm
    from matplotlib.patches import Rectangle
    V, Q = mdp.values(logits)
    A = (Q - V[:-1, :, None])[t]
    v = V[t]
    side = int(round(math.sqrt(mdp.n_states)))
    holes, goal = holes_and_goal(mdp)
    fig = fig or _figure(figsize=(5.6, 5.0))
    ax = fig.add_subplot()
    grid = v.reshape(side, side).numpy().copy()
    grid[holes.reshape(side, side).numpy() | goal.reshape(side, side).numpy()] = np.nan
    norm = TwoSlopeNorm(vcenter=0.0, vmin=min(-1e-3, float(np.nanmin(grid))), vmax=max(1e-3, float(np.nanmax(grid))))
    im = ax.imshow(grid, cmap="coolwarm_r", norm=norm)
    scale = 0.30 / float(A[~mdp.terminal].abs().max())
    arrows = []                                                   # x, y, dx, dy, positive
    for s in range(mdp.n_states):
        r, c = divmod(s, side)
        if holes[s] or goal[s]:
            ax.add_patch(Rectangle((c - 0.5, r - 0.5), 1, 1, color="0.85" if holes[s] else "gold", zorder=0))
            ax.text(c, r, "hole" if holes[s] else "GOAL", ha="center", va="center", fontsize=9, weight="bold")
            continue
        ax.text(c, r + 0.38, f"{float(v[s]):.2f}", ha="center", va="center", fontsize=7)
        for a, (dx, dy) in _ARROWS.items():
            length = 0.12 + float(A[s, a].abs()) * scale
            arrows.append((c, r, dx * length, dy * length, bool(A[s, a] > 0)))
    xs, ys, dxs, dys, pos = (np.array(col) for col in zip(*arrows))
    for sel, color in ((pos, "tab:green"), (~pos, "tab:red")):
        ax.quiver(xs[sel], ys[sel], dxs[sel], dys[sel], color=color, angles="xy", scale_units="xy", scale=1,
                  width=0.012, headwidth=3.5, headlength=3.5, headaxislength=3.2)
    ax.set_xticks(range(side))
    ax.set_yticks(range(side))
    ax.set_xlabel("column")
    ax.set_ylabel("row")
    ax.set_title(f"$V_{{{t}}}(s)$ (colour, number) and the sign of $A_{{{t}}}(s,a)$\n"
                 "(green arrow: better than the policy's average, red: worse)", fontsize=10)
    fig.colorbar(im, ax=ax, shrink=0.8, label=f"$V_{{{t}}}(s)$")
    return fig


def six_forms_figure(table: VarianceTable, critic: VarianceTable | None = None, fig=None):
    """Bar chart of the total variance of each Ψ (± 2 SE), log scale; the bias in SE units printed on each bar."""
    fig = fig or _figure(figsize=(8.0, 4.2))
    ax = fig.add_subplot()
    rows = table.rows
    x = np.arange(len(rows))
    width = 0.38 if critic is not None else 0.6
    var = np.array([r.variance for r in rows])
    se = np.array([r.variance_se for r in rows])
    bars = ax.bar(x - (width / 2 if critic else 0), var, width, yerr=2 * se, capsize=3, color="tab:blue",
                  label="exact V, Q: variance ± 2 SE")
    for b, r in zip(bars, rows):
        ax.annotate(f"{r.bias / r.bias_se:.1f}", (b.get_x() + b.get_width() / 2, b.get_height()),
                    xytext=(0, 9), textcoords="offset points", ha="center", fontsize=8)
    if critic is not None:
        pos = {r.psi: i for i, r in enumerate(rows)}
        for r in critic.rows:
            i = pos[r.psi]
            b = ax.bar(i + width / 2, r.variance, width, yerr=2 * r.variance_se, capsize=3, color="tab:orange",
                       label="learned critic" if r is critic.rows[0] else None)[0]
            ax.annotate(f"{r.bias / r.bias_se:.1f}", (b.get_x() + b.get_width() / 2, b.get_height()),
                        xytext=(0, 9), textcoords="offset points", ha="center", fontsize=8,
                        color="tab:red" if r.bias / r.bias_se > 4 else "k")
    ax.set_yscale("log")
    ax.set_xticks(x, [FORM_LABELS.get(r.psi, r.psi) for r in rows])
    ax.set_xlabel(r"weight $\Psi_t$ (each times $\gamma^t$)")
    ax.set_ylabel(r"total variance tr Cov$(\hat g)$, batch of 16")
    worst = max(r.bias / r.bias_se for r in rows)
    ax.set_title(f"Six forms of the policy gradient on the lake (number on a bar: bias in standard errors)\n"
                 f"exact V, Q: every bias ≤ {worst:.1f} SE; variances {var.min():.2g} to {var.max():.2g}",
                 fontsize=10)
    ax.set_ylim(top=ax.get_ylim()[1] * 3)
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    return fig


def critic_error_figure(scan: CriticScan, fig=None):
    """RMS error of the learned critic against the number of episodes, with the time-blind floor."""
    fig = fig or _figure(figsize=(6.4, 3.6))
    ax = fig.add_subplot()
    n = np.array(scan.episodes)
    mean = scan.errors.mean(1)
    ax.fill_between(n, scan.errors.min(1), scan.errors.max(1), alpha=0.2,
                    label=f"min-max over {scan.errors.shape[1]} seeds")
    ax.plot(n, mean, "o-", label="mean RMS error")
    ax.axhline(scan.floor, color="k", ls="--", label=f"floor: best time-blind critic, {scan.floor:.3f}")
    ax.set_xscale("log")
    ax.set_xlabel("episodes the critic was fitted on")
    ax.set_ylabel(r"RMS error of $\hat V$ against $V_t(s)$")
    ax.set_title("A critic fitted on returns: noise falls with data, a time-blind table keeps a floor", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def bias_figure(scan: BiasScan, fig=None):
    """Bias norm of ĝ against the critic's RMS error, one line per λ, and the noise level of that norm."""
    fig = fig or _figure(figsize=(6.8, 4.0))
    ax = fig.add_subplot()
    x = np.array(scan.rmse)
    for label in scan.bias:
        ax.plot(x, scan.bias[label], "o-", label=label)
    last = list(scan.bias)[-1]
    ax.plot(x, scan.bias_se[last], "k:", lw=1.2,
            label=r"noise level: $\sqrt{\mathrm{tr}\,\Sigma/n}$, what an unbiased $\hat g$ shows")
    ax.set_xlabel(r"RMS error of the critic $\hat V_\varepsilon = V + \varepsilon(\hat V - V)$")
    ax.set_ylabel(r"bias $\|\,\mathbb{E}\,\hat g - \nabla J\,\|$")
    ax.set_title("Where bias comes from: the critic's error, unless λ = 1", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def lambda_figure(sweep: Sweep, lam: float, batch_size: float, fig=None, n_step: Sweep | None = None):
    """Bias², variance and their sum against λ at ``batch_size``; the slider's λ marked, the minimum starred."""
    fig = fig or _figure(figsize=(7.4, 4.0))
    ax = fig.add_subplot()
    lams = np.array(sweep.xs)
    b2, var, tot = sweep.at(batch_size)
    ax.plot(lams, b2, "o-", ms=3, color="tab:red", label="bias²")
    ax.plot(lams, var, "o-", ms=3, color="tab:blue", label="variance")
    ax.plot(lams, tot, "o-", ms=3, color="k", label="bias² + variance (MSE)")
    k = int(np.argmin(np.abs(lams - lam)))
    best, best_val = sweep.best(batch_size)
    ax.axvline(lams[k], color="0.5", lw=1, ls="--")
    for y, c in ((b2[k], "tab:red"), (var[k], "tab:blue"), (tot[k], "k")):
        ax.plot([lams[k]], [y], "o", ms=8, mfc="none", mec=c, mew=2)
    ax.plot([best], [best_val], "*", ms=14, color="gold", mec="k", label=f"minimum: λ = {best:.2f}")
    ax.set_xlabel("λ")
    ax.set_ylabel(f"squared error of ĝ (batch of {batch_size:g})")
    ax.set_ylim(bottom=min(0.0, float(b2.min())) * 1.1, top=float(tot.max()) * 1.08)
    ax.set_title(f"{sweep.label}, batch of {batch_size:g} episodes\n"
                 f"λ = {lams[k]:.2f}: bias² = {b2[k]:.3g}, variance = {var[k]:.3g}, sum = {tot[k]:.3g}", fontsize=10)
    ax.legend(fontsize=8, loc="upper center")
    ax.grid(alpha=0.3)
    return fig


def make_advantage_map():
    mdp, logits = lesson_mdp()
    return advantage_map(mdp, logits)


def make_six_forms():
    """The key figure: the six forms with the exact V and Q, and the critic-based ones with the learned critic."""
    return six_forms_figure(six_forms(), learned_critic_forms())


def make_lambda(lam: float = 0.9, batch_size: int = 64):
    """Bias², variance and their sum against λ, learned critic, batch of 64 (the widget's default view)."""
    return lambda_figure(lambda_sweep("learned"), lam, batch_size)


FIGURES = {
    "04_six_psi_forms.png": make_six_forms,
    "04_advantage_map.png": make_advantage_map,
    "04_gae_lambda.png": make_lambda,
}
