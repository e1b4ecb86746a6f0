r"""Notebook 03 (baselines): its MDPs and the measurements behind its claims.

Every function here is seeded and deterministic. The lesson's MDP is
:func:`pgcourse.mdp.delayed_reward` (a corridor of 6 cells, +1 at the end) with a policy that goes
right with probability :math:`e/(1+e)\approx 0.73` in every cell: successful episodes are short, so
the squared score norm and the return are correlated and the optimal constant baseline differs
visibly from the mean return. A one-step softmax bandit gives the optimal constant in closed form.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from ... import estimators as est
from ...baselines import batch_mean_baseline, ema, optimal_constant_baseline, state_value_baseline
from ...device import torch_threads
from ...mdp import Episodes, TabularMDP, delayed_reward
from ...policies import softmax_score_sum
from ...returns import discounted_return
from ...stats import mean_se
from ...validate import float_tensor
from ...variance import (VarianceDifference, exact_step_values, gradient_samples, gradient_samples_shared, summarize,
                         variance_difference)

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


def projection(samples: torch.Tensor, exact: torch.Tensor) -> tuple[float, float]:
    r"""Mean and SE of :math:`\langle\hat g_i, \nabla J\rangle / \lVert\nabla J\rVert^2` over the batches (1 if unbiased)."""
    g = exact.reshape(-1).double()
    p = samples.reshape(samples.shape[0], -1).double() @ g / (g @ g)
    m, se = mean_se(p)
    return float(m), float(se)


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
    bias: list[float]          # ‖ḡ − ∇J‖: about bias_se under no bias, not 0
    bias_se: list[float]       # √(tr Σ / n), what ‖ḡ − ∇J‖ is worth with no bias
    theory: PerEpisode
    grad_norm: float

    @property
    def grid_min(self) -> float:
        """The grid point with the smallest measured variance."""
        return self.grid[min(range(len(self.grid)), key=self.variance.__getitem__)]


@torch_threads(1)   # small tensors: one thread avoids OpenMP barriers
def constant_baseline_scan(mdp: TabularMDP | None = None, logits: torch.Tensor | None = None, *,
                           grid: Sequence[float] = GRID, batch_size: int = 16, n_batches: int = 2000,
                           seed: int = 0, n_episodes: int = 20000) -> ConstantScan:
    """Measure ĝ with Ψ = R − b for each b in ``grid`` (the same episodes for every b, sampled once)."""
    if mdp is None:
        mdp, logits = lesson_mdp()
    exact = mdp.exact_gradient(logits)
    xs = gradient_samples_shared(mdp, logits, [full_return_minus(b) for b in grid], batch_size, n_batches, seed)
    rows = [summarize(x, exact) for x in xs]
    return ConstantScan(batch_size, n_batches, [float(b) for b in grid], [r.variance for r in rows],
                        [r.variance_se for r in rows], [r.bias for r in rows], [r.bias_se for r in rows],
                        per_episode(mdp, logits, n_episodes, seed + 1), float(exact.norm()))


# ---- a one-step softmax bandit: b* in closed form (the predict exercise) ----------------------------

def softmax_bandit(rewards) -> TabularMDP:
    """One state, K actions, one step: action a pays ``rewards[a]`` (deterministic), then the episode ends."""
    r = float_tensor(rewards, "rewards").to(torch.float64).reshape(-1)
    K = r.shape[0]
    return TabularMDP(torch.ones(1, K, 1, dtype=torch.float64), r.reshape(1, K), torch.ones(1, dtype=torch.float64),
                      gamma=1.0, horizon=1, name=f"bandit{K}")


def _bandit_terms(logits, rewards) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """π, the squared score norms ‖e_a − π‖² and the rewards, each (K,)."""
    theta = float_tensor(logits, "logits").to(torch.float64).reshape(-1)
    r = float_tensor(rewards, "rewards").to(torch.float64).reshape(-1)
    if theta.shape != r.shape:
        raise ValueError(f"logits {tuple(theta.shape)} and rewards {tuple(r.shape)} must have one entry per action")
    pi = torch.softmax(theta, -1)
    sq = ((torch.eye(len(pi), dtype=pi.dtype) - pi) ** 2).sum(-1)
    return pi, sq, r


def bandit_b_star(logits, rewards) -> float:
    r"""The exact optimal constant baseline of a softmax bandit:
    :math:`b^* = \sum_a \pi_a \lVert e_a - \pi\rVert^2 r_a \,/\, \sum_a \pi_a \lVert e_a - \pi\rVert^2`."""
    pi, sq, r = _bandit_terms(logits, rewards)
    w = pi * sq
    return float((w * r).sum() / w.sum())


def bandit_variance(logits, rewards, b: float) -> float:
    r"""Exact tr Cov of the one-episode estimate :math:`(e_a - \pi)(r_a - b)`:
    :math:`\sum_a \pi_a\lVert e_a - \pi\rVert^2 (r_a - b)^2 - \lVert\nabla J\rVert^2`."""
    pi, sq, r = _bandit_terms(logits, rewards)
    grad = (pi[:, None] * (torch.eye(len(pi), dtype=pi.dtype) - pi) * r[:, None]).sum(0)
    return float((pi * sq * (r - b) ** 2).sum() - grad @ grad)


@dataclass
class BanditCheck:
    """A constant baseline's variance on a bandit, measured at several b (on the same episodes) and exact."""

    b: dict[str, float]
    exact: dict[str, float]
    samples: dict[str, torch.Tensor]

    def measured(self, name: str) -> tuple[float, float]:
        """The measured total variance at b[name] and its SE."""
        r = summarize(self.samples[name], torch.zeros_like(self.samples[name][0]))
        return r.variance, r.variance_se

    def z_exact(self, name: str) -> float:
        """(measured − exact) variance in SE: ≈ N(0, 1) when the closed form is right."""
        v, se = self.measured(name)
        return (v - self.exact[name]) / se

    def difference(self, a: str, b: str) -> VarianceDifference:
        """Variance at b[a] minus at b[b], paired over the same episodes."""
        return variance_difference(self.samples[a], self.samples[b])


@torch_threads(1)
def bandit_check(logits, rewards, bs: dict[str, float], n_episodes: int = 20000, seed: int = 0) -> BanditCheck:
    """Measure the one-episode estimate's variance at each constant in ``bs`` (name → b), on the same episodes."""
    theta = float_tensor(logits, "logits").to(torch.float64).reshape(1, -1)
    mdp = softmax_bandit(rewards)
    xs = gradient_samples_shared(mdp, theta, [full_return_minus(float(b)) for b in bs.values()], 1, n_episodes, seed)
    return BanditCheck(dict(bs), {k: bandit_variance(logits, rewards, b) for k, b in bs.items()}, dict(zip(bs, xs)))


# ---- the batch mean shrinks the gradient (the measure exercise) ------------------------------------

@torch_threads(1)
def measure_shrinkage(mdp: TabularMDP, logits: torch.Tensor, batch_size: int, n_batches: int, seed: int = 0, *,
                      leave_one_out: bool = False) -> tuple[float, float]:
    r"""Mean and SE of the projection :math:`\langle\hat g_i, \nabla J\rangle/\lVert\nabla J\rVert^2` of the batch
    estimates with :math:`\Psi = R_i - \text{batch mean}` (or the leave-one-out mean): :math:`1 - 1/N` (or 1)."""
    x = gradient_samples(mdp, logits, full_return_minus_batch_mean(leave_one_out), batch_size, n_batches, seed)
    return projection(x, mdp.exact_gradient(logits))


@dataclass
class Shrink:
    r"""The projection :math:`\langle\bar g, \nabla J\rangle/\lVert \nabla J\rVert^2` of each baseline, per batch size N."""

    sizes: list[int]
    factor: dict[str, list[float]]
    factor_se: dict[str, list[float]]

    def z(self, name: str, target: Callable[[int], float]) -> list[float]:
        """(factor − target(N)) / SE at each N: ≈ N(0, 1) where target is the truth."""
        return [(f - target(N)) / se for N, f, se in zip(self.sizes, self.factor[name], self.factor_se[name])]


@torch_threads(1)
def batch_mean_shrink(mdp: TabularMDP | None = None, logits: torch.Tensor | None = None, *,
                      sizes: Sequence[int] = (2, 3, 4, 6, 8), episodes: int = 32000, seed: int = 0,
                      measure=measure_shrinkage) -> Shrink:
    """For each N, the projection with the batch mean (``measure(mdp, logits, N, episodes // N, seed)``) and leave-one-out."""
    if mdp is None:
        mdp, logits = lesson_mdp()
    out = {"batch mean": [], "leave-one-out": []}
    for N in sizes:
        out["batch mean"].append(tuple(measure(mdp, logits, N, episodes // N, seed)))
        out["leave-one-out"].append(measure_shrinkage(mdp, logits, N, episodes // N, seed, leave_one_out=True))
    return Shrink(list(sizes), {k: [float(f) for f, _ in v] for k, v in out.items()},
                  {k: [float(s) for _, s in v] for k, v in out.items()})


# ---- every baseline side by side -------------------------------------------------------------------

@torch_threads(1)
def baseline_samples(mdp: TabularMDP | None = None, logits: torch.Tensor | None = None, *, batch_size: int = 8,
                     n_batches: int = 4000, seed: int = 0, ema_decay: float = 0.9) -> dict[str, torch.Tensor]:
    """The batch estimates ĝ (n_batches, S, A) of each baseline of the notebook, all on the same episodes.

    The constants E[R] and b* come from other episodes (seed + 1), as they would from past data.
    """
    if mdp is None:
        mdp, logits = lesson_mdp()
    th = per_episode(mdp, logits, seed=seed + 1)
    forms = {
        "R, no baseline": "full_return",
        f"R - E[R] (= {th.mean_return:.3f})": full_return_minus(th.mean_return),
        f"R - b* (= {th.b_star:.3f})": full_return_minus(th.b_star),
        "R - batch mean": full_return_minus_batch_mean(),
        "R - leave-one-out mean": full_return_minus_batch_mean(leave_one_out=True),
        f"R - EMA({ema_decay}) of past batches": full_return_minus_ema(ema_decay),
        "G_t, no baseline": "reward_to_go",
        "G_t - V_t(s_t), exact": "reward_to_go_minus_value",
    }
    return dict(zip(forms, gradient_samples_shared(mdp, logits, list(forms.values()), batch_size, n_batches, seed)))


# ---- action-dependent "baselines" -------------------------------------------------------------------

def predicted_mean(mdp: TabularMDP, logits: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    r"""E[ĝ] with Ψ = G_t − b(s_t, a_t) for a table b (S, A): :math:`\nabla J - [D(s)\,\pi(\cdot\mid s)\odot(b(s,\cdot) - \bar b(s))]_s`,
    :math:`D(s) = \sum_t \Pr(s_t = s)`, :math:`\bar b(s) = \sum_a \pi(a\mid s) b(s, a)`."""
    pi = torch.softmax(logits, -1)
    visits = mdp.state_visitation(logits).sum(0)
    return mdp.exact_gradient(logits) - visits[:, None] * pi * (b - (pi * b).sum(-1, keepdim=True))


def reward_to_go_minus_exact_q(ep: Episodes, mdp: TabularMDP, logits: torch.Tensor) -> torch.Tensor:
    r""":math:`\Psi_t = \gamma^t (G_t - Q_t(s_t, a_t))` with the exact Q of the MDP: mean zero given the action."""
    _, q, _ = exact_step_values(mdp, logits, ep)
    return est.baseline_weights(ep.rewards, q, mdp.gamma, ep.dones)


# ---- a value baseline with a silent bug (the debug exercise) ----------------------------------------

def colleague_value_baseline(ep: Episodes, V: torch.Tensor) -> torch.Tensor:
    """b_t = V_t(s_t) at every step of the episodes ``ep`` (N, H), from the exact value table ``V`` (H+1, S)."""
    t = torch.arange(ep.states.shape[-1], device=ep.states.device).expand_as(ep.states)
    return V[t, ep.next_states]


def value_baseline(ep: Episodes, V: torch.Tensor) -> torch.Tensor:
    """b_t = V_t(s_t) at every step of ``ep`` (..., H) from the value table ``V`` (H+1, S): the state the action is taken in."""
    return state_value_baseline(V, ep.states)


def batch_gradients(logits: torch.Tensor, ep: Episodes, weights: torch.Tensor, batch_size: int) -> torch.Tensor:
    """The batch estimates ĝ (n_batches, S, A) of weights Ψ (N, H) on episodes ``ep`` (N, H); rows jB..jB+B−1 form batch j."""
    n = len(ep)
    if n % batch_size:
        raise ValueError(f"batch_size={batch_size} must divide the number of episodes, {n}")
    m = ep.mask
    group = (torch.arange(n, device=m.device) // batch_size).unsqueeze(-1).expand_as(m)
    return softmax_score_sum(logits.to(weights.dtype), ep.states[m], ep.actions[m], weights[m], group[m],
                             n // batch_size) / batch_size


@torch_threads(1)
def value_baseline_samples(mdp: TabularMDP, logits: torch.Tensor, value_baseline, batch_size: int = 8,
                           n_batches: int = 4000, seed: int = 0) -> torch.Tensor:
    """ĝ with Ψ_t = γᵗ(G_t − b_t), b = ``value_baseline(episodes, V)`` on freshly sampled episodes (N, H)."""
    ep = mdp.sample(logits, batch_size * n_batches, seed)
    b = value_baseline(ep, mdp.values(logits)[0])
    return batch_gradients(logits, ep, est.baseline_weights(ep.rewards, b, mdp.gamma, ep.dones), batch_size)

