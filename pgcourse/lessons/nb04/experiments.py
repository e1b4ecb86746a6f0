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

from ... import estimators as est
from ...device import torch_threads
from ...mdp import Episodes, TabularMDP, frozen_lake
from ...returns import n_step_advantage, reward_to_go
from ...variance import PSI_FORMS, Row, VarianceTable, gradient_samples_shared, summarize

GAMMA, HORIZON = 0.95, 40
GOAL, HOLE, STEP_COST = 1.0, -1.0, 0.02
TAU, IMPROVE_STEPS = 0.1, 3
ACTIONS = ("left", "down", "right", "up")      # FrozenLake's action order
CRITIC_EPISODES, CRITIC_SEED = 20, 1           # the learned critic of sections 3-5: 20 episodes of returns
BATCH_SIZE, N_BATCHES = 16, 1000               # each measurement: 1000 batch estimates of 16 episodes
SIX_BATCHES = 2 * N_BATCHES                    # the six forms and the critic-based ones: 2000 batches
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
def six_forms_samples(batch_size: int = BATCH_SIZE, n_batches: int = SIX_BATCHES, seed: int = 0
                      ) -> dict[str, torch.Tensor]:
    """The batch estimates (n_batches, S, A) of the six Ψ forms with the exact V and Q, all on the same episodes."""
    mdp, logits = _lesson()
    return dict(zip(PSI_FORMS, gradient_samples_shared(mdp, logits, PSI_FORMS, batch_size, n_batches, seed)))


def six_forms(batch_size: int = BATCH_SIZE, n_batches: int = SIX_BATCHES, seed: int = 0) -> VarianceTable:
    """The six Ψ forms of ``pgcourse.variance.PSI_FORMS`` with the exact V and Q, against the exact gradient."""
    mdp, logits = _lesson()
    exact = mdp.exact_gradient(logits)
    rows = [summarize(x, exact, p) for p, x in six_forms_samples(batch_size, n_batches, seed).items()]
    return VarianceTable(rows, f"{mdp.name}: batch size {batch_size}, {n_batches} batches, gamma={mdp.gamma}, "
                               f"horizon={mdp.horizon}")


CRITIC_FORMS = ("reward_to_go_minus_value", "q_value", "advantage", "td_residual")


@torch_threads(1)
def critic_samples(table: torch.Tensor, batch_size: int = BATCH_SIZE, n_batches: int = SIX_BATCHES,
                   seed: int = 0) -> dict[str, torch.Tensor]:
    """The batch estimates of the four critic-based Ψ forms built from ``table`` (exact or learned), same episodes."""
    mdp, logits = _lesson()
    psis = [critic_psi(f, table) for f in CRITIC_FORMS]
    return dict(zip(CRITIC_FORMS, gradient_samples_shared(mdp, logits, psis, batch_size, n_batches, seed)))


def critic_forms(table: torch.Tensor, batch_size: int = BATCH_SIZE, n_batches: int = SIX_BATCHES,
                 seed: int = 0, title: str = "") -> VarianceTable:
    """The four critic-based Ψ forms built from ``table`` (exact or learned), same episodes for each."""
    mdp, logits = _lesson()
    exact = mdp.exact_gradient(logits)
    return VarianceTable([summarize(x, exact, f) for f, x in critic_samples(table, batch_size, n_batches, seed).items()],
                         title)


@lru_cache(maxsize=1)
def learned_critic_samples() -> dict[str, torch.Tensor]:
    """:func:`critic_samples` of the learned critic of 20 episodes, on the episodes of :func:`six_forms`."""
    return critic_samples(lesson_critic("learned"))


def learned_critic_forms() -> VarianceTable:
    """:func:`critic_forms` with the learned critic of 20 episodes, on the episodes of :func:`six_forms`."""
    mdp, logits = _lesson()
    exact = mdp.exact_gradient(logits)
    return VarianceTable([summarize(x, exact, f) for f, x in learned_critic_samples().items()],
                         f"the four critic-based forms with the learned critic ({CRITIC_EPISODES} episodes)")


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


def _sweep(label: str, critic: str, xs: Sequence, psis: list, names: list[str], batch_size: int, n_batches: int,
           seed: int) -> Sweep:
    mdp, logits = _lesson()
    exact = mdp.exact_gradient(logits)
    samples = gradient_samples_shared(mdp, logits, psis, batch_size, n_batches, seed)
    return Sweep(f"{label}, {critic} critic", list(xs), [summarize(x, exact, k) for x, k in zip(samples, names)],
                 batch_size, n_batches)


@lru_cache(maxsize=4)
@torch_threads(1)
def lambda_sweep(critic: str = "learned", batch_size: int = BATCH_SIZE, n_batches: int = N_BATCHES,
                 seed: int = 0) -> Sweep:
    r""":math:`\Psi_t = \gamma^t \hat A^{\text{GAE}(\gamma,\lambda)}_t` from the ``critic`` for every λ of ``LAMBDAS``.

    The same episodes for every λ (sampled once), and the same as :func:`n_step_sweep`'s at the same
    arguments: the curves differ only through λ, and λ = 0 is the 1-step row, λ = 1 the H-step row.
    """
    table = lesson_critic(critic)
    return _sweep("GAE(λ)", critic, LAMBDAS, [critic_psi("gae", table, lam=lam) for lam in LAMBDAS],
                  [f"GAE({lam})" for lam in LAMBDAS], batch_size, n_batches, seed)


@lru_cache(maxsize=4)
@torch_threads(1)
def n_step_sweep(critic: str = "learned", batch_size: int = BATCH_SIZE, n_batches: int = N_BATCHES,
                 seed: int = 0) -> Sweep:
    r""":math:`\Psi_t = \gamma^t \hat A^{(n)}_t` for every n of ``N_STEPS``; the episodes of :func:`lambda_sweep`."""
    table = lesson_critic(critic)
    return _sweep("n-step", critic, N_STEPS, [critic_psi("n_step", table, n=n) for n in N_STEPS],
                  [f"{n}-step" for n in N_STEPS], batch_size, n_batches, seed)


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
    bias: dict[str, np.ndarray]            # label -> ‖ḡ − ∇J‖ at each scale (about the noise with no bias, not 0)
    bias_se: dict[str, np.ndarray]         # label -> the noise √(tr Σ / n): what ‖ḡ − ∇J‖ is with no bias

    def corrected(self, label: str) -> np.ndarray:
        r"""The noise-corrected bias :math:`\sqrt{\max(0, \lVert\bar g - \nabla J\rVert^2 - \operatorname{tr}\Sigma/n)}`."""
        return np.sqrt(np.maximum(0.0, self.bias[label] ** 2 - self.bias_se[label] ** 2))


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
        xs = gradient_samples_shared(mdp, logits, [critic_psi("gae", table, lam=lam) for lam in BIAS_FORMS.values()],
                                     batch_size, n_batches, seed)
        for label, x in zip(BIAS_FORMS, xs):
            row = summarize(x, g, label)
            bias[label][i], bias_se[label][i] = row.bias, row.bias_se
    return BiasScan(list(scales), rmse, bias, bias_se)
