r"""Notebook 07's runs: the task, the starting policy, the small GRPO budget, and seeded training.

Every experiment of the notebook starts from the same SFT'd :class:`pgcourse.transformer.TinyTransformer`
(:func:`pgcourse.grpo.pretrained_policy`, partly right at sorting 1–5 digits) and trains it for
:data:`RUN` 's few steps, one run per seed; what changes between experiments is one field of the
:class:`pgcourse.grpo.GRPOConfig` (or the reward). The runs are tiny so that the whole notebook runs in
about a minute; every effect claimed from them is tested against their spread over seeds.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn

from ...digitsort import DigitSort
from ...grpo import GRPOConfig, GRPOHistory, pretrained_policy, train
from ...stats import mean_se

SEEDS = (0, 1, 2)
#: the budget of every run: 15 steps of 8 prompts × 8 completions, two gradient steps per batch
RUN = GRPOConfig(steps=15, prompts_per_step=8, group_size=8, epochs=2, lr=1e-3, eval_every=15)
N_EVAL = 64


def lesson_task() -> DigitSort:
    """Sort 1 to 5 digits; 3 spare slots, so a wrong answer can be longer than the right one."""
    return DigitSort(min_len=1, max_len=5, extra=3)


def eval_prompts(task: DigitSort | None = None) -> torch.Tensor:
    """The fixed evaluation prompts (seed 7): pass@1 and pass@k are exact on them."""
    return (task or lesson_task()).sample_prompts(N_EVAL, seed=7)


def start_policy(task: DigitSort | None = None) -> nn.Module:
    """A fresh copy of the SFT'd starting policy (the reference of every run)."""
    return pretrained_policy(task or lesson_task())


@dataclass
class Run:
    """One training run: its config, seed, history and the trained policy."""

    name: str
    seed: int
    config: GRPOConfig
    history: GRPOHistory
    policy: nn.Module


def train_runs(name: str, config: GRPOConfig = RUN, seeds: Sequence[int] = SEEDS,
               reward_fn: Callable | None = None, task: DigitSort | None = None) -> list[Run]:
    """Train a fresh starting policy with ``config`` once per seed (``reward_fn`` replaces the training reward)."""
    task = task or lesson_task()
    ev = eval_prompts(task)
    out = []
    for s in seeds:
        policy = start_policy(task)
        hist = train(policy, task, config, eval_prompts=ev, reward_fn=reward_fn, seed=int(s))
        out.append(Run(name, int(s), config, hist, policy))
    return out


def window(values: Sequence[float], part: str, width: int = 5) -> float:
    """The mean of the first or last ``width`` finite values of a per-step series (``part`` "start"/"end")."""
    xs = list(values)[:width] if part == "start" else list(values)[-width:]
    xs = [x for x in xs if not math.isnan(x)]
    return sum(xs) / len(xs) if xs else math.nan


def over_seeds(runs: Sequence[Run], fn: Callable[[Run], float]) -> tuple[float, float]:
    """Mean and standard error over the runs (seeds) of ``fn(run)``."""
    m, se = mean_se(torch.tensor([fn(r) for r in runs], dtype=torch.float64))
    return float(m), float(se)


def cpu_seconds(runs: Sequence[Run]) -> float:
    """The CPU seconds the runs' training took (their own count, summed)."""
    return sum(r.history.cpu_seconds[-1] for r in runs)
