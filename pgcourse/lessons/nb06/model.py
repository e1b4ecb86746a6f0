r"""Notebook 06, sections 1–6 and 8: the task, the tiny transformer, sampling with temperature, group
advantages and gradient accumulation, measured.

The lesson's model is :func:`pgcourse.grpo.pretrained_policy`: a :class:`pgcourse.transformer.TinyTransformer`
(d = 64, 2 layers) taught to sort 1–5 digits (:class:`pgcourse.digitsort.DigitSort`) by 40 steps of SFT
(partly right).
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Sequence

import torch

from ...device import torch_threads
from ...digitsort import DigitSort
from ...grpo import (GRPOConfig, Rollout, evaluate, group_advantages, grpo_loss, make_policy, microbatch_step,
                     pretrained_policy, rollout)
from ...stats import mean_se
from ...tinylm import completion_logp, completion_logp_entropy, sample

__all__ = ["N_EVAL", "lesson_task", "eval_prompts", "sft_policy", "random_policy", "causal_check", "TemperatureRow",
           "temperature_table", "advantage_table", "lesson_rollout", "accumulation_errors"]

N_EVAL = 512


def lesson_task() -> DigitSort:
    """Sort 1 to 5 digits; completions have 3 spare slots (a wrong answer may be longer than any right one)."""
    return DigitSort(min_len=1, max_len=5, extra=3)


def eval_prompts(task: DigitSort | None = None) -> torch.Tensor:
    """The 512 fixed evaluation prompts (seed 2)."""
    return (task or lesson_task()).sample_prompts(N_EVAL, seed=2)


def sft_policy(seed: int = 0):
    """A fresh copy of the SFT model (trained once per process, then cached): what the notebook trains."""
    return pretrained_policy(lesson_task(), seed=seed)


# ---- the transformer's causal mask ---------------------------------------------------------------

@torch.no_grad()
def causal_check(model, length: int = 14, rows: int = 16, seed: int = 0) -> dict[str, float]:
    """Change the token at each position j of random sequences: the largest change of a logit at a position
    before j (``past``, 0 when the mask works) and at position j itself (``present``)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, model.vocab_size, (rows, length), generator=g)
    base = model(x)
    past = present = 0.0
    for j in range(length):
        y = x.clone()
        y[:, j] = (y[:, j] + torch.randint(1, model.vocab_size, (rows,), generator=g)) % model.vocab_size
        out = model(y)
        if j > 0:
            past = max(past, float((out[:, :j] - base[:, :j]).abs().max()))
        present = max(present, float((out[:, j] - base[:, j]).abs().max()))
    return {"past": past, "present": present}


# ---- sampling with temperature ------------------------------------------------------------------

@dataclass
class TemperatureRow:
    temperature: float
    pass_at_1: float      # exact: mean over prompts of π_τ(y*|x)
    pass_at_k: float      # exact: mean of 1 − (1 − π_τ(y*|x))^k
    entropy: float        # mean next-token entropy at τ, over the valid tokens of sampled completions
    distinct: float       # mean number of distinct completions in a group of k
    distinct_se: float    # its standard error over the groups
    length: float         # mean completion length (tokens, EOS included)


@torch_threads(1)
@torch.no_grad()
def temperature_table(policy, temperatures: Sequence[float] = (0.5, 0.7, 1.0, 1.3), n_prompts: int = 128,
                      k: int = 8, seed: int = 0) -> list[TemperatureRow]:
    """pass@1, pass@k (exact, on the evaluation prompts), entropy, distinct answers per group and length at
    each sampling temperature."""
    task = lesson_task()
    ev = eval_prompts(task)
    prompts = task.sample_prompts(n_prompts, seed=seed + 100).repeat_interleave(k, 0)
    rows = []
    for i, tau in enumerate(temperatures):
        e = evaluate(policy, task, ev, temperature=tau, k=k)
        out = sample(policy, prompts, task.completion_len, task.eos, task.pad, seed=seed + i, temperature=tau)
        _, ent = completion_logp_entropy(policy, prompts, out.tokens, tau)
        groups = out.tokens.view(n_prompts, k, -1)
        distinct, distinct_se = mean_se([float(len({tuple(r) for r in grp.tolist()})) for grp in groups])
        rows.append(TemperatureRow(tau, e["accuracy"], e["pass_at_k"], float(ent[out.mask].mean()), float(distinct),
                                   float(distinct_se), float(out.lengths.float().mean())))
    return rows


# ---- group advantages ---------------------------------------------------------------------------

def advantage_table(group_size: int = 8, eps: float = 1e-4) -> list[tuple[int, float, float, float]]:
    """For a 0/1-reward group of ``group_size`` with k correct (k = 0..G): (k, A of a correct one, A of a
    wrong one, Σ|A| over the group), from :func:`pgcourse.grpo.group_advantages`."""
    rows = []
    for k in range(group_size + 1):
        r = torch.zeros(1, group_size, dtype=torch.float64)
        r[0, :k] = 1.0
        a = group_advantages(r, eps=eps)[0]
        rows.append((k, float(a[0]) if k > 0 else math.nan, float(a[-1]) if k < group_size else math.nan,
                     float(a.abs().sum())))
    return rows


@torch_threads(1)
def lesson_rollout(policy, prompts_per_step: int = 8, group_size: int = 8, temperature: float = 1.0,
                   seed: int = 0, **changes) -> Rollout:
    """One GRPO batch from ``policy`` (its own frozen copy as the reference): what a training step sees."""
    config = GRPOConfig(prompts_per_step=prompts_per_step, group_size=group_size, temperature=temperature, **changes)
    ref = copy.deepcopy(policy).requires_grad_(False)
    return rollout(policy, ref, lesson_task(), config, torch.Generator().manual_seed(seed))


# ---- gradient accumulation ----------------------------------------------------------------------

@torch_threads(1)
def accumulation_errors(policy, batch: Rollout, sizes: Sequence[int] = (1, 5, 24, 48),
                        loss_types: Sequence[str] = ("grpo", "bnpo", "dr_grpo")) -> dict[str, dict[str, float]]:
    r"""For each loss type, the relative error :math:`\|g_\text{acc} - g\|/\|g\|` of the gradient accumulated in
    microbatches against the full batch's gradient :math:`g`: ``exact`` (each microbatch's share,
    :func:`pgcourse.grpo.microbatch_step`, worst over ``sizes``) and ``naive`` (each microbatch's own loss
    divided by the number of microbatches, worst over ``sizes``)."""
    params = list(policy.parameters())
    out = {}
    for lt in loss_types:
        logp = completion_logp(policy, batch.prompts, batch.completions)
        full = torch.autograd.grad(grpo_loss(logp, batch.old_logp, batch.ref_logp, batch.advantages, batch.mask,
                                             loss_type=lt)[0], params)
        norm = torch.sqrt(sum((g ** 2).sum() for g in full))
        exact = naive = 0.0
        for size in sizes:
            policy.zero_grad()
            microbatch_step(policy, batch, size, loss_type=lt)
            exact = max(exact, _rel(params, full, norm))
            policy.zero_grad()
            starts = range(0, len(batch), size)
            for s in starts:
                mb = batch.rows(slice(s, s + size))
                lp = completion_logp(policy, mb.prompts, mb.completions)
                (grpo_loss(lp, mb.old_logp, mb.ref_logp, mb.advantages, mb.mask, loss_type=lt)[0] / len(starts)).backward()
            naive = max(naive, _rel(params, full, norm))
        policy.zero_grad()
        out[lt] = {"exact": exact, "naive": naive}
    return out


def _rel(params, full, norm) -> float:
    return float(torch.sqrt(sum(((p.grad - g) ** 2).sum() for p, g in zip(params, full))) / norm)


def random_policy(seed: int = 0):
    """An untrained :class:`TinyTransformer` for the lesson's task."""
    return make_policy(lesson_task(), seed=seed)
