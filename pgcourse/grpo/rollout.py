r"""GRPO's data: groups of sampled completions, their rewards and their advantages.

For B prompts the policy samples G completions each at temperature :math:`\tau`; the rows of one
group are contiguous (rows :math:`gG, \dots, gG+G-1`). Each completion's advantage is its reward
against its group's baseline :math:`b`, optionally scaled by the group's std:

.. math:: A_{pi} = \frac{r_{pi} - b_{pi}}{s_p + \epsilon}\ \ (\texttt{scale\_rewards}),\qquad
          b_{pi} \in \{\bar r_p,\ \tfrac{1}{G-1}\textstyle\sum_{j\ne i} r_{pj},\ 0\}.

With the KL as a reward penalty (``kl_penalty="reward_k1"``) the reward is first
:math:`r_{pi} - \beta \sum_t (\log\pi_{\text{old}} - \log\pi_{\text{ref}})(y_{pi,t})`. Dynamic sampling
(DAPO) drops the groups whose rewards are all equal (their advantages are 0: no signal) and
samples new prompts to refill the batch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ..tinylm import completion_logp, sample
from ..validate import float_tensor, one_of, positive_float
from .config import BASELINES, GRPOConfig
from .loss import group_advantages, leave_one_out_baseline


@dataclass
class Rollout:
    """One batch of N = B·G completions (groups contiguous). ``prompts`` (N, P); ``completions``,
    ``mask``, ``old_logp``, ``ref_logp`` (N, C) (log-probs at the sampling temperature); ``rewards``
    (N,) the training reward (KL penalty included where it is one), ``correct`` (N,) the verifier's 0/1,
    ``advantages`` (N,); ``zero_variance`` the fraction of groups of the FIRST draw whose training
    rewards were all equal, ``samples`` the completions drawn (refills included)."""

    prompts: torch.Tensor
    completions: torch.Tensor
    mask: torch.Tensor
    old_logp: torch.Tensor
    ref_logp: torch.Tensor
    rewards: torch.Tensor
    correct: torch.Tensor
    advantages: torch.Tensor
    group_size: int
    zero_variance: float = 0.0
    samples: int = 0

    def __len__(self) -> int:
        return self.prompts.shape[0]

    @property
    def lengths(self) -> torch.Tensor:
        """Valid tokens per completion (EOS included)."""
        return self.mask.sum(1)

    def __repr__(self) -> str:
        return (f"Rollout({len(self)} completions in groups of {self.group_size}, {self.completions.shape[1]} slots, "
                f"accuracy {float(self.correct.mean()):.3f}, mean length {float(self.lengths.float().mean()):.2f})")

    def rows(self, index) -> "Rollout":
        """The rollout restricted to rows ``index`` (a slice, or a tensor of indices)."""
        pick = lambda x: x[index]  # noqa: E731
        return Rollout(*(pick(x) for x in (self.prompts, self.completions, self.mask, self.old_logp, self.ref_logp,
                                           self.rewards, self.correct, self.advantages)),
                       self.group_size, self.zero_variance, self.samples)


def advantages_from_rewards(rewards: torch.Tensor, baseline: str = "group_mean", scale: bool = True,
                            eps: float = 1e-4) -> torch.Tensor:
    r"""Advantages (P, G) from rewards (P, G): :math:`(r - b)/(s + \epsilon)` or :math:`r - b` (``scale=False``);
    ``baseline="group_mean"`` with ``scale`` is GRPO's :func:`group_advantages`."""
    rewards = float_tensor(rewards, "rewards", min_dim=2)
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be shaped (prompts, group), got {tuple(rewards.shape)}")
    baseline = one_of(baseline, "baseline", BASELINES)
    if not isinstance(scale, bool):
        raise TypeError(f"scale must be a bool, got {type(scale).__name__}")
    if baseline == "group_mean":
        return group_advantages(rewards, eps=eps, scale=scale)
    b = leave_one_out_baseline(rewards) if baseline == "leave_one_out" else torch.zeros_like(rewards)
    centered = rewards - b
    if not scale:
        return centered
    if rewards.shape[1] < 2:
        raise ValueError("rewards needs a group of at least 2 completions per prompt to take a std")
    return centered / (rewards.std(dim=1, keepdim=True) + positive_float(eps, "eps", allow_zero=True))


def _draw(policy: nn.Module, ref: nn.Module, task, n_prompts: int, group_size: int, temperature: float,
          gen: torch.Generator, reward_fn: Callable | None) -> dict[str, torch.Tensor]:
    dev = next(policy.parameters()).device
    prompts = task.sample_prompts(n_prompts, seed=gen, device=dev).repeat_interleave(group_size, dim=0)
    roll = sample(policy, prompts, task.completion_len, task.eos, task.pad, seed=gen, temperature=temperature)
    correct = task.reward(prompts, roll.tokens)
    if reward_fn is None:
        rewards = correct
    else:
        rewards = float_tensor(reward_fn(prompts, roll.tokens), "reward_fn output")
        if rewards.shape != correct.shape:
            raise ValueError(f"reward_fn output must be shaped {tuple(correct.shape)}, got {tuple(rewards.shape)}")
    with torch.no_grad():
        ref_logp = completion_logp(ref, prompts, roll.tokens, temperature)
    ref_logp = torch.where(roll.mask, ref_logp, torch.zeros_like(ref_logp))
    return {"prompts": prompts, "completions": roll.tokens, "mask": roll.mask, "old_logp": roll.logp,
            "ref_logp": ref_logp, "rewards": rewards.to(roll.logp.dtype), "correct": correct}


def rollout(policy: nn.Module, ref: nn.Module, task, config: GRPOConfig, gen: torch.Generator,
            reward_fn: Callable | None = None) -> Rollout:
    """Sample ``config.prompts_per_step`` prompts × ``config.group_size`` completions at ``config.temperature``
    and score them (see the module).

    The training reward is ``reward_fn(prompts, completions)`` if given, else the verifier
    ``task.reward`` plus ``config.format_bonus · task.well_formed``. With ``config.dynamic_sampling``
    up to ``config.max_refills`` more draws replace the zero-variance groups (if still short, the batch
    is smaller; if no group has any signal the first draw is kept: its advantages are 0).
    """
    if not isinstance(config, GRPOConfig):
        raise TypeError(f"config must be a GRPOConfig, got {type(config).__name__}")
    if not isinstance(gen, torch.Generator):
        raise TypeError(f"gen must be a torch.Generator, got {type(gen).__name__}")
    B, G = config.prompts_per_step, config.group_size
    if config.format_bonus and reward_fn is None:
        reward_fn = lambda p, c: task.reward(p, c) + config.format_bonus * task.well_formed(c)  # noqa: E731
    parts, samples, zero_var, kept_groups = [], 0, None, 0
    for _ in range(1 + (config.max_refills if config.dynamic_sampling else 0)):
        d = _draw(policy, ref, task, B, G, config.temperature, gen, reward_fn)
        samples += d["prompts"].shape[0]
        r = d["rewards"].view(-1, G)
        informative = (r != r[:, :1]).any(1)
        if zero_var is None:
            zero_var, first = float((~informative).float().mean()), d
        if not config.dynamic_sampling:
            parts = [d]
            break
        parts.append({k: v[informative.repeat_interleave(G)] for k, v in d.items()})
        kept_groups += int(informative.sum())
        if kept_groups >= B:
            break
    if config.dynamic_sampling and kept_groups == 0:
        parts = [first]
    data = {k: torch.cat([p[k] for p in parts])[: B * G] for k in first}
    rewards = data["rewards"]
    if config.kl_penalty == "reward_k1" and config.beta > 0:   # k1 = log π_old − log π_ref per token, summed
        rewards = rewards - config.beta * ((data["old_logp"] - data["ref_logp"]) * data["mask"]).sum(1)
    adv = advantages_from_rewards(rewards.view(-1, G), config.baseline, config.scale_rewards).view(-1)
    return Rollout(data["prompts"], data["completions"], data["mask"], data["old_logp"], data["ref_logp"],
                   rewards, data["correct"], adv, G, zero_var, samples)
