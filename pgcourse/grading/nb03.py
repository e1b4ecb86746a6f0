"""Exercises of notebook 03 (baselines); expected outputs come from :mod:`pgcourse.baselines`."""
from __future__ import annotations

import torch

from ..baselines import batch_mean_baseline, ema, optimal_constant_baseline
from . import Case, derive, exercise




def _returns(gen: torch.Generator, seed: int, *shape: int, dtype=torch.float64) -> torch.Tensor:
    return (torch.randn(*shape, generator=derive(gen, seed), dtype=torch.float64) * 3 + 5).round(decimals=2).to(dtype)


@exercise("03.batch_mean_baseline")
def batch_mean_cases(gen: torch.Generator) -> list[Case]:
    cases = [
        (torch.tensor([1.0, 2.0, 6.0]), "three returns: every episode gets their mean, 3.0"),
        (_returns(gen, 0, 8), "a batch of 8 episode returns"),
        (torch.tensor([4.5]), "a batch of one episode: the baseline is its own return"),
        (_returns(gen, 1, 5, 4), "returns shaped (N, T): the mean over episodes (axis 0) at each time step"),
        (_returns(gen, 2, 6, dtype=torch.float32), "float32 returns"),
    ]
    return [Case((x,), expected=batch_mean_baseline(x), note=note) for x, note in cases]


@exercise("03.leave_one_out_baseline")
def leave_one_out_cases(gen: torch.Generator) -> list[Case]:
    cases = [
        (torch.tensor([1.0, 2.0, 6.0]), "three returns: episode 0 gets (2 + 6) / 2 = 4"),
        (torch.tensor([3.0, 7.0]), "two episodes: each gets the other's return"),
        (_returns(gen, 3, 8), "a batch of 8 episode returns"),
        (_returns(gen, 4, 5, 4), "returns shaped (N, T): leave episode i out at each time step"),
        (torch.full((4,), 2.5), "equal returns: the baseline equals them"),
    ]
    return [Case((x,), expected=batch_mean_baseline(x, leave_one_out=True), note=note) for x, note in cases]


@exercise("03.moving_average")
def moving_average_cases(gen: torch.Generator) -> list[Case]:
    x = _returns(gen, 5, 7)
    cases = [
        (torch.tensor([1.0, 1.0, 1.0]), 0.5, 0.0, "entry k uses items before k only: [0, 0.5, 0.75]"),
        (x, 0.9, 0.0, "decay 0.9, starting from 0"),
        (x, 0.0, 0.0, "decay 0: the previous item (the first entry is init)"),
        (x, 1.0, 3.0, "decay 1: never moves from init"),
        (x, 0.5, 4.0, "init 4.0"),
        (torch.tensor([10.0]), 0.9, 2.0, "one item: its baseline is init"),
    ]
    return [Case((s,), {"decay": d, "init": i}, expected=ema(s, d, i), note=note) for s, d, i, note in cases]


@exercise("03.optimal_constant_baseline")
def optimal_constant_cases(gen: torch.Generator) -> list[Case]:
    sq = torch.rand(50, generator=derive(gen, 6), dtype=torch.float64) * 4
    R = _returns(gen, 7, 50)
    cases = [
        (torch.ones(4), torch.tensor([1.0, 2.0, 3.0, 6.0]), "equal score norms: b* is the mean return, 3.0"),
        (torch.tensor([0.0, 1.0, 0.0]), torch.tensor([5.0, -2.0, 7.0]), "only episode 1 has a score: b* = its return"),
        (torch.tensor([1.0, 3.0]), torch.tensor([0.0, 4.0]), "weights 1 and 3: b* = (0 + 12) / 4 = 3"),
        (sq, R, "50 episodes"),
        (sq[:10] * 100, R[:10], "scaling every score norm leaves b* unchanged"),
    ]
    return [Case((s, r), expected=float(optimal_constant_baseline(s, r)), note=note) for s, r, note in cases]
