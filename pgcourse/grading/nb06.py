"""Exercises of notebook 06 (GRPO); expected outputs come from :mod:`pgcourse.grpo`."""
from __future__ import annotations

import torch

from ..grpo import aggregate_tokens, group_advantages, kl_k3
from . import Case, derive, exercise




@exercise("06.group_advantages")
def group_advantages_cases(gen: torch.Generator) -> list[Case]:
    binary = (torch.rand(4, 8, generator=derive(gen, 0)) < 0.4).float()
    cases = [
        (torch.tensor([[1.0, 0.0, 0.0, 1.0]]), {}, "one group of 4: mean 0.5, std (Bessel) sqrt(1/3)"),
        (torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]), {}, "all equal in a group: advantages 0, not NaN"),
        (torch.tensor([[0.0, 0.0, 0.0, 1.0], [1.0, 0.0, 1.0, 1.0]]), {}, "two prompts: each group on its own"),
        (binary, {}, "4 prompts × 8 completions, 0/1 rewards"),
        (torch.randn(3, 5, generator=derive(gen, 1), dtype=torch.float64), {}, "real-valued rewards, float64"),
        (torch.tensor([[2.0, 0.0]]), {"eps": 0.0}, "eps=0: exactly (r − mean) / std"),
        (binary, {"scale": False}, "scale=False: only the group mean is subtracted"),
        (torch.tensor([[3.0, 1.0, 2.0]]), {"eps": 0.5}, "eps is added to the std"),
    ]
    return [Case((r,), kw, expected=group_advantages(r, **kw), note=note) for r, kw, note in cases]


@exercise("06.k3")
def k3_cases(gen: torch.Generator) -> list[Case]:
    lp = torch.log_softmax(torch.randn(10, generator=derive(gen, 2), dtype=torch.float64), 0)
    ref = torch.log_softmax(torch.randn(10, generator=derive(gen, 3), dtype=torch.float64), 0)
    cases = [
        (torch.tensor([-1.0, -2.0]), torch.tensor([-1.0, -2.0]), "the same log-probs: k3 = 0"),
        (torch.tensor([-1.0]), torch.tensor([-1.0 + 0.6931471805599453]), "the reference twice as likely: r = 2, k3 = 1 − log 2"),
        (torch.tensor([-0.5]), torch.tensor([-3.0]), "the reference much less likely: r small, k3 ≈ −log r − 1"),
        (lp, ref, "ten tokens, float64"),
        (torch.randn(3, 4, generator=derive(gen, 4)) - 2, torch.randn(3, 4, generator=derive(gen, 5)) - 2, "shaped (B, T)"),
    ]
    return [Case((a, b), expected=kl_k3(a, b), note=note) for a, b, note in cases]


@exercise("06.aggregate_tokens")
def aggregate_cases(gen: torch.Generator) -> list[Case]:
    v = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    m = torch.tensor([[True, True, True], [True, False, False]])
    nan_v = v.clone()
    nan_v[~m] = float("nan")
    big = torch.randn(6, 7, generator=derive(gen, 6))
    big_m = torch.arange(7)[None, :] < torch.tensor([7, 1, 3, 5, 2, 6])[:, None]
    cases = []
    for lt in ("grpo", "bnpo", "dr_grpo"):
        cases.append(((v, m, lt), f'loss_type="{lt}": rows of 3 and 1 valid tokens'))
    cases += [
        ((nan_v, m, "grpo"), "NaN at masked tokens must not leak into the loss"),
        ((nan_v, m, "bnpo"), "NaN at masked tokens, bnpo"),
        ((v, torch.ones(2, 3, dtype=torch.bool), "grpo"), "every token valid"),
        ((big, big_m, "grpo"), "6 sequences of lengths 7, 1, 3, 5, 2, 6: grpo"),
        ((big, big_m, "bnpo"), "the same, bnpo"),
        ((big, big_m, "dr_grpo"), "the same, dr_grpo: divide by 6 × 7"),
    ]
    return [Case(args, expected=aggregate_tokens(*args), note=note) for args, note in cases]
