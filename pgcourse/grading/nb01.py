"""Exercise checks of notebook 01 (full return, REINFORCE), easy to hard, and the exact-gradient check.

Every expected value is computed by the package's reference code: ``01.episode_return`` by
:func:`pgcourse.returns.discounted_return`, ``01.softmax_score`` by :func:`pgcourse.policies.softmax_score`,
``01.surrogate_loss`` by :func:`pgcourse.estimators.pg_loss` (its value and, by autograd, its gradient
with respect to ``logp``). The two concept exercises are checked against exact sums over every
trajectory of small MDPs (:func:`pgcourse.variance.exact_moments`), not against samples:
``01.reinforce_weights`` (debug) by :math:`\\mathbb E[\\hat g] = \\nabla J`, ``01.bandit_variance`` (predict)
by the exact total variance.

:class:`ExactGradient` and :func:`compare_exact` are shared with notebook 02's debug exercise.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..estimators import full_return_weights, pg_loss
from ..lessons.nb01 import bandit
from ..mdp import Episodes, TabularMDP, all_episodes
from ..policies import softmax_score
from ..returns import discounted_return
from ..variance import exact_moments
from . import Case, _show, derive, differ, exercise
from .losses import LossAndGrad, compare_loss_and_grad, expected_loss_and_grad

F64 = torch.float64


# ---- small MDPs whose every trajectory can be listed ------------------------------------------

def two_arms(r0: float, r1: float, horizon: int = 3) -> TabularMDP:
    """One state, two actions paying r0 and r1, every episode exactly ``horizon`` steps (2^H trajectories)."""
    R = torch.tensor([[r0, r1]], dtype=F64)
    return TabularMDP(torch.ones(1, 2, 1, dtype=F64), R, torch.ones(1, dtype=F64), 1.0, horizon,
                      terminal=torch.zeros(1, dtype=torch.bool), name=f"two_arms(H={horizon})")


def stop_or_go(r_stop: float, r_go: float, horizon: int = 3, gamma: float = 1.0) -> TabularMDP:
    """'go' (action 0) pays r_go and goes on, 'stop' (action 1) pays r_stop and ends: episodes of 1..H steps."""
    P = torch.zeros(2, 2, 2, dtype=F64)
    P[0, 0, 0] = P[0, 1, 1] = 1.0
    P[1, :, 1] = 1.0
    R = torch.zeros(2, 2, dtype=F64)
    R[0, 0], R[0, 1] = r_go, r_stop
    return TabularMDP(P, R, torch.tensor([1.0, 0.0], dtype=F64), gamma, horizon,
                      terminal=torch.tensor([False, True]), name=f"stop_or_go(H={horizon})")


def random_maze(gen: torch.Generator, horizon: int = 3, gamma: float = 0.9) -> TabularMDP:
    """Three states (the last one terminal), two actions, each (s, a) leading to one random state with a random reward."""
    P = torch.zeros(3, 2, 3, dtype=F64)
    nxt = torch.randint(0, 3, (2, 2), generator=gen)
    nxt[0, 1] = 2                                    # one way to end from the start, so lengths differ
    for s in range(2):
        for a in range(2):
            P[s, a, int(nxt[s, a])] = 1.0
    P[2, :, 2] = 1.0
    R = torch.zeros(3, 2, dtype=F64)
    R[:2] = torch.randn(2, 2, generator=gen, dtype=F64).round(decimals=1)
    return TabularMDP(P, R, torch.tensor([1.0, 0.0, 0.0], dtype=F64), gamma, horizon,
                      terminal=torch.tensor([False, False, True]), name=f"random_maze(H={horizon}, gamma={gamma})")


# ---- the exact-gradient check of a weights function -------------------------------------------

@dataclass
class ExactGradient:
    """What weights Ψ (shaped like the trajectories' rewards) must give: E[ĝ], summed exactly over them, = ∇J."""

    mdp: TabularMDP
    logits: torch.Tensor
    episodes: Episodes
    probs: torch.Tensor
    grad: torch.Tensor

    def __repr__(self) -> str:
        return f"weights whose E[ĝ] over these {len(self.episodes)} trajectories is ∇J = {_show(self.grad)}"


def exact_case(mdp: TabularMDP, gen: torch.Generator, note: str, weight: float = 1.0) -> Case:
    """A case calling ``fn(rewards, gamma, dones)`` on every trajectory of ``mdp`` under a random policy (logits
    drawn from ``gen``); it passes when E[ĝ] = ∇J."""
    logits = torch.randn(mdp.n_states, mdp.n_actions, generator=gen, dtype=F64)
    ep, p = all_episodes(mdp, logits)
    expected = ExactGradient(mdp, logits, ep, p, mdp.exact_gradient(logits))
    return Case((ep.rewards, mdp.gamma, ep.dones), {}, expected, f"{mdp.name}, all {len(ep)} trajectories: {note}",
                weight)


def compare_exact(got: Any, expected: Any) -> str | None:
    """For an :class:`ExactGradient` case: the exact mean of ĝ with the weights ``got`` against ∇J; else plain."""
    if not isinstance(expected, ExactGradient):
        return differ(got, expected, 1e-5, 1e-4)
    ep = expected.episodes
    if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(ep.rewards.shape):
        return f"expected weights shaped like rewards {tuple(ep.rewards.shape)}, got {_show(got)}"
    if not bool(torch.isfinite(got.detach()).all()):
        return "the weights hold NaN or inf"
    got = got.detach().to(F64)
    mean = exact_moments(expected.mdp, expected.logits, lambda *_: got).mean
    gap = float((mean - expected.grad).abs().max())
    if gap <= 1e-9 + 1e-7 * float(expected.grad.abs().max()):
        return None
    return (f"with your weights E[ĝ], summed exactly over all {len(ep)} trajectories, is {_show(mean)}, "
            f"not ∇J (largest difference {gap:.3g}): the estimator is biased")


# ---- 01.episode_return (transcribe) --------------------------------------------------------------

@exercise("01.episode_return", points=1, kind="transcribe")
def episode_return_cases(gen: torch.Generator) -> list[Case]:
    """R(τ) = Σ_k γ^k r_k of one episode (1-D rewards) as a number."""
    def case(rewards, gamma, note):
        return Case((rewards, gamma), {}, float(discounted_return(rewards, gamma)[..., 0]), note)

    g = derive(gen, 1)
    return [
        case(torch.tensor([1.0, 2.0, 3.0]), 0.5, "1 + 0.5*2 + 0.25*3"),
        case(torch.tensor([1.0, 1.0, 1.0, 1.0]), 1.0, "gamma = 1: the plain sum"),
        case(torch.tensor([4.0]), 0.9, "an episode of one step"),
        case(torch.tensor([3.0, 1.0, 4.0, 1.0, 5.0]), 0.0, "gamma = 0: only the first reward counts"),
        case(torch.tensor([0.0, 0.0, 0.0, 1.0]), 0.9, "one reward at the end, discounted three times: 0.9^3"),
        case(torch.randn(12, generator=g, dtype=F64), 0.99, "12 random float64 rewards, gamma = 0.99"),
    ]


# ---- 01.softmax_score (transcribe) ---------------------------------------------------------------

@exercise("01.softmax_score", points=1, kind="transcribe")
def softmax_score_cases(gen: torch.Generator) -> list[Case]:
    """∇_θ log π(a|s) of the tabular softmax: row s is e_a − π(·|s), every other row is 0."""
    def case(logits, state, action, note=""):
        return Case((logits, state, action), {}, softmax_score(logits, state, action), note)

    g = derive(gen, 3)
    return [
        case(torch.zeros(2, 2, dtype=F64), 0, 1, "uniform policy: row 0 is (-1/2, 1/2)"),
        case(torch.randn(3, 4, generator=g, dtype=F64), 2, 0, "3 states, 4 actions: rows 0 and 1 are 0"),
        case(torch.randn(5, 3, generator=g, dtype=F64), 0, 2, "5 states, 3 actions"),
        case(torch.tensor([[1000.0, 999.0, 0.0], [0.0, 1.0, 2.0]], dtype=F64), 0, 1,
             "large logits: exp(1000) overflows, use torch.softmax (or subtract the max)"),
        case(torch.randn(4, 2, generator=g), 3, 1, "float32 logits: return float32"),
    ]


# ---- 01.surrogate_loss (transcribe) --------------------------------------------------------------

def compare_surrogate(got: Any, expected: LossAndGrad) -> str | None:
    """The value must match pg_loss, d/d logp must match its autograd gradient, and no gradient may reach weights."""
    return compare_loss_and_grad(got, expected)


@exercise("01.surrogate_loss", points=2, kind="transcribe", compare=compare_surrogate)
def surrogate_loss_cases(gen: torch.Generator) -> list[Case]:
    """L = −(1/N) Σ_i Σ_t m_t log π(a_t|s_t) · stopgrad(Ψ_t), compared in value and in d L / d logp."""
    def case(logp, weights, mask=None, note=""):
        logp = logp.detach().requires_grad_(True)
        return Case((logp, weights), {"mask": mask},
                    expected_loss_and_grad(pg_loss, logp, weights, mask, constants={"weights": weights}), note)

    g = derive(gen, 2)
    lp = -torch.rand(8, 20, generator=g, dtype=F64) * 2
    w = torch.randn(8, 20, generator=g, dtype=F64) * 10
    lengths = torch.randint(1, 21, (8, 1), generator=g)
    m = torch.arange(20) < lengths
    pad_lp = torch.tensor([[-0.1, -0.7, float("-inf")], [-1.2, float("-inf"), float("-inf")]])
    return [
        case(torch.tensor([[-0.5, -1.0, -0.2], [-2.0, -0.1, -0.3]]), torch.tensor([[3.0, 3.0, 3.0], [1.0, 1.0, 1.0]]),
             None, "two episodes (rows), no mask: divide by the number of rows, 2"),
        case(torch.tensor([-0.5, -1.0, -0.2, -0.7]), torch.tensor([2.0, 2.0, 2.0, 2.0]), None,
             "one episode shaped (T,): N = 1"),
        case(torch.tensor([[-0.5, -1.0, 0.0], [-2.0, 0.0, 0.0]]), torch.tensor([[1.0, 1.0, 9.0], [4.0, 9.0, 9.0]]),
             torch.tensor([[True, True, False], [True, False, False]]), "padded steps (mask False) count for nothing"),
        case(pad_lp, torch.tensor([[2.0, 2.0, 0.0], [-1.0, 0.0, 0.0]]), torch.tensor([[True, True, False], [True, False, False]]),
             "padded steps hold log 0 = -inf: select with torch.where, since -inf * 0 is nan"),
        case(torch.tensor([[-0.3, -0.6], [-0.9, -0.4]]), torch.tensor([[1.5, -0.5], [2.0, 1.0]], requires_grad=True),
             None, "weights that require grad (say, from a critic) must get no gradient: detach them"),
        case(lp, w, m, "an (8, 20) float64 batch with random episode lengths"),
    ]


# ---- 01.reinforce_weights (debug) ----------------------------------------------------------------

@exercise("01.reinforce_weights", points=2, kind="debug", compare=compare_exact)
def reinforce_weights_cases(gen: torch.Generator) -> list[Case]:
    """Ψ_t = R(τ) at every step (one episode per row), checked by E[ĝ] = ∇J summed over every trajectory."""
    g = derive(gen, 4)

    arms = torch.randn(3, generator=g, dtype=F64).round(decimals=1)
    r = torch.randn(2, generator=g, dtype=F64).round(decimals=1)
    rewards = torch.tensor([[1.0, 2.0, 0.0, 0.0], [3.0, 0.0, 1.0, 1.0]])
    dones = torch.tensor([[False, True, False, False], [False, False, False, True]])
    return [
        exact_case(bandit(arms), g, "one step, so every episode has the same length (the naive test)"),
        exact_case(two_arms(float(r[0]), float(r[0] + 0.5 + r[1].abs())), g,
                   "every episode lasts 3 steps: E[ĝ] must be ∇J itself, not a multiple of it"),
        exact_case(stop_or_go(1.0, 0.3), g,
                   "'stop' ends the episode: episodes of 1, 2 and 3 steps, and the length depends on the actions"),
        exact_case(stop_or_go(float(r[0]), 0.5, gamma=0.9), g, "gamma = 0.9 and episodes of different lengths"),
        exact_case(random_maze(g), g, "a random maze with a terminal state, gamma = 0.9"),
        Case((rewards, 0.5, dones), {}, full_return_weights(rewards, 0.5, dones),
             "two padded episodes of 2 and 4 steps, gamma = 0.5: R(tau) at every real step"),
    ]


# ---- 01.bandit_variance (predict) ----------------------------------------------------------------

def bandit_exact_variance(logits: torch.Tensor, rewards: torch.Tensor, batch_size: int) -> float:
    """tr Cov[ĝ] of a batch of ``batch_size`` pulls, summed exactly over the arms (no formula, no sampling)."""
    mdp = bandit(rewards)
    lg = torch.as_tensor(logits, dtype=F64).view(1, -1)
    return exact_moments(mdp, lg, "full_return").trace_var / batch_size


@exercise("01.bandit_variance", points=2, kind="predict", rtol=1e-6, atol=1e-9)
def bandit_variance_cases(gen: torch.Generator) -> list[Case]:
    """The total variance of REINFORCE on a bandit, predicted in closed form; expected: the exact sum over arms."""
    g = derive(gen, 5)

    def case(logits, rewards, batch_size, note):
        return Case((logits, rewards, batch_size), {}, bandit_exact_variance(logits, rewards, batch_size), note)

    lg3, r3 = torch.randn(3, generator=g, dtype=F64), torch.randn(3, generator=g, dtype=F64)
    lg5, r5 = torch.randn(5, generator=g, dtype=F64), torch.rand(5, generator=g, dtype=F64) * 4
    B = int(torch.randint(2, 200, (1,), generator=g))
    return [
        case(torch.zeros(2, dtype=F64), torch.tensor([1.0, 2.0], dtype=F64), 1, "two arms, uniform policy, one pull"),
        case(lg3, r3, 1, "three arms, random logits and rewards"),
        case(lg3, r3 + 10.0, 1, "the same arms with 10 added to every reward: ∇J is unchanged, the variance is not"),
        case(lg3, r3, 16, "a batch of 16 pulls"),
        case(lg5, r5, B, f"five arms, a batch of {B} pulls"),
        case(torch.tensor([8.0, 0.0, 0.0], dtype=F64), torch.tensor([1.0, 0.0, 0.5], dtype=F64), 4,
             "a nearly deterministic policy"),
    ]
