r"""Notebook 04's statistical evidence: the tests behind its claim lines.

* :func:`sign_of_advantage` — take action a once in state s, then follow π: does the return beat
  :math:`V_0(s)` exactly where :math:`A_0(s,a) > 0`? Monte Carlo returns after each forced (s, a).
* :func:`unbiased_tests` — :func:`pgcourse.stats.bias_test` of sampled gradients against the exact
  one, on the coordinates a z-test can trust (:func:`pgcourse.variance.testable_coordinates`).
* :func:`one_step_variances` and :func:`measured_one_step` — the variance of one step's
  :math:`\nabla\log\pi(a\mid s)\,\Psi` for :math:`\Psi = Q, A, \delta` in closed form, and measured.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch

from ...device import torch_threads
from ...mdp import TabularMDP
from ...returns import discounted_return
from ...stats import BiasTest, bias_test
from ...variance import Row, gradient_samples_shared, summarize, testable_coordinates
from .experiments import _lesson

__all__ = ["ONE_STEP_FORMS", "SignTest", "advantage_samples", "forced_action_mdp", "lesson_keep", "measured_one_step",
           "one_step_inputs", "one_step_mdp", "one_step_variances", "sign_of_advantage", "unbiased_tests"]

ONE_STEP_FORMS = ("q_value", "advantage", "td_residual")


# ---- the sign of A ----------------------------------------------------------------------------------------

def forced_action_mdp(mdp: TabularMDP, s: int, a: int) -> TabularMDP:
    r"""The MDP after taking ``a`` in ``s`` at t = 0: it starts in :math:`s_1 \sim P(\cdot\mid s, a)`, H − 1 steps left."""
    return TabularMDP(mdp.P, mdp.R_sas, mdp.P[s, a], mdp.gamma, mdp.horizon - 1, terminal=mdp.terminal,
                      name=f"{mdp.name} after ({s}, {a})")


def advantage_samples(mdp: TabularMDP, logits: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    r"""(n, S, A) samples of :math:`G_0 - V_0(s)` where :math:`G_0` is the return of taking a once in s, then π.

    Its mean is :math:`Q_0(s,a) - V_0(s) = A_0(s,a)`; a terminal state's entries are 0.
    """
    V, _ = mdp.values(logits)
    out = torch.zeros(n, mdp.n_states, mdp.n_actions, dtype=torch.float64)
    for s in torch.nonzero(~mdp.terminal).flatten().tolist():
        for a in range(mdp.n_actions):
            ep = forced_action_mdp(mdp, s, a).sample(logits, n, seed=seed + 1000 * s + a)
            first = mdp.R_sas[s, a, ep.states[:, 0]]
            later = discounted_return(ep.rewards, mdp.gamma, ep.dones)[:, 0]
            out[:, s, a] = first + mdp.gamma * later - V[0, s]
    return out


@dataclass
class SignTest:
    """Forced-action returns against the exact :math:`A_0`: the bias test and the sign agreement."""

    test: BiasTest
    n: int
    n_pairs: int               # live (s, a) pairs
    resolved: torch.Tensor     # (S, A) bool: |mean| >= z_resolve SE
    agree: int                 # resolved pairs whose sampled sign is the sign of A_0
    mean: torch.Tensor
    se: torch.Tensor

    @property
    def n_resolved(self) -> int:
        return int(self.resolved.sum())

    @property
    def holds(self) -> bool:
        return self.test.unbiased() and self.agree == self.n_resolved and self.n_resolved >= self.n_pairs // 3


@lru_cache(maxsize=2)
@torch_threads(1)
def sign_of_advantage(n: int = 2000, seed: int = 0, z_resolve: float = 4.0) -> SignTest:
    r"""For every live (s, a) of the lesson: n returns after taking a once in s, minus :math:`V_0(s)`.

    ``resolved``: the pairs whose sampled mean is at least ``z_resolve`` SE from 0, so the data alone
    settle its sign; were that sign unrelated to :math:`A_0`, all k would agree with probability :math:`2^{-k}`.
    """
    mdp, logits = _lesson()
    x = advantage_samples(mdp, logits, n, seed)
    A0 = mdp.advantages(logits)[0]
    mean, se = x.mean(0), x.std(0) / n ** 0.5
    live = (~mdp.terminal).unsqueeze(-1).expand_as(A0)
    resolved = live & (mean.abs() >= z_resolve * se)
    agree = int((torch.sign(mean) == torch.sign(A0))[resolved].sum())
    return SignTest(bias_test(x, A0), n, int(live.sum()), resolved, agree, mean, se)


# ---- unbiasedness of sampled gradients ----------------------------------------------------------------------

def unbiased_tests(samples: dict[str, torch.Tensor], exact: torch.Tensor, keep: torch.Tensor) -> dict[str, BiasTest]:
    """:func:`pgcourse.stats.bias_test` of each (n, S, A) sample against ``exact`` on the coordinates ``keep``."""
    return {k: bias_test(x[:, keep], exact[keep]) for k, x in samples.items()}


def lesson_keep(n_episodes: int) -> torch.Tensor:
    """The lesson's testable coordinates for ``n_episodes`` episodes (see ``testable_coordinates``)."""
    mdp, logits = _lesson()
    return testable_coordinates(mdp, logits, n_episodes)


# ---- one step: Q, A and the TD residual -----------------------------------------------------------------------

def one_step_variances(pi: torch.Tensor, y: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    r"""tr Cov of :math:`g = \nabla_\theta\log\pi(a)\,\Psi` with :math:`a \sim \pi`, for Ψ = Q, A, δ: a tensor (3,).

    One state, a softmax policy ``pi`` (A,); after action a the target :math:`y = r + \gamma V(s')` takes
    the value ``y[a, k]`` with probability ``p[a, k]``. With :math:`Q_a = \sum_k p_{ak} y_{ak}`,
    :math:`V = \sum_a \pi_a Q_a`, :math:`\sigma^2_a = \operatorname{Var}(y \mid a)` and the score
    :math:`e_a - \pi` (squared norm :math:`n_a = 1 - 2\pi_a + \lVert\pi\rVert^2`):

    .. math::
        \operatorname{tr}\operatorname{Cov} = \sum_a \pi_a n_a\,\mathbb E[\Psi^2\mid a] - \lVert m\rVert^2,
        \qquad m = \sum_a \pi_a (e_a - \pi) Q_a ,

    with :math:`\mathbb E[\Psi^2\mid a] = Q_a^2`, :math:`(Q_a - V)^2` and :math:`(Q_a - V)^2 + \sigma^2_a`.
    """
    q = (p * y).sum(-1)
    v = (pi * q).sum()
    var_y = (p * y ** 2).sum(-1) - q ** 2
    eye = torch.eye(pi.shape[-1], dtype=pi.dtype)
    n_a = ((eye - pi) ** 2).sum(-1)
    m = (pi.unsqueeze(-1) * (eye - pi) * q.unsqueeze(-1)).sum(0)
    second = torch.stack([q ** 2, (q - v) ** 2, (q - v) ** 2 + var_y])      # E[Ψ² | a], (3, A)
    return (pi * n_a * second).sum(-1) - (m ** 2).sum()


def one_step_mdp(mdp: TabularMDP, logits: torch.Tensor, s: int, t: int = 0) -> TabularMDP:
    r"""Step t of the lesson from state s alone: one step, reward :math:`r + \gamma V_{t+1}(s')` per transition."""
    V, _ = mdp.values(logits)
    R = mdp.R_sas + mdp.gamma * V[t + 1].view(1, 1, -1)
    mu0 = torch.zeros(mdp.n_states, dtype=torch.float64)
    mu0[s] = 1.0
    return TabularMDP(mdp.P, R, mu0, mdp.gamma, 1, terminal=mdp.terminal, name=f"{mdp.name}, step {t} from cell {s}")


def one_step_inputs(s: int, t: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""``(pi, y, p)`` of the lesson's cell ``s`` at step ``t``: :math:`\pi(\cdot\mid s)`, the targets
    :math:`y[a, s'] = r(s,a,s') + \gamma V_{t+1}(s')` and their probabilities :math:`P(s'\mid s, a)`."""
    mdp, logits = _lesson()
    V, _ = mdp.values(logits)
    return (torch.softmax(logits[s], -1), mdp.R_sas[s] + mdp.gamma * V[t + 1].view(1, -1), mdp.P[s].clone())


@torch_threads(1)
def measured_one_step(s: int, n: int = 40_000, seed: int = 0, t: int = 0) -> dict[str, Row]:
    """The variance of one step's estimate for Ψ = Q, A, δ with the exact values, from ``n`` samples (same steps)."""
    mdp, logits = _lesson()
    one = one_step_mdp(mdp, logits, s, t)
    exact = one.exact_gradient(logits)
    xs = gradient_samples_shared(one, logits, ONE_STEP_FORMS, 1, n, seed)
    return {f: summarize(x, exact, f) for f, x in zip(ONE_STEP_FORMS, xs)}
