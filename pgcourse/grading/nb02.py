r"""Exercises of notebook 02 (reward-to-go): the cases and their expected answers.

Every expected answer is computed by the package's reference code:
:func:`pgcourse.returns.reward_to_go` for the two reward-to-go exercises and
:func:`pgcourse.variance.summarize` for the variance ratio.
"""
from __future__ import annotations

import torch

from ..returns import reward_to_go
from ..variance import summarize
from . import Case, derive, exercise


def variance_ratio_reference(samples_full: torch.Tensor, samples_rtg: torch.Tensor) -> float:
    r""":math:`\operatorname{tr}\operatorname{Var}[\hat g_{\text{full}}] / \operatorname{tr}\operatorname{Var}[\hat g_{\text{rtg}}]`
    from two tables of batch estimates, each shaped (n_batches, ...), with the unbiased (n − 1) variance."""
    return summarize(samples_full, samples_full.mean(0)).variance / summarize(samples_rtg, samples_rtg.mean(0)).variance


def _t(values, dtype=torch.float32) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype)


@exercise("02.reward_to_go_loop")
def _loop_cases(gen: torch.Generator) -> list[Case]:
    gen = derive(gen, 2)
    rnd = torch.randn(12, generator=gen, dtype=torch.float64)
    cases = [
        (_t([1.0, 1.0, 1.0]), 1.0, "three rewards of 1, γ = 1"),
        (_t([0.0, 0.0, 1.0]), 0.5, "a single reward at the end, γ = 0.5"),
        (_t([2.0]), 0.9, "an episode of one step"),
        (_t([1.0, -2.0, 3.0, -4.0]), 0.9, "negative rewards"),
        (_t([5.0, 1.0, 2.0]), 0.0, "γ = 0: each step keeps only its own reward"),
        (rnd, 0.99, "random float64 rewards, γ = 0.99"),
    ]
    return [Case((r, g), expected=reward_to_go(r, g), note=note) for r, g, note in cases]


@exercise("02.reward_to_go_vectorized")
def _vectorized_cases(gen: torch.Generator) -> list[Case]:
    gen = derive(gen, 3)
    B, T = 4, 9
    batch = torch.randn(B, T, generator=gen)
    batch_dones = torch.rand(B, T, generator=gen) < 0.25
    batch_dones[:, -1] = True
    long_r = torch.randn(3, 40, generator=gen, dtype=torch.float64)
    long_d = torch.rand(3, 40, generator=gen) < 0.1
    cases = [
        (_t([1.0, 1.0, 1.0]), 1.0, torch.tensor([False, False, False]), "one episode, no boundary, γ = 1"),
        (_t([1.0, 1.0, 1.0, 1.0, 1.0]), 1.0, torch.tensor([False, True, False, False, True]),
         "two episodes in one row: the second must not leak into the first"),
        (_t([1.0, 2.0, 3.0, 4.0]), 0.5, torch.tensor([False, False, False, True]),
         "done at the last step, γ = 0.5"),
        (_t([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]), 0.9, torch.tensor([True, False, True, True, False, False]),
         "episodes of length 1, 2, 1 and an unfinished one"),
        (batch, 0.9, batch_dones, "a (4, 9) batch, boundaries different in every row"),
        (long_r, 0.99, long_d, "a (3, 40) float64 batch"),
        (batch.reshape(2, 2, T), 1.0, batch_dones.reshape(2, 2, T), "a (2, 2, 9) batch: time is the last axis"),
    ]
    return [Case((r, g, d), expected=reward_to_go(r, g, d), note=note) for r, g, d, note in cases]


@exercise("02.variance_ratio", rtol=1e-6, atol=0.0)
def _ratio_cases(gen: torch.Generator) -> list[Case]:
    gen = derive(gen, 4)
    a = torch.randn(5, 2, 2, generator=gen, dtype=torch.float64) * 3 + 1
    b = torch.randn(8, 2, 2, generator=gen, dtype=torch.float64)
    c = torch.randn(200, 16, 4, generator=gen, dtype=torch.float64)
    d = c * torch.linspace(0.2, 1.0, 4, dtype=torch.float64)
    e = torch.randn(50, 3, generator=gen, dtype=torch.float64) + 100.0
    cases = [
        (a, b, "(n, S, A) tables with different numbers of batches: use the unbiased (n − 1) variance"),
        (c, d, "(200, 16, 4): sum the variances of all S·A coordinates, then divide"),
        (c, c, "the same table twice: ratio 1"),
        (e, e[:, [2, 0, 1]] * 2, "(n, d) tables with a large mean: the variance is about the spread, not the mean"),
    ]
    return [Case((x, y), expected=variance_ratio_reference(x, y), note=note) for x, y, note in cases]
