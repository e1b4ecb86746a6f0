r"""GRPO: group-relative policy optimization, the policy gradient of language-model post-training.

For each prompt :math:`x` the policy samples a group of G completions :math:`y_1,\dots,y_G`, a
verifier scores them :math:`r_1,\dots,r_G`, and each completion's advantage is its reward measured
against its own group (the group mean is the baseline, the group std a scale):

.. math:: \hat A_i = \frac{r_i - \operatorname{mean}(r_{1..G})}{\operatorname{std}(r_{1..G}) + \epsilon}.

Every token of :math:`y_i` gets :math:`\hat A_i`, with a PPO-style clipped ratio
:math:`\rho_{i,t} = \pi_\theta(y_{i,t}\mid x, y_{i,<t}) / \pi_{\text{old}}(y_{i,t}\mid x, y_{i,<t})`
and a KL penalty to a frozen reference policy (the k3 estimator):

.. math:: \ell_{i,t} = -\min\big(\rho_{i,t}\hat A_i,\ \operatorname{clip}(\rho_{i,t}, 1-\varepsilon, 1+\varepsilon)\hat A_i\big)
          + \beta\,\big(e^{\log\pi_{\text{ref}} - \log\pi_\theta} - (\log\pi_{\text{ref}} - \log\pi_\theta) - 1\big).

The loss averages :math:`\ell_{i,t}` over valid tokens in one of three ways (``loss_type``).
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field, fields
from typing import Callable

import torch

from .device import generator as make_generator
from .device import torch_threads
from .digitsort import DigitSort
from .ppo import clipped_objective
from .ppo import kl_k3 as _k3_from_log_ratio
from .tinylm import PromptValue, TinyLM, completion_logp, sample, sequence_logp
from .validate import bool_tensor, float_tensor, one_of, positive_float, positive_int, same_shape

LOSS_TYPES = ("grpo", "bnpo", "dr_grpo")
ADVANTAGES = ("group", "group_mean", "none", "value")


def group_advantages(rewards: torch.Tensor, eps: float = 1e-4, scale: bool = True) -> torch.Tensor:
    r"""Group-relative advantages for ``rewards`` shaped (prompts, group):

    .. math:: \hat A_{pi} = \frac{r_{pi} - \bar r_p}{s_p + \epsilon},\quad
              s_p = \sqrt{\tfrac{1}{G-1}\textstyle\sum_j (r_{pj} - \bar r_p)^2}

    (Bessel's correction). With ``scale=False`` only the group mean is subtracted. A group whose
    rewards are all equal gets zeros: it carries no signal about which completion is better.
    """
    rewards = float_tensor(rewards, "rewards", min_dim=2)
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be shaped (prompts, group), got {tuple(rewards.shape)}")
    eps = positive_float(eps, "eps", allow_zero=True)
    if not isinstance(scale, bool):
        raise TypeError(f"scale must be a bool, got {type(scale).__name__}")
    centered = rewards - rewards.mean(dim=1, keepdim=True)
    if not scale:
        return centered
    if rewards.shape[1] < 2:
        raise ValueError("rewards needs a group of at least 2 completions per prompt to take a std")
    return centered / (rewards.std(dim=1, keepdim=True) + eps)


def _log_ratio(logp, ref_logp) -> torch.Tensor:
    logp = float_tensor(logp, "logp", min_dim=1)
    ref_logp = float_tensor(ref_logp, "ref_logp", min_dim=1)
    same_shape(ref_logp, "ref_logp", logp, "logp")
    return ref_logp - logp


def kl_k1(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    r"""k1 = :math:`-\log r`, :math:`r = \pi_{\text{ref}}(y)/\pi_\theta(y)`, :math:`y\sim\pi_\theta`: unbiased for
    :math:`\mathrm{KL}(\pi_\theta\,\|\,\pi_{\text{ref}})`, high variance, often negative."""
    return -_log_ratio(logp, ref_logp)


def kl_k2(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    r"""k2 = :math:`\tfrac12(\log r)^2`: never negative, low variance, biased (exact to second order)."""
    return 0.5 * _log_ratio(logp, ref_logp) ** 2


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    r"""k3 = :math:`r - 1 - \log r`: unbiased (as :math:`\mathbb E_{\pi_\theta}[r] = 1`) and never negative
    (as :math:`\log r \le r - 1`); the estimator GRPO puts in its loss."""
    return _k3_from_log_ratio(_log_ratio(logp, ref_logp))


def kl_estimators(logp: torch.Tensor, ref_logp: torch.Tensor) -> dict[str, torch.Tensor]:
    """The three estimators ``{"k1", "k2", "k3"}`` for samples drawn from the policy, elementwise."""
    return {"k1": kl_k1(logp, ref_logp), "k2": kl_k2(logp, ref_logp), "k3": kl_k3(logp, ref_logp)}


def aggregate_tokens(values: torch.Tensor, mask: torch.Tensor, loss_type: str = "grpo") -> torch.Tensor:
    r"""Average per-token ``values`` (B, T) over the valid tokens ``mask`` (B, T), one of three ways:

    * ``"grpo"``: per sequence, then over sequences, :math:`\frac1B\sum_i \frac{1}{|y_i|}\sum_t m_{it} v_{it}`;
    * ``"bnpo"``: over all valid tokens of the batch, :math:`\sum_{i,t} m_{it} v_{it} / \sum_{i,t} m_{it}`;
    * ``"dr_grpo"``: a constant, :math:`\sum_{i,t} m_{it} v_{it} / (B\,T)`, T the padded length.

    Masked entries never reach the result (not even as NaN). A row with no valid token counts as 0
    in "grpo".
    """
    values = float_tensor(values, "values", finite=False, min_dim=2)
    if values.dim() != 2:
        raise ValueError(f"values must be shaped (sequences, tokens), got {tuple(values.shape)}")
    mask = bool_tensor(mask, "mask", values, "values")
    loss_type = one_of(loss_type, "loss_type", LOSS_TYPES)
    total = torch.where(mask, values, torch.zeros_like(values))
    if not bool(torch.isfinite(total).all()):
        raise ValueError("values contains NaN or infinite values at valid (masked-in) tokens")
    m = mask.to(values.dtype)
    if loss_type == "grpo":
        return (total.sum(1) / m.sum(1).clamp_min(1)).mean()
    if loss_type == "bnpo":
        return total.sum() / m.sum().clamp_min(1)
    return total.sum() / (values.shape[0] * values.shape[1])


def grpo_loss(logp: torch.Tensor, old_logp: torch.Tensor, ref_logp: torch.Tensor, advantages: torch.Tensor,
              mask: torch.Tensor, clip_eps: float = 0.2, beta: float = 0.04,
              loss_type: str = "grpo") -> tuple[torch.Tensor, dict[str, float]]:
    r"""The GRPO loss and its statistics.

    Per token :math:`\ell_t = -\min(\rho_t A,\ \mathrm{clip}(\rho_t, 1-\varepsilon, 1+\varepsilon) A) + \beta\,k3_t`
    with :math:`\rho_t = e^{\log\pi_\theta - \log\pi_{\text{old}}}` and
    :math:`k3_t = e^{\log\pi_{\text{ref}} - \log\pi_\theta} - (\log\pi_{\text{ref}} - \log\pi_\theta) - 1`,
    averaged by :func:`aggregate_tokens` with ``loss_type``. ``logp``, ``old_logp``, ``ref_logp`` and
    ``mask`` are (B, T); ``advantages`` is (B,) (one per sequence, broadcast over its tokens) or (B, T).
    Gradients flow through ``logp`` only. ``stats``: ``clip_fraction`` (valid tokens whose clipped term
    is the active one), ``approx_kl`` = ``k3`` (mean k3 to the reference), ``kl_old`` (mean k3 to the
    sampling policy), ``ratio`` (mean ρ), ``policy_loss`` and ``kl_loss``.
    """
    logp = float_tensor(logp, "logp", finite=False, min_dim=2)
    if logp.dim() != 2:
        raise ValueError(f"logp must be shaped (sequences, tokens), got {tuple(logp.shape)}")
    old_logp = float_tensor(old_logp, "old_logp", finite=False)
    same_shape(old_logp, "old_logp", logp, "logp")
    ref_logp = float_tensor(ref_logp, "ref_logp", finite=False)
    same_shape(ref_logp, "ref_logp", logp, "logp")
    mask = bool_tensor(mask, "mask", logp, "logp")
    advantages = float_tensor(advantages, "advantages")
    if advantages.dim() == 1:
        if advantages.shape[0] != logp.shape[0]:
            raise ValueError(f"advantages has {advantages.shape[0]} entries but logp has {logp.shape[0]} sequences")
        advantages = advantages[:, None].expand_as(logp)
    else:
        same_shape(advantages, "advantages", logp, "logp")
    clip_eps = positive_float(clip_eps, "clip_eps")
    beta = positive_float(beta, "beta", allow_zero=True)
    loss_type = one_of(loss_type, "loss_type", LOSS_TYPES)
    for name, x in (("logp", logp), ("old_logp", old_logp), ("ref_logp", ref_logp)):
        if not bool(torch.isfinite(x[mask]).all()):
            raise ValueError(f"{name} contains NaN or infinite values at valid (masked-in) tokens")

    zero = torch.zeros_like(logp)
    logp_v = torch.where(mask, logp, zero)  # masked entries cannot leak NaN/inf into the loss or its gradient
    old_v, ref_v = torch.where(mask, old_logp, zero).detach(), torch.where(mask, ref_logp, zero).detach()
    adv = advantages.detach()
    ratio = torch.exp(logp_v - old_v)
    objective = clipped_objective(ratio, adv, clip_eps)  # PPO's clipped surrogate, per token
    policy_term = -objective
    k3 = kl_k3(logp_v, ref_v)
    per_token = policy_term + beta * k3 if beta > 0 else policy_term
    loss = aggregate_tokens(per_token, mask, loss_type)

    with torch.no_grad():
        n = mask.sum().clamp_min(1)
        stats = {
            "clip_fraction": float(((objective < ratio * adv) & mask).sum() / n),  # the clipped side is active
            "approx_kl": float((k3 * mask).sum() / n),
            "k3": float((k3 * mask).sum() / n),
            "kl_old": float((kl_k3(logp_v, old_v) * mask).sum() / n),
            "ratio": float((ratio * mask).sum() / n),
            "policy_loss": float(aggregate_tokens(policy_term, mask, loss_type)),
            "kl_loss": float(aggregate_tokens(beta * k3, mask, loss_type)),
        }
    return loss, stats


# --------------------------------------------------------------------------------------------
# Training: rollouts in groups, verifiable rewards, several loss steps per batch
# --------------------------------------------------------------------------------------------

@dataclass
class GRPOConfig:
    """Every hyper-parameter of :func:`train`, in one place (CleanRL style)."""

    steps: int = 400                 # rollout batches
    prompts_per_step: int = 64       # B prompts per batch
    group_size: int = 8              # G completions per prompt
    epochs: int = 1                  # μ: loss steps on each batch (old_logp = the sampling policy)
    lr: float = 1e-2
    warmup_steps: int = 20           # the learning rate ramps up linearly over these first steps
    anneal_lr: bool = True           # then decays linearly to 0 at the last step
    clip_eps: float = 0.2
    beta: float = 0.04               # weight of the k3 KL to the reference
    loss_type: str = "grpo"          # "grpo" | "bnpo" | "dr_grpo"
    advantage: str = "group"         # "group" (GRPO) | "group_mean" (no std) | "none" (raw reward) | "value" (learned V(x))
    max_grad_norm: float = 1.0
    value_lr: float = 3e-3           # for advantage="value"
    temperature: float = 1.0
    eval_every: int = 20

    def __post_init__(self):
        for name in ("steps", "prompts_per_step", "group_size", "epochs", "eval_every", "warmup_steps"):
            setattr(self, name, positive_int(getattr(self, name), name))
        for name in ("lr", "clip_eps", "max_grad_norm", "value_lr", "temperature"):
            setattr(self, name, positive_float(getattr(self, name), name))
        self.beta = positive_float(self.beta, "beta", allow_zero=True)
        one_of(self.loss_type, "loss_type", LOSS_TYPES)
        one_of(self.advantage, "advantage", ADVANTAGES)
        if self.advantage == "group" and self.group_size < 2:
            raise ValueError("group_size must be at least 2 for group advantages")

    def replace(self, **changes) -> "GRPOConfig":
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise TypeError(f"unknown GRPOConfig field(s): {sorted(unknown)}")
        return GRPOConfig(**{**{f.name: getattr(self, f.name) for f in fields(self)}, **changes})


@dataclass
class GRPOHistory:
    """What :func:`train` recorded. Per step: ``reward`` (fraction of correct completions), ``kl`` (mean k3
    to the reference), ``clip_fraction``, ``length`` (mean completion length, EOS included), ``seconds``
    (since the start). Per evaluation (``eval_steps``, step 0 = before training): ``accuracy``
    (expected accuracy of a sampled answer on the evaluation prompts), ``greedy_accuracy`` and
    ``accuracy_by_length`` (see :func:`evaluate`)."""

    reward: list[float] = field(default_factory=list)
    kl: list[float] = field(default_factory=list)
    clip_fraction: list[float] = field(default_factory=list)
    length: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    eval_steps: list[int] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    greedy_accuracy: list[float] = field(default_factory=list)
    accuracy_by_length: list[dict[int, float]] = field(default_factory=list)


@torch.no_grad()
def answer_probability(policy: TinyLM, task: DigitSort, prompts: torch.Tensor) -> torch.Tensor:
    r""":math:`\pi_\theta(y^\star(x)\mid x)` for each prompt: the probability that a sampled answer is the correct one."""
    answers = task.answers(prompts)
    return sequence_logp(policy, prompts, answers, task.eos).exp()


@torch.no_grad()
def evaluate(policy: TinyLM, task: DigitSort, prompts: torch.Tensor) -> dict[str, float]:
    r"""``accuracy``: :math:`\frac1N\sum_x \pi_\theta(y^\star(x)\mid x)`, the exact probability that a sampled
    answer is correct, averaged over ``prompts`` (no sampling noise); ``greedy_accuracy``: the fraction
    of prompts whose arg-max answer is correct; ``accuracy_by_length``: the accuracy of the prompts with
    each number of digits."""
    p = answer_probability(policy, task, prompts)
    lengths = task.lengths(prompts)
    greedy = sample(policy, prompts, task.completion_len, task.eos, task.pad, greedy=True)
    return {"accuracy": float(p.mean()), "greedy_accuracy": float(task.reward(prompts, greedy.tokens).mean()),
            "accuracy_by_length": {int(k): float(p[lengths == k].mean()) for k in torch.unique(lengths)}}


def _progress(total: int, enabled: bool, desc: str):
    if not enabled:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, leave=False)


@torch_threads(1)   # tiny matrices: one thread avoids OpenMP barriers (see pgcourse.device.torch_threads)
def train(policy: TinyLM, task: DigitSort, config: GRPOConfig | None = None, *, ref: TinyLM | None = None,
          eval_prompts: torch.Tensor | None = None, reward_fn: Callable | None = None, seed: int = 0,
          progress: bool = True) -> GRPOHistory:
    r"""Improve ``policy`` in place with the verifier's reward; return a :class:`GRPOHistory`.

    Each step: draw B prompts, sample G completions each (one batched call), score them, turn the
    rewards into advantages (``config.advantage``: GRPO's group-normalized ones, the group mean only,
    the raw reward = REINFORCE without a baseline, or :math:`r - V_\phi(x)` with a learned value
    baseline), then take ``epochs`` steps on :func:`grpo_loss` (``old_logp`` from the sampler, ``ref_logp``
    from the frozen ``ref``, a copy of the policy at the start unless given). ``reward_fn(prompts,
    completions)`` replaces the verifier ``task.reward`` as the training reward (e.g. to add a format
    bonus); the evaluation always uses the verifier.
    """
    config = GRPOConfig() if config is None else config
    if not isinstance(config, GRPOConfig):
        raise TypeError(f"config must be a GRPOConfig, got {type(config).__name__}")
    dev = next(policy.parameters()).device
    g = make_generator(seed, dev)
    ref = copy.deepcopy(policy) if ref is None else ref
    ref.requires_grad_(False)
    eval_prompts = task.sample_prompts(512, seed=10_000 + seed, device=dev) if eval_prompts is None else eval_prompts
    opt = torch.optim.Adam(policy.parameters(), lr=config.lr)
    # Adam's first steps move every parameter by about lr whatever its gradient: ramp lr up.
    def lr_factor(k: int) -> float:  # k = steps taken so far
        decay = 1.0 - k / config.steps if config.anneal_lr else 1.0
        return min((k + 1) / config.warmup_steps, decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    value = value_opt = None
    if config.advantage == "value":
        value = PromptValue(task.vocab_size).to(dev)
        value_opt = torch.optim.Adam(value.parameters(), lr=config.value_lr)
    B, G, T = config.prompts_per_step, config.group_size, task.completion_len
    hist = GRPOHistory()

    def record_eval(step: int) -> None:
        ev = evaluate(policy, task, eval_prompts)
        hist.eval_steps.append(step)
        hist.accuracy.append(ev["accuracy"])
        hist.greedy_accuracy.append(ev["greedy_accuracy"])
        hist.accuracy_by_length.append(ev["accuracy_by_length"])

    record_eval(0)
    bar = _progress(config.steps, progress, f"{config.advantage}/{config.loss_type}")
    t0 = time.perf_counter()
    for step in range(1, config.steps + 1):
        prompts = task.sample_prompts(B, seed=g, device=dev).repeat_interleave(G, dim=0)   # (B·G, P)
        roll = sample(policy, prompts, T, task.eos, task.pad, seed=g, temperature=config.temperature)
        rewards_ok = task.reward(prompts, roll.tokens)                                     # (B·G,) the verifier
        rewards = rewards_ok if reward_fn is None else float_tensor(reward_fn(prompts, roll.tokens), "reward_fn output")
        if config.advantage == "group":
            adv = group_advantages(rewards.view(B, G)).view(-1)
        elif config.advantage == "group_mean":
            adv = group_advantages(rewards.view(B, G), scale=False).view(-1)
        elif config.advantage == "none":
            adv = rewards
        else:
            v = value(prompts)
            adv = rewards - v.detach()
            value_loss = ((v - rewards) ** 2).mean()
            value_opt.zero_grad()
            value_loss.backward()
            value_opt.step()
        with torch.no_grad():
            ref_logp = completion_logp(ref, prompts, roll.tokens)
        for _ in range(config.epochs):
            logp = completion_logp(policy, prompts, roll.tokens)
            loss, stats = grpo_loss(logp, roll.logp, ref_logp, adv, roll.mask, clip_eps=config.clip_eps,
                                    beta=config.beta, loss_type=config.loss_type)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), config.max_grad_norm)
            opt.step()
        schedule.step()
        hist.reward.append(float(rewards_ok.mean()))
        hist.kl.append(stats["k3"])
        hist.clip_fraction.append(stats["clip_fraction"])
        hist.length.append(float(roll.lengths.float().mean()))
        hist.seconds.append(time.perf_counter() - t0)
        if step % config.eval_every == 0 or step == config.steps:
            record_eval(step)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(reward=f"{hist.reward[-1]:.2f}", acc=f"{hist.accuracy[-1]:.2f}")
    if bar is not None:
        bar.close()
    return hist
