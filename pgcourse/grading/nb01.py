"""Exercise checks of notebook 01 (full return, REINFORCE).

Every expected value is computed by the package's reference code:
``01.discounted_return`` by :func:`pgcourse.returns.discounted_return`, ``01.surrogate_loss`` by
:func:`pgcourse.estimators.pg_loss` (its value and, by autograd, its gradient with respect to
``logp``), ``01.softmax_score`` by :func:`pgcourse.policies.softmax_score`.
"""
from __future__ import annotations

from typing import Any

import torch

from ..estimators import pg_loss
from ..policies import softmax_score
from ..returns import discounted_return
from . import Case, derive, exercise
from .losses import LossAndGrad, compare_loss_and_grad, expected_loss_and_grad




# ---- 01.discounted_return ----------------------------------------------------------------------

@exercise("01.discounted_return")
def discounted_return_cases(gen: torch.Generator) -> list[Case]:
    """R(τ) = Σ_k γ^k r_k of each step's whole episode, with several episodes per row."""
    def case(rewards, gamma, dones=None, note=""):
        kwargs = {"gamma": gamma, "dones": dones}
        return Case((rewards,), kwargs, discounted_return(rewards, gamma, dones), note)

    g = derive(gen, 1)
    r_batch = torch.randn(4, 12, generator=g)
    d_batch = torch.rand(4, 12, generator=g) < 0.25
    r3 = torch.randint(0, 3, (2, 3, 6), generator=g).float()
    d3 = torch.rand(2, 3, 6, generator=g) < 0.3
    return [
        case(torch.tensor([1.0, 2.0, 3.0]), 0.5, None, "one episode, no dones: 1 + 0.5*2 + 0.25*3 at every step"),
        case(torch.tensor([[1.0, 0.0, 2.0, 1.0], [0.0, 0.0, 0.0, 5.0]]), 1.0, None, "two rows, gamma = 1"),
        case(torch.ones(1, 5), 0.9, torch.tensor([[False, True, False, False, True]]),
             "two episodes in one row: the discount restarts at each episode's first step"),
        case(torch.tensor([[3.0, 1.0, 4.0, 1.0, 5.0, 9.0]]), 0.0, torch.tensor([[False, False, True, False, True, False]]),
             "gamma = 0: each step gets the first reward of its episode"),
        case(torch.tensor([[1.0, 1.0, 1.0, 1.0]]), 0.5, torch.tensor([[True, True, True, True]]),
             "every step is an episode of its own"),
        case(r_batch, 0.99, d_batch, "a (4, 12) batch with random episode boundaries"),
        case(r3.double(), 0.8, d3, "time is the LAST axis of a (2, 3, 6) float64 batch"),
    ]


# ---- 01.surrogate_loss -------------------------------------------------------------------------

def compare_surrogate(got: Any, expected: LossAndGrad) -> str | None:
    """The value must match pg_loss, d/d logp must match its autograd gradient, and no gradient may reach weights."""
    return compare_loss_and_grad(got, expected)


@exercise("01.surrogate_loss", compare=compare_surrogate)
def surrogate_loss_cases(gen: torch.Generator) -> list[Case]:
    """L = −(1/N) Σ_i Σ_t m_t log π(a_t|s_t) · stopgrad(Ψ_t), compared in value and in d L / d logp."""
    def case(logp, weights, mask=None, note=""):
        logp = logp.detach().requires_grad_(True)
        return Case((logp, weights), {"mask": mask},
                    expected_loss_and_grad(pg_loss, logp, weights, mask, constants={"weights": weights}), note)

    g = derive(gen, 2)
    lp = -torch.rand(8, 20, generator=g, dtype=torch.float64) * 2
    w = torch.randn(8, 20, generator=g, dtype=torch.float64) * 10
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


# ---- 01.softmax_score --------------------------------------------------------------------------

@exercise("01.softmax_score")
def softmax_score_cases(gen: torch.Generator) -> list[Case]:
    """∇_θ log π(a|s) of the tabular softmax: row s is e_a − π(·|s), every other row is 0."""
    def case(logits, state, action, note=""):
        return Case((logits, state, action), {}, softmax_score(logits, state, action), note)

    g = derive(gen, 3)
    return [
        case(torch.zeros(2, 2, dtype=torch.float64), 0, 1, "uniform policy: row 0 is (-1/2, 1/2)"),
        case(torch.randn(3, 4, generator=g, dtype=torch.float64), 2, 0, "3 states, 4 actions: rows 0 and 1 are 0"),
        case(torch.randn(5, 3, generator=g, dtype=torch.float64), 0, 2, "5 states, 3 actions"),
        case(torch.tensor([[1000.0, 999.0, 0.0], [0.0, 1.0, 2.0]], dtype=torch.float64), 0, 1,
             "large logits: exp(1000) overflows, use torch.softmax (or subtract the max)"),
        case(torch.randn(4, 2, generator=g), 3, 1, "float32 logits: return float32"),
    ]
