r"""Notebook 07, length: what the loss normalizations do to the length of the answers.

The GRPO loss is :math:`\sum_{i,t} w_{it}\,\ell_{it}` with token weights (:func:`pgcourse.grpo.token_weights`)
:math:`1/(B|y_i|)` ("grpo"), :math:`1/\sum_j|y_j|` ("bnpo") or :math:`1/(BT)` ("dr_grpo"). With "grpo"
a completion's advantage is spread over its own tokens, so per token a long wrong answer is pushed
down less than a short one, and a short right answer pushed up more than a long one.

Two measurements: over training (:func:`length_table`, the mean length of wrong and of correct answers
in the first and the last steps, per loss type, with and without std scaling), and per update
(:func:`length_drift`): on the SAME sampled batch, the direction of each loss type's first Adam step
(unit length), and the derivative of the expected length of the wrong (and of the correct) answers along it,

.. math:: D = \frac{d}{d\eta}\,\mathbb E_{\theta+\eta d}\big[\,|y| \;\big|\; \text{wrong}\,\big]
          = \mathbb E_\theta\Big[\tfrac{(|y| - \bar\ell_w)\,[y\ \text{wrong}]}{P(\text{wrong})}\;\nabla_\theta\log\pi_\theta(y)\cdot d\Big],

estimated by the score function on an independent batch (in chunks, for a standard error). Paired:
every loss type is measured on the same samples, so their differences are precise.
"""
from __future__ import annotations

import copy
import math
from dataclasses import replace
from typing import NamedTuple, Sequence

import torch
from torch import nn

from ...device import generator as make_generator
from ...device import torch_threads
from ...grpo import LOSS_TYPES, Rollout, advantages_from_rewards, microbatch_step, rollout, token_weights
from ...tinylm import sample, sequence_logp
from .runs import RUN, SEEDS, Run, lesson_task, over_seeds, train_runs, window

CONFIGS = tuple((lt, sc) for lt in LOSS_TYPES for sc in (True, False))


class Direction(NamedTuple):
    """An update direction to measure: the loss type and the advantages, from the training reward
    ``verifier·[correct] + bonus·[well formed] + const`` with a baseline and optional std scaling."""

    loss_type: str
    baseline: str = "group_mean"
    scale: bool = True
    bonus: float = 0.0
    verifier: float = 1.0
    const: float = 0.0


def config_name(loss_type: str, scale: bool) -> str:
    return f"{loss_type}{'' if scale else ', no std'}"


# ---- the length weights ---------------------------------------------------------------------------------

def weight_rows(lengths: Sequence[int] = (1, 2, 4, 6, 9), width: int | None = None) -> list[dict]:
    """For one batch of completions of ``lengths`` tokens (padded to ``width``): each completion's per-token
    weight and total weight under each loss type (from :func:`pgcourse.grpo.token_weights`)."""
    width = max(lengths) if width is None else width
    mask = torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]
    w = {lt: token_weights(mask, lt, torch.float64) for lt in LOSS_TYPES}
    return [{"length": n, **{f"{lt}_token": float(w[lt][i, 0]) for lt in LOSS_TYPES},
             **{f"{lt}_total": float(w[lt][i].sum()) for lt in LOSS_TYPES}} for i, n in enumerate(lengths)]


# ---- over training ---------------------------------------------------------------------------------------

def length_runs(seeds: Sequence[int] = SEEDS, run=RUN, configs=CONFIGS,
                reuse: dict | None = None) -> dict[tuple[str, bool], list[Run]]:
    """The runs of every (loss type, std scaling) config, one per seed (``reuse``: runs already made)."""
    reuse = reuse or {}
    return {c: reuse[c] if c in reuse else train_runs(config_name(*c), run.replace(loss_type=c[0], scale_rewards=c[1]),
                                                      seeds) for c in configs}


def wrong_changes(runs: Sequence[Run], width: int = 5) -> list[float]:
    """Per run (seed): the wrong answers' mean length in the last ``width`` steps minus in the first ``width``."""
    return [window(r.history.length_wrong, "end", width) - window(r.history.length_wrong, "start", width) for r in runs]


def length_table(runs: dict[tuple[str, bool], list[Run]], width: int = 5) -> list[dict]:
    """Per config: the mean (± SE over seeds) length of wrong and of correct sampled answers (EOS included)
    in the first and the last ``width`` steps, and the change of the wrong answers' length."""
    rows = []
    for (lt, sc), rs in runs.items():
        row = {"loss_type": lt, "scale": sc, "seeds": len(rs)}
        for kind in ("wrong", "correct"):
            for part in ("start", "end"):
                row[f"{kind}_{part}"] = over_seeds(rs, lambda r: window(getattr(r.history, f"length_{kind}"), part, width))
        row["wrong_change"] = over_seeds(rs, lambda r: wrong_changes([r], width)[0])
        row["accuracy_end"] = over_seeds(rs, lambda r: r.history.eval_accuracy[-1])
        rows.append(row)
    return rows


def format_length_table(rows: Sequence[dict]) -> str:
    pm = lambda v: f"{v[0]:5.2f} ± {v[1]:4.2f}"  # noqa: E731
    head = (f"{'loss type':<17} {'wrong: start':>14} {'wrong: end':>14} {'Δ wrong':>14} {'correct: start':>15}"
            f" {'correct: end':>14} {'pass@1 end':>13}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{config_name(r['loss_type'], r['scale']):<17} {pm(r['wrong_start']):>14} {pm(r['wrong_end']):>14}"
                     f" {pm(r['wrong_change']):>14} {pm(r['correct_start']):>15} {pm(r['correct_end']):>14}"
                     f" {pm(r['accuracy_end']):>13}")
    return "\n".join(lines)


# ---- per update, paired ------------------------------------------------------------------------------------

def update_direction(policy: nn.Module, batch: Rollout, loss_type: str, advantages: torch.Tensor,
                     optimizer: str = "adam") -> list[torch.Tensor]:
    """The unit-length direction of the first step on ``batch`` of the loss ``loss_type`` with ``advantages`` (no KL
    term; ρ = 1): ``"adam"``'s first step is :math:`-\\mathrm{sign}(\\nabla L)` per weight (its bias-corrected
    moments are g and g²), ``"sgd"``'s is :math:`-\\nabla L`."""
    policy.zero_grad()
    microbatch_step(policy, replace(batch, advantages=advantages), None, loss_type=loss_type, beta=0.0)
    d = [-p.grad.detach().double().clone() for p in policy.parameters()]
    if optimizer == "adam":
        d = [torch.sign(x) for x in d]
    elif optimizer != "sgd":
        raise ValueError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")
    norm = math.sqrt(sum(float((x ** 2).sum()) for x in d))
    policy.zero_grad()
    return [x / norm for x in d]


def score_gradients(policy: nn.Module, prompts: torch.Tensor, completions: torch.Tensor, eos: int,
                    targets: torch.Tensor, chunks: int) -> torch.Tensor:
    r"""Score-function estimates of :math:`\nabla_\theta\,\mathbb E[f]`, one per chunk of rows:
    :math:`\frac{1}{n}\sum_{j} f_j \nabla_\theta\log\pi_\theta(y_j\mid x_j)` with ``targets`` :math:`f_j` (centered),
    returned as a (chunks, n_params) tensor."""
    params = list(policy.parameters())
    out = []
    for rows in torch.arange(prompts.shape[0]).chunk(chunks):
        lp = sequence_logp(policy, prompts[rows], completions[rows], eos)
        grads = torch.autograd.grad((targets[rows].to(lp.dtype) * lp).mean(), params)
        out.append(torch.cat([x.flatten() for x in grads]).double())
    return torch.stack(out)


@torch_threads(1)
def length_drift(policy: nn.Module, task=None, seed: int = 0, advantages: dict | None = None, n_prompts: int = 32,
                 group_size: int = 8, n_measure: int = 1024, chunks: int = 8) -> dict[str, dict[str, torch.Tensor]]:
    r"""Per update direction (``advantages``: name -> :class:`Direction`; default every config of :data:`CONFIGS`), ``chunks`` independent estimates of the derivative of the expected length of
    the wrong answers (``"wrong"``), of the correct ones (``"correct"``) and of all (``"all"``) along it: one
    training batch of ``n_prompts`` × ``group_size`` and a measuring batch of ``n_measure`` samples, cut in
    ``chunks``, both drawn from ``policy`` with ``seed``. Every direction is measured on the same samples."""
    task = task or lesson_task()
    advantages = advantages or {config_name(lt, sc): Direction(lt, scale=sc) for lt, sc in CONFIGS}
    g = make_generator(seed)
    ref = copy.deepcopy(policy)
    batch = rollout(policy, ref, task, RUN.replace(prompts_per_step=n_prompts, group_size=group_size), g)
    prompts = task.sample_prompts(n_measure, seed=g)
    comps = sample(policy, prompts, task.completion_len, task.eos, task.pad, seed=g)
    ok = task.reward(prompts, comps.tokens).double() > 0.5
    length = comps.lengths.double()
    grads = {}
    for kind, sel in (("wrong", ~ok), ("correct", ok), ("all", torch.ones_like(ok))):
        w = sel.double()
        f = (length - (length * w).sum() / w.sum().clamp_min(1)) * w / w.mean().clamp_min(1e-12)
        grads[kind] = score_gradients(policy, prompts, comps.tokens, task.eos, f - f.mean(), chunks)
    out = {}
    for name, how in advantages.items():
        how = Direction(*how)
        r = how.verifier * batch.correct.double() + how.bonus * task.well_formed(batch.completions).double() + how.const
        adv = advantages_from_rewards(r.view(-1, group_size), how.baseline, how.scale).view(-1).to(batch.old_logp.dtype)
        d = torch.cat([x.flatten() for x in update_direction(policy, batch, how.loss_type, adv)])
        out[name] = {kind: h @ d for kind, h in grads.items()}
    return out


def drift_rows(policy: nn.Module, seeds: Sequence[int] = SEEDS, **kw) -> tuple[list[dict], dict]:
    """:func:`length_drift` over ``seeds`` (chunks pooled): per direction the mean ± SE of each derivative;
    and the pooled per-chunk estimates (for paired differences)."""
    per_seed = [length_drift(policy, seed=int(s), **kw) for s in seeds]
    pooled = {name: {kind: torch.cat([d[name][kind] for d in per_seed]) for kind in per_seed[0][name]}
              for name in per_seed[0]}
    rows = []
    for name, kinds in pooled.items():
        row = {"direction": name}
        for kind, x in kinds.items():
            row[kind] = (float(x.mean()), float(x.std() / math.sqrt(x.numel())))
        rows.append(row)
    return rows, pooled


def paired_difference(pooled: dict, a: str, b: str, kind: str = "wrong") -> tuple[float, float, float]:
    """Mean, SE and z of the per-chunk difference of two directions' derivatives (z ~ N(0, 1) if equal)."""
    d = pooled[a][kind] - pooled[b][kind]
    m, se = float(d.mean()), float(d.std() / math.sqrt(d.numel()))
    return m, se, m / se if se > 0 else math.inf


def format_drift(rows: Sequence[dict]) -> str:
    pm = lambda v: f"{v[0]:+7.3f} ± {v[1]:5.3f}"  # noqa: E731
    head = f"{'update direction':<26} {'d E[|y| | wrong]':>18} {'d E[|y| | correct]':>19} {'d E[|y|]':>18}"
    return "\n".join([head, "-" * len(head)] + [f"{r['direction']:<26} {pm(r['wrong']):>18} {pm(r['correct']):>19}"
                                                 f" {pm(r['all']):>18}" for r in rows])
