r"""The GRPO training loop: rollouts in groups, verifiable rewards, several loss steps per batch.

Each step: :func:`pgcourse.grpo.rollout` samples B prompts × G completions from the current policy
(which becomes :math:`\pi_{\text{old}}`) and turns their rewards into advantages; then ``epochs``
(μ) gradient steps on the same batch, each a :func:`pgcourse.grpo.microbatch_step`. In the first
epoch :math:`\rho = 1` exactly and the clip does nothing; from the second on the policy has moved
and the clip bites (``clip_fraction`` > 0, ``kl_old`` > 0).
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from ..device import generator as make_generator
from ..device import torch_threads
from ..tinylm import sample, sequence_logp
from ..validate import positive_int
from .config import GRPOConfig
from .rollout import rollout
from .step import microbatch_step


STEP_FIELDS = ("reward", "accuracy", "length", "length_correct", "length_wrong", "zero_variance", "samples",
               "entropy", "clip_fraction", "kl_old", "kl_ref", "loss", "seconds", "cpu_seconds")
EVAL_FIELDS = ("eval_steps", "eval_accuracy", "eval_pass_at_k", "eval_greedy_accuracy", "eval_accuracy_by_length")


@dataclass
class GRPOHistory:
    """What :func:`train` recorded, one entry per step in each of :data:`STEP_FIELDS`: ``reward`` (mean
    training reward), ``accuracy`` (fraction of the sampled completions the verifier accepts), ``length``,
    ``length_correct``, ``length_wrong`` (mean tokens, EOS included; NaN where there are none),
    ``zero_variance`` (fraction of groups with all-equal rewards), ``samples`` (completions drawn),
    ``entropy`` (mean next-token entropy at the sampling temperature, first epoch), ``clip_fraction``
    and ``kl_old`` (means over epochs 2..μ, where the policy has moved from π_old; 0 with one epoch),
    ``kl_ref`` (mean k3 to the reference, first epoch), ``loss`` (first epoch), ``seconds`` and
    ``cpu_seconds`` since the start. And one entry per evaluation in each of :data:`EVAL_FIELDS`
    (step 0 = before training; see :func:`evaluate`)."""

    reward: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    length: list[float] = field(default_factory=list)
    length_correct: list[float] = field(default_factory=list)
    length_wrong: list[float] = field(default_factory=list)
    zero_variance: list[float] = field(default_factory=list)
    samples: list[int] = field(default_factory=list)
    entropy: list[float] = field(default_factory=list)
    clip_fraction: list[float] = field(default_factory=list)
    kl_old: list[float] = field(default_factory=list)
    kl_ref: list[float] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)
    eval_steps: list[int] = field(default_factory=list)
    eval_accuracy: list[float] = field(default_factory=list)
    eval_pass_at_k: list[float] = field(default_factory=list)
    eval_greedy_accuracy: list[float] = field(default_factory=list)
    eval_accuracy_by_length: list[dict[int, float]] = field(default_factory=list)


@torch.no_grad()
def answer_probability(policy: nn.Module, task, prompts: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    r""":math:`\pi_\tau(y^\star(x)\mid x)` per prompt: the probability that a sampled answer is THE correct one."""
    return sequence_logp(policy, prompts, task.answers(prompts), task.eos, temperature).exp()


@torch.no_grad()
def evaluate(policy: nn.Module, task, prompts: torch.Tensor, temperature: float = 1.0, k: int = 8) -> dict:
    r"""Exact, no sampling noise (each prompt has one correct answer :math:`y^\star`, :math:`p_x = \pi_\tau(y^\star\mid x)`):
    ``accuracy`` = pass@1 = :math:`\frac1N\sum_x p_x`; ``pass_at_k`` = :math:`\frac1N\sum_x 1-(1-p_x)^k` (one of k
    samples is right); ``accuracy_by_length`` the accuracy of the prompts of each number of digits. And
    ``greedy_accuracy``: the fraction of prompts whose arg-max answer is right."""
    k = positive_int(k, "k")
    p = answer_probability(policy, task, prompts, temperature)
    lengths = task.lengths(prompts)
    greedy = sample(policy, prompts, task.completion_len, task.eos, task.pad, greedy=True)
    return {"accuracy": float(p.mean()), "pass_at_k": float((1 - (1 - p) ** k).mean()),
            "greedy_accuracy": float(task.reward(prompts, greedy.tokens).mean()),
            "accuracy_by_length": {int(n): float(p[lengths == n].mean()) for n in torch.unique(lengths)}}


def _mean_where(x: torch.Tensor, where: torch.Tensor) -> float:
    return float(x[where].float().mean()) if bool(where.any()) else math.nan


def lr_schedule(opt: torch.optim.Optimizer, config: GRPOConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """The learning rate ramps up linearly over ``config.warmup_steps`` steps (Adam's first steps move every
    weight by about lr, whatever its gradient), then decays linearly to 0 at the last step (``anneal_lr``)."""
    def factor(k: int) -> float:  # k = steps taken so far
        decay = 1.0 - k / config.steps if config.anneal_lr else 1.0
        return min((k + 1) / config.warmup_steps, decay)
    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


@torch_threads(1)   # tiny matrices: one thread avoids OpenMP barriers (see pgcourse.device.torch_threads)
def train(policy: nn.Module, task, config: GRPOConfig | None = None, *, ref: nn.Module | None = None,
          eval_prompts: torch.Tensor | None = None, reward_fn: Callable | None = None, seed: int = 0,
          progress: bool = False) -> GRPOHistory:
    r"""Improve ``policy`` in place with the verifier's reward; return a :class:`GRPOHistory`.

    ``ref`` is the frozen reference of the KL term (a copy of the policy at the start unless given).
    ``reward_fn(prompts, completions) -> (N,)`` replaces the training reward (e.g. a reward with a
    loophole); the evaluation and ``accuracy`` always use the verifier ``task.reward``.
    """
    config = GRPOConfig() if config is None else config
    if not isinstance(config, GRPOConfig):
        raise TypeError(f"config must be a GRPOConfig, got {type(config).__name__}")
    dev = next(policy.parameters()).device
    ref = copy.deepcopy(policy) if ref is None else ref
    ref.requires_grad_(False)
    eval_prompts = task.sample_prompts(512, seed=10_000 + seed, device=dev) if eval_prompts is None else eval_prompts
    hist = GRPOHistory()
    record_eval(hist, 0, policy, task, eval_prompts, config)
    bar = _progress_bar(config) if progress else None
    t0, c0 = time.perf_counter(), time.process_time()

    gen = make_generator(seed, dev)
    opt = torch.optim.Adam(policy.parameters(), lr=config.lr)
    schedule = lr_schedule(opt, config)
    for step in range(1, config.steps + 1):
        batch = rollout(policy, ref, task, config, gen, reward_fn)     # π_old = the policy now
        epochs = []
        for _ in range(config.epochs):                                  # μ gradient steps on the same batch
            opt.zero_grad()
            epochs.append(microbatch_step(policy, batch, config.microbatch_size, loss_type=config.loss_type,
                                          clip_eps=config.clip_eps, beta=config.loss_beta,
                                          temperature=config.temperature))
            torch.nn.utils.clip_grad_norm_(policy.parameters(), config.max_grad_norm)
            opt.step()
        schedule.step()

        record_step(hist, batch, epochs, time.perf_counter() - t0, time.process_time() - c0)
        if step % config.eval_every == 0 or step == config.steps:
            record_eval(hist, step, policy, task, eval_prompts, config)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(acc=f"{hist.accuracy[-1]:.2f}", eval=f"{hist.eval_accuracy[-1]:.2f}")
    if bar is not None:
        bar.close()
    return hist


def _progress_bar(config: GRPOConfig):
    from tqdm.auto import tqdm
    return tqdm(total=config.steps, desc=f"{config.baseline}/{config.loss_type}", leave=False)


def record_step(hist: GRPOHistory, batch, epochs: list[dict], seconds: float, cpu_seconds: float) -> None:
    """Append one step's :data:`STEP_FIELDS` to ``hist`` (``epochs``: the stats of each microbatch_step)."""
    ok = batch.correct > 0.5
    lengths = batch.lengths
    first, later = epochs[0], epochs[1:]
    hist.reward.append(float(batch.rewards.mean()))
    hist.accuracy.append(float(ok.float().mean()))
    hist.length.append(float(lengths.float().mean()))
    hist.length_correct.append(_mean_where(lengths, ok))
    hist.length_wrong.append(_mean_where(lengths, ~ok))
    hist.zero_variance.append(batch.zero_variance)
    hist.samples.append(batch.samples)
    hist.entropy.append(first["entropy"])
    hist.clip_fraction.append(sum(s["clip_fraction"] for s in later) / len(later) if later else 0.0)
    hist.kl_old.append(sum(s["kl_old"] for s in later) / len(later) if later else 0.0)
    hist.kl_ref.append(first["kl_ref"])
    hist.loss.append(first["loss"])
    hist.seconds.append(seconds)
    hist.cpu_seconds.append(cpu_seconds)


def record_eval(hist: GRPOHistory, step: int, policy: nn.Module, task, prompts: torch.Tensor, config: GRPOConfig) -> None:
    """Append one evaluation's :data:`EVAL_FIELDS` to ``hist``."""
    ev = evaluate(policy, task, prompts, config.temperature, config.eval_k)
    hist.eval_steps.append(step)
    hist.eval_accuracy.append(ev["accuracy"])
    hist.eval_pass_at_k.append(ev["pass_at_k"])
    hist.eval_greedy_accuracy.append(ev["greedy_accuracy"])
    hist.eval_accuracy_by_length.append(ev["accuracy_by_length"])
