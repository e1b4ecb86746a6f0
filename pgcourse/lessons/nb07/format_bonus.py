r"""Notebook 07, the format-bonus collapse, correctly explained.

REINFORCE without a baseline (:math:`A = r`) with a +1 bonus for a well-formed answer, under
``loss_type="grpo"``, weights each completion's score :math:`\nabla\log\pi(y)` by :math:`r(y)/|y|`:

.. math:: \mathbb E\Big[\frac{r(y)}{|y|}\nabla\log\pi(y)\Big] = \nabla\,\mathbb E_\pi\Big[\frac{r(y)}{|y|}\Big]

(:math:`r/|y|` does not depend on θ), so the update ascends :math:`\mathbb E[r/|y|]`, not
:math:`\mathbb E[r]`. The empty answer ``.`` (one token, well formed, wrong) is worth
:math:`1/1`; a right answer of n digits :math:`2/(n+1)`: for :math:`n \ge 2` the empty answer wins. A
constant part c of the reward enters as :math:`c\,\nabla\mathbb E[1/|y|]`: notebook 3's
action-dependent "baseline", here :math:`b(y) = -c/|y|`. The fixes: a baseline (the bonus cancels in
:math:`r - b`), or ``dr_grpo`` (a constant weight: :math:`c\,\mathbb E[\nabla\log\pi] = 0`).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from ...tinylm import sequence_logp
from .length import Direction
from .runs import RUN, SEEDS, Run, eval_prompts, lesson_task, over_seeds, start_policy, train_runs

BONUS = 1.0
#: the bonus runs take twice :data:`RUN`'s learning rate, so that the collapse shows within its 15 steps
BONUS_RUN = RUN.replace(lr=2 * RUN.lr)
#: the three runs: the collapse, and its two fixes
CONFIGS = {"A = r (no baseline), grpo": dict(baseline="none", scale_rewards=False, loss_type="grpo"),
           "A = r (no baseline), dr_grpo": dict(baseline="none", scale_rewards=False, loss_type="dr_grpo"),
           "GRPO (group mean, std), grpo": dict(baseline="group_mean", scale_rewards=True, loss_type="grpo")}


def objective_rows(digits: Sequence[int] = (1, 2, 3, 4, 5), bonus: float = BONUS) -> list[dict]:
    r"""Per prompt length n: the reward and length of the right answer (:math:`1 + b`, n + 1 tokens) and of the
    empty answer (:math:`b`, 1 token), and what each is worth to the update: :math:`r/|y|` under "grpo"
    (whose optimum is the larger), :math:`r/T` under "dr_grpo" (T the padded length: the same order as r)."""
    T = lesson_task().completion_len
    rows = []
    for n in digits:
        right, empty = 1.0 + bonus, bonus
        rows.append({"digits": n, "right_r": right, "right_len": n + 1, "empty_r": empty, "empty_len": 1,
                     "right_grpo": right / (n + 1), "empty_grpo": empty / 1, "right_dr": right / T, "empty_dr": empty / T,
                     "grpo_prefers": "empty" if empty > right / (n + 1) else ("tie" if empty == right / (n + 1) else "right")})
    return rows


def format_objective(rows: Sequence[dict]) -> str:
    head = (f"{'digits n':>8} {'r(right)':>9} {'|right|':>8} {'r(empty)':>9} {'|empty|':>8}"
            f" {'grpo: right':>12} {'grpo: empty':>12} {'dr_grpo: right':>15} {'dr_grpo: empty':>15} {'grpo prefers':>13}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['digits']:>8} {r['right_r']:>9.2f} {r['right_len']:>8} {r['empty_r']:>9.2f} {r['empty_len']:>8}"
                     f" {r['right_grpo']:>12.3f} {r['empty_grpo']:>12.3f} {r['right_dr']:>15.3f} {r['empty_dr']:>15.3f}"
                     f" {r['grpo_prefers']:>13}")
    return "\n".join(lines)


@torch.no_grad()
def empty_probability(policy: nn.Module, prompts: torch.Tensor, task=None) -> torch.Tensor:
    r"""Exactly, per prompt, :math:`\pi(\texttt{.}\mid x)`: the probability that a sampled answer is the empty one."""
    task = task or lesson_task()
    empty = torch.full((prompts.shape[0], task.completion_len), task.pad, dtype=torch.long, device=prompts.device)
    empty[:, 0] = task.eos
    return sequence_logp(policy, prompts, empty, task.eos).exp()


def bonus_runs(seeds: Sequence[int] = SEEDS, run=BONUS_RUN) -> dict[str, list[Run]]:
    """The runs with the +1 format bonus: A = r under "grpo" (the collapse) and its two fixes."""
    return {name: train_runs(name, run.replace(format_bonus=BONUS, **ch), seeds) for name, ch in CONFIGS.items()}


def bonus_table(runs: dict[str, list[Run]]) -> list[dict]:
    """Per config (mean ± SE over seeds): pass@1 before and after, the exact probability of the empty answer
    after (:func:`empty_probability` on the evaluation prompts), and the mean sampled length in the last steps."""
    task, ev = lesson_task(), eval_prompts()
    p0 = float(empty_probability(start_policy(task), ev, task).mean())
    rows = []
    for name, rs in runs.items():
        rows.append({"config": name, "pass1_start": over_seeds(rs, lambda r: r.history.eval_accuracy[0]),
                     "pass1_end": over_seeds(rs, lambda r: r.history.eval_accuracy[-1]),
                     "empty_start": (p0, 0.0),
                     "empty_end": over_seeds(rs, lambda r: float(empty_probability(r.policy, ev, task).mean())),
                     "empty_log_ratio": over_seeds(rs, lambda r: math.log(float(empty_probability(r.policy, ev, task)
                                                                                   .mean()) / p0)),
                     "length_end": over_seeds(rs, lambda r: sum(r.history.length[-5:]) / len(r.history.length[-5:]))})
    return rows


def format_bonus_table(rows: Sequence[dict]) -> str:
    pm = lambda v: f"{v[0]:.3f} ± {v[1]:.3f}"  # noqa: E731
    head = f"{'config (+1 format bonus)':<30} {'pass@1 start':>15} {'pass@1 end':>15} {'P(empty) start':>15} {'P(empty) end':>15} {'length end':>15}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['config']:<30} {pm(r['pass1_start']):>15} {pm(r['pass1_end']):>15} {r['empty_start'][0]:>15.3f}"
                     f" {pm(r['empty_end']):>15} {pm(r['length_end']):>15}")
    return "\n".join(lines)


#: per-update directions of the bonus experiment, for :func:`pgcourse.lessons.nb07.length.length_drift`: the
#: three runs' updates, and a reward that is the constant 1 alone (what the bonus adds) under each weighting
DIRECTIONS = {"A = r + bonus, grpo": Direction("grpo", "none", False, BONUS),
              "A = r + bonus, dr_grpo": Direction("dr_grpo", "none", False, BONUS),
              "GRPO + bonus, grpo": Direction("grpo", "group_mean", True, BONUS),
              "A = 1 (a constant), grpo": Direction("grpo", "none", False, 0.0, 0.0, 1.0),
              "A = 1 (a constant), dr_grpo": Direction("dr_grpo", "none", False, 0.0, 0.0, 1.0)}
