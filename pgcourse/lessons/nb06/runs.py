r"""Notebook 06, sections 10–11: GRPO on the tiny transformer, and the KL penalty's β measured.

Each run starts from the lesson's SFT model (:func:`.model.sft_policy`) and is cached in the process
(the notebook and ``python -m pgcourse figures`` share it); callers get copies.
"""
from __future__ import annotations

import copy
import functools
import math
from dataclasses import dataclass
from typing import Sequence

import torch

from ...device import torch_threads
from ...grpo import GRPOConfig, GRPOHistory, answer_probability, train
from ...stats import difference_test, mean_se
from .model import eval_prompts, lesson_task, sft_policy

__all__ = ["MAIN", "BETA", "BETAS", "BETA_SEEDS", "N_BETA_EVAL", "Run", "main_run", "lift", "step_mean", "BetaRun",
           "beta_runs", "beta_table", "beta_difference"]

#: the main run: 80 steps of 16 prompts × 8 completions, two gradient steps per batch (the clip is active)
MAIN = GRPOConfig(steps=80, prompts_per_step=16, group_size=8, epochs=2, lr=1e-3, beta=0.04, eval_every=10)
#: the β sweep: short runs (20 steps of 16 prompts × 4 completions, one gradient step per batch), 5 seeds per β
BETA = GRPOConfig(steps=20, prompts_per_step=16, group_size=4, epochs=1, lr=1.5e-3, eval_every=20)
BETAS = (0.0, 0.04, 0.2)
BETA_SEEDS = (0, 1, 2, 3, 4)
N_BETA_EVAL = 256


@dataclass
class Run:
    """A trained policy, its history and its configuration."""

    policy: torch.nn.Module
    hist: GRPOHistory
    config: GRPOConfig


@functools.lru_cache(maxsize=4)
def _main_run(seed: int) -> Run:
    policy = sft_policy()
    hist = train(policy, lesson_task(), MAIN, eval_prompts=eval_prompts(), seed=seed)
    return Run(policy, hist, MAIN)


def main_run(seed: int = 0) -> Run:
    """GRPO with :data:`MAIN` from the SFT model (a copy of the cached run)."""
    return copy.deepcopy(_main_run(seed))


@torch.no_grad()
def lift(before, after, prompts: torch.Tensor | None = None) -> dict[str, float]:
    r"""Paired over the evaluation prompts: :math:`d_x = \pi_\text{after}(y^\star\mid x) - \pi_\text{before}(y^\star\mid x)`;
    the mean lift, its SE over prompts and z (0 under "no change")."""
    task = lesson_task()
    prompts = eval_prompts(task) if prompts is None else prompts
    d = answer_probability(after, task, prompts) - answer_probability(before, task, prompts)
    m, se = mean_se(d)
    return {"before": float(answer_probability(before, task, prompts).mean()), "lift": float(m), "se": float(se),
            "z": float(m / se), "n": len(d)}


def step_mean(values: Sequence[float], skip: int = 0) -> dict[str, float]:
    """The mean of a per-step quantity over steps ``skip``… and its SE (steps treated as independent draws)."""
    x = torch.tensor(list(values)[skip:], dtype=torch.float64)
    m, se = mean_se(x)
    return {"mean": float(m), "se": float(se), "z": float(m / se) if se > 0 else math.inf, "n": len(x)}


@dataclass
class BetaRun:
    beta: float
    seed: int
    hist: GRPOHistory
    kl: float            # mean per-token k3 to the reference over the last 10 steps
    accuracy: float      # pass@1 on 256 evaluation prompts at the end (exact)


@functools.lru_cache(maxsize=2)
@torch_threads(1)
def _beta_runs(betas: tuple, seeds: tuple) -> tuple:
    task = lesson_task()
    prompts = eval_prompts(task)[:N_BETA_EVAL]
    runs = []
    for beta in betas:
        for seed in seeds:
            hist = train(sft_policy(), task, BETA.replace(beta=beta), eval_prompts=prompts, seed=seed)
            runs.append(BetaRun(beta, seed, hist, sum(hist.kl_ref[-10:]) / 10, hist.eval_accuracy[-1]))
    return tuple(runs)


def beta_runs(betas: Sequence[float] = BETAS, seeds: Sequence[int] = BETA_SEEDS) -> list[BetaRun]:
    """:data:`BETA` once per β and seed (cached)."""
    return list(_beta_runs(tuple(betas), tuple(seeds)))


def beta_table(runs: Sequence[BetaRun]) -> list[dict]:
    """Per β: the mean over seeds (± SE) of the KL to the reference and of the final accuracy."""
    rows = []
    for beta in sorted({r.beta for r in runs}):
        mine = [r for r in runs if r.beta == beta]
        kl, kl_se = mean_se([r.kl for r in mine])
        acc, acc_se = mean_se([r.accuracy for r in mine])
        rows.append({"beta": beta, "kl": float(kl), "kl_se": float(kl_se), "accuracy": float(acc),
                     "accuracy_se": float(acc_se), "seeds": len(mine)})
    return rows


def beta_difference(runs: Sequence[BetaRun], low: float = 0.0, high: float = 0.2, what: str = "kl"):
    """``what`` ("kl" or "accuracy") with β = ``low`` against β = ``high``, over seeds
    (:func:`pgcourse.stats.difference_test`: z ≈ N(0, 1) under "β changes nothing")."""
    return difference_test([getattr(r, what) for r in runs if r.beta == low],
                           [getattr(r, what) for r in runs if r.beta == high])
