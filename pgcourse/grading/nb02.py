r"""Exercises of notebook 02 (reward-to-go), easy to hard: the cases and their expected answers.

Every expected answer is computed by the package's reference code or summed exactly:
``02.variance_ratio`` by :func:`pgcourse.lessons.nb02.variance_ratio`, ``02.reward_to_go_vectorized`` by
:func:`pgcourse.returns.reward_to_go`, ``02.reward_to_go_weights`` (debug) by :math:`\mathbb E[\hat g] = \nabla J`
summed over every trajectory of small MDPs (see :mod:`pgcourse.grading.nb01`), and ``02.predict_gamma0``
(predict) by :func:`pgcourse.variance.exact_moments` on ``coin_flips`` — an exact sum, not the formula.
"""
from __future__ import annotations

import torch

from ..estimators import reward_to_go_weights
from ..lessons.nb02 import state_paid, variance_ratio
from ..mdp import coin_flips
from ..returns import reward_to_go
from ..variance import exact_moments
from . import Case, derive, exercise
from .nb01 import compare_exact, exact_case, random_maze, stop_or_go, two_arms

F64 = torch.float64
variance_ratio_reference = variance_ratio      # the name the tests use


def _t(values, dtype=torch.float32) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype)


@exercise("02.variance_ratio", points=1, kind="transcribe", rtol=1e-6, atol=0.0)
def _ratio_cases(gen: torch.Generator) -> list[Case]:
    gen = derive(gen, 4)
    a = torch.randn(5, 2, 2, generator=gen, dtype=F64) * 3 + 1
    b = torch.randn(8, 2, 2, generator=gen, dtype=F64)
    c = torch.randn(200, 16, 4, generator=gen, dtype=F64)
    d = c * torch.linspace(0.2, 1.0, 4, dtype=F64)
    e = torch.randn(50, 3, generator=gen, dtype=F64) + 100.0
    cases = [
        (a, b, "(n, S, A) tables with different numbers of batches: use the unbiased (n − 1) variance"),
        (c, d, "(200, 16, 4): sum the variances of all S·A coordinates, then divide"),
        (c, c, "the same table twice: ratio 1"),
        (e, e[:, [2, 0, 1]] * 2, "(n, d) tables with a large mean: the variance is about the spread, not the mean"),
    ]
    return [Case((x, y), expected=variance_ratio(x, y), note=note) for x, y, note in cases]


@exercise("02.reward_to_go_vectorized", points=2, kind="transcribe")
def _vectorized_cases(gen: torch.Generator) -> list[Case]:
    gen = derive(gen, 3)
    B, T = 4, 9
    batch = torch.randn(B, T, generator=gen)
    batch_dones = torch.rand(B, T, generator=gen) < 0.25
    batch_dones[:, -1] = True
    long_r = torch.randn(3, 40, generator=gen, dtype=F64)
    long_d = torch.rand(3, 40, generator=gen) < 0.1
    cases = [
        (_t([1.0, 1.0, 1.0]), 1.0, torch.tensor([False, False, False]), "one episode, no boundary, γ = 1"),
        (_t([0.0, 0.0, 1.0]), 0.5, torch.tensor([False, False, True]), "a single reward at the end, γ = 0.5"),
        (_t([5.0, 1.0, 2.0]), 0.0, torch.tensor([False, False, False]), "γ = 0: each step keeps only its own reward"),
        (_t([1.0, 1.0, 1.0, 1.0, 1.0]), 1.0, torch.tensor([False, True, False, False, True]),
         "two episodes in one row: the second must not leak into the first"),
        (_t([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]), 0.9, torch.tensor([True, False, True, True, False, False]),
         "episodes of length 1, 2, 1 and an unfinished one"),
        (batch, 0.9, batch_dones, "a (4, 9) batch, boundaries different in every row"),
        (long_r, 0.99, long_d, "a (3, 40) float64 batch"),
        (batch.reshape(2, 2, T), 1.0, batch_dones.reshape(2, 2, T), "a (2, 2, 9) batch: time is the last axis"),
    ]
    return [Case((r, g, d), expected=reward_to_go(r, g, d), note=note) for r, g, d, note in cases]


@exercise("02.reward_to_go_weights", points=2, kind="debug", compare=compare_exact)
def _rtg_weights_cases(gen: torch.Generator) -> list[Case]:
    """Ψ_t = γ^t G_t, checked by E[ĝ] = ∇J summed over every trajectory, and on rows holding several episodes."""
    g = derive(gen, 5)

    r = torch.randn(2, generator=g, dtype=F64).round(decimals=1)
    pay = (torch.rand(2, generator=g, dtype=F64) * 2).round(decimals=1) + torch.tensor([0.0, 1.0], dtype=F64)
    rewards = torch.tensor([[1.0, 2.0, 3.0, 1.0, 1.0, 2.0]])
    dones = torch.tensor([[False, False, True, False, False, True]])
    return [
        exact_case(state_paid(pay), g,
                   "each step pays for the state it leaves, whatever the action (the naive test), γ = 1"),
        exact_case(two_arms(float(r[0]), float(r[0] + 0.5 + r[1].abs())), g,
                   "each action is paid at its own step: r_t depends on a_t, so G_t must hold r_t"),
        exact_case(stop_or_go(1.0, float(r[1])), g, "'stop' pays and ends the episode at once, γ = 1"),
        exact_case(stop_or_go(1.0, 0.3, gamma=0.8), g, "γ = 0.8: the weights carry γ^t"),
        exact_case(random_maze(g, gamma=0.9), g, "a random maze with a terminal state, γ = 0.9"),
        Case((rewards, 0.5, dones), {}, reward_to_go_weights(rewards, 0.5, dones),
             "two episodes in one row, γ = 0.5: γ^t G_t, with t and G_t restarting at each episode"),
    ]


def gamma0_exact(horizon: int, noise: float, edge: float, batch_size: int) -> tuple[float, float]:
    """tr Cov[ĝ] (full return, reward-to-go) of a batch on coin_flips at γ = 0, uniform policy: an exact sum."""
    m = coin_flips(horizon=horizon, gamma=0.0, noise=noise, edge=edge)
    lg = torch.zeros(2, 2, dtype=F64)
    return tuple(exact_moments(m, lg, p).trace_var / batch_size
                 for p in ("full_return", "reward_to_go"))


@exercise("02.predict_gamma0", points=3, kind="predict", rtol=1e-6, atol=1e-9)
def _gamma0_cases(gen: torch.Generator) -> list[Case]:
    """Predict both variances at γ = 0 in closed form; expected: the exact sum over every trajectory."""
    g = derive(gen, 6)

    def case(H, noise, edge, B, note):
        return Case((H, noise, edge, B), {}, gamma0_exact(H, noise, edge, B), note)

    H = int(torch.randint(2, 6, (1,), generator=g))
    noise, edge = (round(float(x), 2) for x in torch.rand(2, generator=g) * torch.tensor([3.0, 1.0]) + 0.1)
    B = int(torch.randint(2, 64, (1,), generator=g))
    return [
        case(1, 1.0, 0.1, 1, "one step: both estimators are the same"),
        case(4, 1.0, 0.1, 1, "the course's coin flips, H = 4, one episode"),
        case(4, 1.0, 0.0, 1, "no edge: ∇J = 0, so each variance is the mean squared norm"),
        case(3, 2.0, 0.5, 8, "other rewards and a batch of 8 episodes"),
        case(H, noise, edge, B, f"H = {H}, noise {noise}, edge {edge}, batch of {B}"),
    ]
