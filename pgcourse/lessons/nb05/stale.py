r"""Stale samples: episodes sampled once by :math:`\pi_\text{old}` and reused while the policy moves to :math:`\pi_\theta`.

Three estimates of :math:`\nabla J(\theta)` from them, each
:math:`\frac1B\sum_i\sum_t \nabla_\theta\log\pi_\theta(a_t\mid s_t)\,w_t\,\gamma^t G_t` (:func:`estimates`):

* no correction, :math:`w_t = 1` (what reusing a batch for k plain policy-gradient steps does);
* the per-step ratio :math:`w_t = \rho_t = \pi_\theta(a_t\mid s_t)/\pi_\text{old}(a_t\mid s_t)` (PPO's surrogate);
* the trajectory ratio :math:`w_t = \rho(\tau) = \prod_u \rho_u`, unbiased since
  :math:`\mathbb E_{\tau\sim\pi_\text{old}}[\rho(\tau) f(\tau)] = \mathbb E_{\tau\sim\pi_\theta}[f(\tau)]`.

Their exact means (:func:`expected_estimate`), from the old policy's state visitation :math:`d^\text{old}_t` and
time-dependent :math:`Q^\text{old}_t`: the per-step one is the gradient of the surrogate
:math:`L(\theta) = \sum_t\gamma^t\sum_s d^\text{old}_t(s)\sum_a\pi_\theta(a\mid s)\,Q^\text{old}_t(s,a)`, the uncorrected one
that of :math:`\sum_t\gamma^t\sum_s d^\text{old}_t(s)\sum_a\pi_\text{old}(a\mid s)\log\pi_\theta(a\mid s)\,Q^\text{old}_t(s,a)`.
:math:`J(\theta_\text{old}) + L(\theta) - L(\theta_\text{old})` agrees with :math:`J(\theta)` to first order, so its value
is off at second order in :math:`\theta - \theta_\text{old}` and its gradient at first order (:func:`bias_order`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ... import estimators as est
from ...device import torch_threads
from ...mdp import TabularMDP, delayed_reward
from ...policies import softmax_log_prob, softmax_score_sum
from ...stats import BiasTest, bias_test

CORRECTIONS = ("none", "per_step", "trajectory")
LABELS = {"none": "no correction (stale)", "per_step": r"per-step ratio $\rho_t$ (PPO)",
          "trajectory": r"trajectory ratio $\rho(\tau)$"}
SHORT = {"none": "stale", "per_step": "per-step", "trajectory": "trajectory"}
COLORS = {"none": "C3", "per_step": "C0", "trajectory": "C2"}

__all__ = ["CORRECTIONS", "LABELS", "COLORS", "SHORT", "OldEpisodes", "sample_old", "log_ratios", "estimates", "mean_kl", "surrogate", "expected_estimate", "bias_terms", "lesson_mdp", "StaleDrift", "stale_drift", "BiasOrder", "bias_order"]


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


# ---- the exact means -----------------------------------------------------------------------------------

def _weighted(mdp: TabularMDP, d: torch.Tensor, q: torch.Tensor, per_sa: torch.Tensor) -> torch.Tensor:
    """:math:`\\sum_t\\gamma^t\\sum_{s,a} d_t(s)\\,\\text{per\\_sa}(s,a)\\,q_t(s,a)` for d (H, S), q (H, S, A), per_sa (S, A)."""
    disc = mdp.gamma ** torch.arange(mdp.horizon, dtype=d.dtype)
    return torch.einsum("t,ts,sa,tsa->", disc, d, per_sa, q)


def surrogate(mdp: TabularMDP, theta_old: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    r"""The importance-weighted surrogate :math:`L(\theta) = \sum_t\gamma^t\,\mathbb E_{s\sim d^\text{old}_t}\sum_a\pi_\theta(a|s)Q^\text{old}_t(s,a)`.

    Differentiable in ``theta``; :math:`\nabla L` is the exact mean of the per-step-ratio estimate.
    """
    _, q = mdp.values(theta_old.detach())
    return _weighted(mdp, mdp.state_visitation(theta_old.detach()), q, torch.softmax(theta, -1))


def _grad(f, theta: torch.Tensor) -> torch.Tensor:
    th = theta.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        (g,) = torch.autograd.grad(f(th), th)
    return g


def expected_estimate(mdp: TabularMDP, theta_old: torch.Tensor, theta: torch.Tensor, correction: str) -> torch.Tensor:
    r"""The exact mean (S, A) of :func:`estimates` under :math:`\pi_\text{old}` (no sampling).

    ``"per_step"``: :math:`\nabla L(\theta)` (:func:`surrogate`); ``"none"``: the gradient of the old actions'
    :math:`Q^\text{old}`-weighted log-likelihood; ``"trajectory"``: :math:`\nabla J(\theta)` itself.
    """
    if correction == "trajectory":
        return mdp.exact_gradient(theta)
    if correction == "per_step":
        return _grad(lambda th: surrogate(mdp, theta_old, th), theta)
    if correction == "none":
        _, q = mdp.values(theta_old)
        d, pi_old = mdp.state_visitation(theta_old), torch.softmax(theta_old, -1)
        return _grad(lambda th: _weighted(mdp, d, q, pi_old * torch.log_softmax(th, -1)), theta)
    raise ValueError(f"correction must be one of {CORRECTIONS}, got {correction!r}")


def bias_terms(mdp: TabularMDP, theta_old: torch.Tensor, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The per-step ratio's exact bias :math:`\nabla L(\theta) - \nabla J(\theta)`, split in two terms (each (S, A)).

    With :math:`G(d, Q) = \nabla_\theta\sum_t\gamma^t\sum_s d_t(s)\sum_a\pi_\theta(a|s)Q_t(s,a)` (so
    :math:`\nabla J = G(d^\theta, Q^\theta)`): the **state term** :math:`G(d^\text{old}, Q^\theta) - G(d^\theta, Q^\theta)` (the
    old policy's states) and the **Q term** :math:`G(d^\text{old}, Q^\text{old}) - G(d^\text{old}, Q^\theta)` (the old
    policy's later actions in the returns). They add up to the bias.
    """
    (_, q_old), (_, q) = mdp.values(theta_old), mdp.values(theta.detach())
    d_old, d = mdp.state_visitation(theta_old), mdp.state_visitation(theta.detach())

    def G(dd, qq):
        return _grad(lambda th: _weighted(mdp, dd, qq, torch.softmax(th, -1)), theta)
    g_old_q = G(d_old, q)
    return g_old_q - G(d, q), G(d_old, q_old) - g_old_q


# ---- reusing a batch for k steps ------------------------------------------------------------------

def lesson_mdp() -> tuple[TabularMDP, torch.Tensor]:
    """The corridor of notebook 03 (``delayed_reward(6)``, +1 at the end) and a uniform old policy."""
    mdp = delayed_reward(length=6)
    return mdp, torch.zeros(mdp.n_states, mdp.n_actions, dtype=torch.float64)


@dataclass
class StaleDrift:
    """Along the path of k plain gradient steps on one reused batch: each estimate against ∇J(θ_k).

    Per correction and step: ``tests`` (:func:`pgcourse.stats.bias_test` of the ``n_batches`` estimates against
    the exact ∇J(θ_k): ``norm_diff`` = ‖ḡ − ∇J‖, ``norm_se`` = its value under no bias, ``max_abs_z``, ``p_value``),
    ``variance`` (tr Σ of one batch's estimate), ``exact_bias`` (‖E[ĝ] − ∇J‖ from :func:`expected_estimate`);
    and the per-step bias's two terms (:func:`bias_terms`).
    """

    batch_size: int
    n_batches: int
    steps: list[int] = field(default_factory=list)
    distance: list[float] = field(default_factory=list)    # ‖θ_k − θ_old‖
    kl: list[float] = field(default_factory=list)          # KL(π_old ‖ π_k), averaged over the old policy's states
    J: list[float] = field(default_factory=list)           # exact J(θ_k)
    grad_norm: list[float] = field(default_factory=list)   # ‖∇J(θ_k)‖
    tests: dict[str, list[BiasTest]] = field(default_factory=dict)
    variance: dict[str, list[float]] = field(default_factory=dict)
    exact_bias: dict[str, list[float]] = field(default_factory=dict)
    state_term: list[float] = field(default_factory=list)  # ‖state term‖
    q_term: list[float] = field(default_factory=list)      # ‖Q term‖
    terms_cos: list[float] = field(default_factory=list)   # cosine between the two terms
    per_step_mean_test: list[BiasTest] = field(default_factory=list)  # per-step estimates against ∇L(θ_k)

    def rel(self, correction: str, what: str = "measured") -> list[float]:
        """‖ḡ − ∇J‖/‖∇J‖ (``measured``), its value under no bias (``noise``), or the exact ‖E ĝ − ∇J‖/‖∇J‖."""
        if what == "exact":
            xs = self.exact_bias[correction]
        else:
            xs = [t.norm_diff if what == "measured" else t.norm_se for t in self.tests[correction]]
        return [x / g for x, g in zip(xs, self.grad_norm)]

    def table(self) -> str:
        """The measured table: per correction ‖ḡ − ∇J‖/‖∇J‖, its no-bias value (noise), max |z| and the variance."""
        group = "  ".join(f"{SHORT[c] + ': dist  noise  max|z|    var':>31}" for c in CORRECTIONS)
        lines = [f"{'k':>2} {'KL':>7}  {group}"]
        for i, k in enumerate(self.steps):
            cells = "  ".join(f"{self.rel(c)[i]:>12.3f} {self.rel(c, 'noise')[i]:>6.3f} "
                              f"{self.tests[c][i].max_abs_z:>7.1f} {self.variance[c][i]:>7.4f}" for c in CORRECTIONS)
            lines.append(f"{k:>2} {self.kl[i]:>7.4f}  {cells}")
        return "\n".join(lines)

    def exact_table(self) -> str:
        """The exact table: the distance, the exact relative biases, and the per-step bias's two terms."""
        lines = [f"{'k':>2} {'|θk-θold|':>9} {'KL':>7} {'stale bias':>11} {'per-step bias':>14} "
                 f"{'|state term|':>13} {'|Q term|':>9} {'cos(terms)':>11}   (biases ‖E ĝ − ∇J‖/‖∇J‖)"]
        for i, k in enumerate(self.steps):
            lines.append(f"{k:>2} {self.distance[i]:>9.3f} {self.kl[i]:>7.4f} {self.rel('none', 'exact')[i]:>11.3f} "
                         f"{self.rel('per_step', 'exact')[i]:>14.3f} {self.state_term[i] / self.grad_norm[i]:>13.3f} "
                         f"{self.q_term[i] / self.grad_norm[i]:>9.3f} {self.terms_cos[i]:>11.2f}")
        return "\n".join(lines)


def _total_variance(x: torch.Tensor) -> float:
    return float(x.reshape(x.shape[0], -1).var(0, unbiased=True).sum())


@torch_threads(1)
def stale_drift(mdp: TabularMDP | None = None, theta_old: torch.Tensor | None = None, *, n_steps: int = 8,
                lr: float = 1.0, batch_size: int = 16, n_batches: int = 1000, seed: int = 0) -> StaleDrift:
    """Reuse the old episodes for ``n_steps`` plain gradient-ascent steps and measure each estimate at every step.

    The path is that of the *mean* uncorrected estimate over all ``n_batches`` (what a very large
    reused batch does), so that the drift shows apart from the noise; at each θ_k every correction's
    ``n_batches`` estimates from batches of ``batch_size`` episodes are tested against the exact ∇J(θ_k).
    """
    if mdp is None:
        mdp, theta_old = lesson_mdp()
    old = sample_old(mdp, theta_old, batch_size, n_batches, seed)
    out = StaleDrift(batch_size, n_batches, tests={c: [] for c in CORRECTIONS},
                     variance={c: [] for c in CORRECTIONS}, exact_bias={c: [] for c in CORRECTIONS})
    theta = theta_old.clone()
    for k in range(n_steps + 1):
        exact = mdp.exact_gradient(theta)
        xs = {c: estimates(old, theta, c) for c in CORRECTIONS}
        for c in CORRECTIONS:
            out.tests[c].append(bias_test(xs[c], exact))
            out.variance[c].append(_total_variance(xs[c]))
            out.exact_bias[c].append(float((expected_estimate(mdp, theta_old, theta, c) - exact).norm()))
        out.per_step_mean_test.append(bias_test(xs["per_step"], expected_estimate(mdp, theta_old, theta, "per_step")))
        s_term, q_term = bias_terms(mdp, theta_old, theta)
        out.state_term.append(float(s_term.norm()))
        out.q_term.append(float(q_term.norm()))
        den = float(s_term.norm() * q_term.norm())
        out.terms_cos.append(float((s_term * q_term).sum()) / den if den > 0 else 0.0)
        out.steps.append(k)
        out.distance.append(float((theta - theta_old).norm()))
        out.kl.append(mean_kl(mdp, theta_old, theta))
        out.J.append(float(mdp.expected_return(theta)))
        out.grad_norm.append(float(exact.norm()))
        theta = theta + lr * xs["none"].mean(0)
    return out


# ---- the order of the bias in the distance ----------------------------------------------------------

@dataclass
class BiasOrder:
    """Exact errors at θ = θ_old + s·u (u the unit direction of ∇J(θ_old)) for growing s, and their log-log slopes."""

    distance: list[float]
    kl: list[float]
    grad_bias: dict[str, list[float]]   # ‖E ĝ − ∇J(θ)‖ for "none" and "per_step"
    value_error: list[float]            # |J(θ) − J(θ_old) − (L(θ) − L(θ_old))|

    def slopes(self, ys: list[float]) -> list[float]:
        """Local log-log slopes between consecutive distances: 1 for a first-order error, 2 for a second-order one."""
        d = self.distance
        return [math.log(ys[i + 1] / ys[i]) / math.log(d[i + 1] / d[i]) for i in range(len(d) - 1)]

    def table(self) -> str:
        lines = [f"{'|θ-θold|':>8} {'KL':>9} {'stale grad bias':>16} {'slope':>6} {'per-step grad bias':>19} {'slope':>6} "
                 f"{'surrogate value error':>22} {'slope':>6}"]
        sl = {c: [math.nan] + self.slopes(self.grad_bias[c]) for c in ("none", "per_step")}
        sv = [math.nan] + self.slopes(self.value_error)
        for i, s in enumerate(self.distance):
            lines.append(f"{s:>8.3f} {self.kl[i]:>9.2e} {self.grad_bias['none'][i]:>16.3e} {sl['none'][i]:>6.2f} "
                         f"{self.grad_bias['per_step'][i]:>19.3e} {sl['per_step'][i]:>6.2f} "
                         f"{self.value_error[i]:>22.3e} {sv[i]:>6.2f}")
        return "\n".join(lines)


def bias_order(mdp: TabularMDP | None = None, theta_old: torch.Tensor | None = None,
               distances: tuple[float, ...] = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)) -> BiasOrder:
    """Exact gradient biases of the stale and per-step estimates, and the surrogate's value error, against the distance."""
    if mdp is None:
        mdp, theta_old = lesson_mdp()
    g0 = mdp.exact_gradient(theta_old)
    u = g0 / g0.norm()
    J0, L0 = float(mdp.expected_return(theta_old)), float(surrogate(mdp, theta_old, theta_old))
    out = BiasOrder([], [], {"none": [], "per_step": []}, [])
    for s in distances:
        theta = theta_old + s * u
        exact = mdp.exact_gradient(theta)
        for c in out.grad_bias:
            out.grad_bias[c].append(float((expected_estimate(mdp, theta_old, theta, c) - exact).norm()))
        out.value_error.append(abs(float(mdp.expected_return(theta)) - J0 - (float(surrogate(mdp, theta_old, theta)) - L0)))
        out.distance.append(float(s))
        out.kl.append(mean_kl(mdp, theta_old, theta))
    return out
