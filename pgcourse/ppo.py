r"""Proximal policy optimization (Schulman et al., 2017): the clipped surrogate and a full PPO.

With the probability ratio :math:`\rho_t(\theta) = \pi_\theta(a_t\mid s_t) / \pi_{\theta_\text{old}}(a_t\mid s_t)`
of the policy being trained to the one that collected the batch, PPO minimizes

.. math:: L^\text{CLIP}(\theta) = -\,\mathbb E_t\big[\min\big(\rho_t \hat A_t,\;
          \operatorname{clip}(\rho_t, 1-\epsilon, 1+\epsilon)\,\hat A_t\big)\big],

a pessimistic (lower) bound on the importance-weighted surrogate :math:`\mathbb E_t[\rho_t \hat A_t]`
whose gradient vanishes once the ratio has moved more than ε in the direction the advantage
favours. So one batch can serve several epochs of minibatch steps without the policy running away.

:func:`ppo` is the standard algorithm, readable top to bottom (CleanRL's ``ppo.py`` is the model):
vector environments, GAE(λ) with truncation bootstrapped from the final observation, several
epochs of shuffled minibatches, per-minibatch advantage normalization, a value loss (optionally
clipped), an entropy bonus, global gradient-norm clipping, a linearly annealed learning rate, and
an optional early stop of the epochs when the approximate KL exceeds a target. Every
hyper-parameter is a field of :class:`PPOConfig`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from .device import device as default_device
from .device import generator as make_generator
from .device import seed_everything, torch_threads
from .policies import MLPCategorical
from .returns import gae
from .rollout import Collector, Rollout, Timer, make_vec_env
from .train import History, value_net
from .validate import bool_tensor, float_tensor, positive_float, positive_int, same_shape, unit_interval

__all__ = ["clipped_objective", "kl_k3", "clip_loss", "PPOConfig", "ActorCritic", "rollout_batch",
           "minibatch_epochs", "ppo_loss", "ppo_update", "policy_kl", "ppo"]


# ---- the clipped surrogate ------------------------------------------------------------------------

def clipped_objective(ratio: torch.Tensor, advantages: torch.Tensor, clip_eps: float = 0.2) -> torch.Tensor:
    r"""Per entry :math:`\min(\rho A,\ \operatorname{clip}(\rho, 1-\epsilon, 1+\epsilon)\,A)`, the objective to maximize.

    The formula inside :func:`clip_loss`, without its checks (``clip_eps = inf``: :math:`\rho A`).
    """
    return torch.min(ratio * advantages, ratio.clamp(1.0 - clip_eps, 1.0 + clip_eps) * advantages)


def kl_k3(log_ratio: torch.Tensor) -> torch.Tensor:
    r"""Per entry :math:`(\rho - 1) - \log\rho` from :math:`\log\rho`: never negative, and its mean over actions
    sampled by :math:`\pi_\text{old}` is an unbiased estimate of :math:`\mathrm{KL}(\pi_\text{old}\,\|\,\pi_\theta)`
    (the "k3" estimator), since :math:`\mathbb E_\text{old}[\rho - 1] = 0` and :math:`\log x \le x - 1`."""
    return torch.expm1(log_ratio) - log_ratio


def clip_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, clip_eps: float = 0.2,
              mask: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    r"""PPO's clipped surrogate loss and two diagnostics.

    .. math:: \rho = e^{\log\pi - \log\pi_\text{old}}, \qquad
              L = -\operatorname{mean}\big(\min(\rho A,\ \operatorname{clip}(\rho, 1-\epsilon, 1+\epsilon)\,A)\big)

    over the valid entries (``mask`` True; every entry without a mask). ``old_logp`` and
    ``advantages`` are constants (detached). ``clip_eps = inf`` gives the unclipped
    importance-weighted surrogate :math:`-\operatorname{mean}(\rho A)`.

    ``stats`` holds detached 0-d tensors (dtype and device of ``logp``; call ``float()`` for numbers):

    * ``approx_kl``: :math:`\operatorname{mean}\big((\rho - 1) - \log\rho\big)`, the "k3" estimator of
      :math:`\mathrm{KL}(\pi_\text{old}\,\|\,\pi_\theta)` from actions sampled by :math:`\pi_\text{old}`:
      unbiased (since :math:`\mathbb E_\text{old}[\rho] = 1`) and never negative;
    * ``clip_fraction``: the fraction of entries with :math:`|\rho - 1| > \epsilon`.
    """
    logp = float_tensor(logp, "logp", finite=False)
    old_logp = float_tensor(old_logp, "old_logp", finite=False)
    advantages = float_tensor(advantages, "advantages", finite=False)
    same_shape(old_logp, "old_logp", logp, "logp")
    same_shape(advantages, "advantages", logp, "logp")
    if isinstance(clip_eps, torch.Tensor) and clip_eps.numel() == 1:
        clip_eps = clip_eps.item()
    clip_eps = positive_float(clip_eps, "clip_eps")
    old_logp, advantages = old_logp.detach(), advantages.detach()
    if mask is None:
        valid = None
        if not bool(torch.isfinite(logp.detach() + old_logp + advantages).all()):  # one check for the three
            for name, x in (("logp", logp), ("old_logp", old_logp), ("advantages", advantages)):
                if not bool(torch.isfinite(x).all()):
                    raise ValueError(f"{name} contains NaN or infinite values (pass a mask for padded entries)")
    else:
        valid = bool_tensor(mask, "mask", logp, "logp")
        if not bool(valid.any()):
            raise ValueError("mask selects no entries: the mean over valid entries is undefined")
        for name, x in (("logp", logp), ("old_logp", old_logp), ("advantages", advantages)):
            if not bool(torch.isfinite(x[valid]).all()):
                raise ValueError(f"{name} contains NaN or infinite values at valid (mask True) entries")
        zero = torch.zeros((), dtype=logp.dtype, device=logp.device)
        logp, old_logp, advantages = (torch.where(valid, x, zero) for x in (logp, old_logp, advantages))
    log_ratio = logp - old_logp
    ratio = log_ratio.exp()
    surrogate = clipped_objective(ratio, advantages, clip_eps)
    with torch.no_grad():
        k3 = kl_k3(log_ratio)
        clipped = ((ratio - 1.0).abs() > clip_eps).to(logp.dtype)
    if valid is None:
        return -surrogate.mean(), {"approx_kl": k3.mean(), "clip_fraction": clipped.mean()}
    w = valid.to(logp.dtype)
    n = w.sum()
    return -(surrogate * w).sum() / n, {"approx_kl": (k3 * w).sum() / n, "clip_fraction": (clipped * w).sum() / n}


# ---- hyper-parameters, in one place -----------------------------------------------------------------

@dataclass(frozen=True)
class PPOConfig:
    """Every hyper-parameter of :func:`ppo`. Defaults: tuned to solve CartPole-v1 in few steps and seconds.

    CleanRL's defaults for comparison: 4 envs × 128 steps, 4 epochs of 4 minibatches,
    lr 2.5e-4 annealed, γ 0.99, λ 0.95, ε 0.2, entropy 0.01, value 0.5 (clipped), grad norm 0.5.
    """

    env_id: str = "CartPole-v1"
    total_steps: int = 100_000        # env steps; the learning rate anneals linearly to 0 over them
    n_envs: int = 32                  # parallel environments (one numpy-vectorized env: cheap per env step)
    n_steps: int = 32                 # steps per environment per rollout: a batch holds n_envs × n_steps
    n_epochs: int = 4                 # passes over each batch
    n_minibatches: int = 8            # minibatches per epoch (of 128 samples with the defaults)
    lr: float = 2.5e-3
    anneal_lr: bool = True
    gamma: float = 0.99
    lam: float = 0.95                 # GAE λ
    clip_eps: float = 0.2
    clip: bool = True                 # False: the same multi-epoch updates on the unclipped surrogate
    clip_value: bool = False          # clip the value update to ±clip_eps around the old values
    value_coef: float = 0.5
    entropy_coef: float = 0.01
    max_grad_norm: float = 0.5
    normalize_advantages: bool = True  # per minibatch
    target_kl: float | None = None     # stop an update's epochs once their approximate KL exceeds this
    hidden: tuple[int, ...] = (64, 64)
    adam_eps: float = 1e-5
    seed: int = 0
    stop_at_return: float | None = None  # stop once the mean return of the last 20 episodes reaches this

    def __post_init__(self):
        for name in ("total_steps", "n_envs", "n_steps", "n_epochs", "n_minibatches"):
            positive_int(getattr(self, name), name)
        for name in ("lr", "clip_eps", "adam_eps", "max_grad_norm"):
            positive_float(getattr(self, name), name)
        for name in ("value_coef", "entropy_coef"):
            positive_float(getattr(self, name), name, allow_zero=True)
        unit_interval(self.gamma, "gamma")
        unit_interval(self.lam, "lam")
        if self.target_kl is not None:
            positive_float(self.target_kl, "target_kl")
        if self.n_minibatches > self.n_envs * self.n_steps:
            raise ValueError(f"n_minibatches={self.n_minibatches} exceeds the batch n_envs × n_steps "
                             f"= {self.n_envs * self.n_steps}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise TypeError(f"seed must be an int, got {type(self.seed).__name__}")
        if not isinstance(self.env_id, str):
            raise TypeError(f"env_id must be a string, got {type(self.env_id).__name__}")
        object.__setattr__(self, "hidden", tuple(positive_int(h, "hidden") for h in self.hidden))

    @property
    def batch_size(self) -> int:
        return self.n_envs * self.n_steps


# ---- the networks -------------------------------------------------------------------------------------

def _orthogonal_(net: nn.Sequential, last_gain: float) -> nn.Sequential:
    """Orthogonal weights (gain √2, the last layer ``last_gain``) and zero biases, as in CleanRL."""
    linears = [m for m in net if isinstance(m, nn.Linear)]
    for i, layer in enumerate(linears):
        nn.init.orthogonal_(layer.weight, last_gain if i == len(linears) - 1 else math.sqrt(2.0))
        nn.init.zeros_(layer.bias)
    return net


class ActorCritic(nn.Module):
    """Separate tanh MLPs for the policy logits (``actor``) and the state value (``critic``).

    ``actor(obs) -> logits (..., A)``; ``critic(obs) -> V (...)``. The actor's last layer starts
    near zero (gain 0.01), so the first policy is almost uniform.
    """

    def __init__(self, obs_dim: int, n_actions: int, hidden: Sequence[int] = (64, 64)):
        super().__init__()
        self.actor = _orthogonal_(MLPCategorical(obs_dim, n_actions, hidden).net, 0.01)
        self.critic = value_net(obs_dim, hidden)
        _orthogonal_(self.critic.net, 1.0)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.actor(obs), self.critic(obs)


# ---- one batch, one update ------------------------------------------------------------------------

def rollout_batch(ro: Rollout, gamma: float, lam: float) -> dict[str, torch.Tensor]:
    """GAE advantages and returns of a rollout, then its real transitions flattened (autoreset steps dropped)."""
    adv, ret = gae(ro.rewards, ro.values, ro.next_values, ro.terminated, ro.truncated, gamma, lam)
    m = ro.mask
    return {"obs": ro.obs[m], "actions": ro.actions[m], "logp": ro.logp[m], "values": ro.values[m],
            "advantages": adv[m], "returns": ret[m]}


def minibatch_epochs(step: Callable[[torch.Tensor], dict], n: int, n_epochs: int, n_minibatches: int,
                     generator: torch.Generator, target_kl: float | None = None) -> list[torch.Tensor]:
    """PPO's loop over one batch of ``n`` samples: ``n_epochs`` passes, each in a fresh random order.

    Each epoch draws ``perm = torch.randperm(n, generator=generator)``, splits it into
    ``n_minibatches`` nearly equal chunks (``torch.tensor_split``) and calls ``step(idx)`` on each
    chunk in turn; ``step`` takes one gradient step on those samples and returns a dict holding
    ``approx_kl``. With ``target_kl``, the loop stops after the first epoch whose mean
    ``approx_kl`` exceeds it. Returns the index tensors visited, in order.
    """
    visited: list[torch.Tensor] = []
    for _ in range(n_epochs):
        perm = torch.randperm(n, generator=generator, device=generator.device)
        kls = []
        for idx in perm.tensor_split(n_minibatches):
            kls.append(step(idx)["approx_kl"])
            visited.append(idx)
        if target_kl is not None and float(sum(kls)) / len(kls) > target_kl:
            break
    return visited


def ppo_loss(agent: ActorCritic, mb: dict[str, torch.Tensor], cfg: PPOConfig) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    r"""PPO's loss on one minibatch ``mb`` (the batch's entries at some indices) and its statistics.

    .. math:: L = L^\text{CLIP} + c_v\,\tfrac12\,\overline{(V_\phi(s_t) - \hat R_t)^2} - c_e\,\overline{\mathcal H[\pi_\theta(\cdot\mid s_t)]}

    with the advantages normalized within the minibatch (``cfg.normalize_advantages``, more than one
    sample), :math:`L^\text{CLIP}` from :func:`clip_loss` (``cfg.clip`` False: the unclipped
    :math:`-\overline{\rho A}`, its statistics still at ``cfg.clip_eps``) and, with ``cfg.clip_value``, the value
    update clipped to ±ε around the old values. ``mb`` holds ``obs``, ``actions``, ``logp`` (old),
    ``advantages``, ``returns`` and ``values`` (old; only for ``clip_value``). Statistics (detached 0-d):
    ``approx_kl``, ``clip_fraction``, ``value_loss``, ``entropy``.
    """
    logits, v = agent(mb["obs"])
    logp_all = torch.log_softmax(logits, -1)
    logp = logp_all.gather(-1, mb["actions"].unsqueeze(-1)).squeeze(-1)
    entropy = -(logp_all.exp() * logp_all).sum(-1).mean()
    a, ret = mb["advantages"], mb["returns"]
    if cfg.normalize_advantages and a.numel() > 1:
        a = (a - a.mean()) / (a.std() + 1e-8)
    pg, st = clip_loss(logp, mb["logp"], a, cfg.clip_eps if cfg.clip else math.inf)
    if not cfg.clip:  # the same diagnostics at cfg.clip_eps
        st = clip_loss(logp.detach(), mb["logp"], a, cfg.clip_eps)[1]
    if cfg.clip_value:
        old_v = mb["values"]
        v_clip = old_v + (v - old_v).clamp(-cfg.clip_eps, cfg.clip_eps)
        v_loss = 0.5 * torch.max((v - ret) ** 2, (v_clip - ret) ** 2).mean()
    else:
        v_loss = 0.5 * ((v - ret) ** 2).mean()
    loss = pg + cfg.value_coef * v_loss - cfg.entropy_coef * entropy
    return loss, {"approx_kl": st["approx_kl"], "clip_fraction": st["clip_fraction"],
                  "value_loss": v_loss.detach(), "entropy": entropy.detach()}


def ppo_update(agent: ActorCritic, opt: torch.optim.Optimizer, batch: dict[str, torch.Tensor], cfg: PPOConfig,
               generator: torch.Generator) -> dict[str, float]:
    r"""One PPO update: :func:`minibatch_epochs` over a batch, one optimizer step on :func:`ppo_loss` per minibatch.

    Each step: the loss on the minibatch ``{k: batch[k][idx]}``, ``zero_grad``, ``backward``, the global
    gradient norm clipped to ``cfg.max_grad_norm``, ``opt.step()``. Returns the means over the
    minibatches of ``approx_kl``, ``clip_fraction``, ``value_loss`` and ``entropy``, and ``epochs`` (fewer
    than ``cfg.n_epochs`` when ``cfg.target_kl`` stopped the update early).
    """
    params = [p for g in opt.param_groups for p in g["params"]]
    log: dict[str, list[torch.Tensor]] = {"approx_kl": [], "clip_fraction": [], "value_loss": [], "entropy": []}

    def step(idx: torch.Tensor) -> dict[str, torch.Tensor]:
        loss, st = ppo_loss(agent, {k: v[idx] for k, v in batch.items()}, cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        opt.step()
        for k in log:
            log[k].append(st[k])
        return st

    n = batch["obs"].shape[0]
    visited = minibatch_epochs(step, n, cfg.n_epochs, cfg.n_minibatches, generator, cfg.target_kl)
    with torch.no_grad():
        means = torch.stack([torch.stack(x).mean() for x in log.values()]).tolist()
    out = dict(zip(log, means))
    out["epochs"] = len(visited) / cfg.n_minibatches
    return out


def policy_kl(agent: ActorCritic, obs: torch.Tensor, old_logits: torch.Tensor) -> float:
    r"""The exact :math:`\mathrm{KL}(\pi_\text{old}(\cdot|s)\,\|\,\pi_\theta(\cdot|s))` averaged over the states ``obs``."""
    with torch.no_grad():
        old_lp = torch.log_softmax(old_logits, -1)
        new_lp = torch.log_softmax(agent.actor(obs), -1)
        return float((old_lp.exp() * (old_lp - new_lp)).sum(-1).mean())


# ---- the whole algorithm ---------------------------------------------------------------------------------

UpdateFn = Callable[[ActorCritic, torch.optim.Optimizer, dict, PPOConfig, torch.Generator], dict]


def ppo(config: PPOConfig | None = None, *, device: torch.device | str | None = None, progress: bool = True,
        update: UpdateFn | None = None, **overrides) -> History:
    """Train a PPO agent; ``config`` (default :class:`PPOConfig`) with any field overridden by keyword.

    ``update`` (default :func:`ppo_update`) is called as ``update(agent, opt, batch, cfg, generator)``
    once per batch and returns a dict of numbers, logged per update (a learner's own update plugs in here).
    Returns a :class:`pgcourse.train.History`; ``extra`` holds per update what ``update`` returned
    (``approx_kl``, ``clip_fraction``, ``value_loss``, ``entropy``, ``epochs``), ``lr``, and ``policy_kl``,
    the exact KL between the policies before and after the update averaged over the batch's states;
    ``hist.agent`` is the trained :class:`ActorCritic`.
    Deterministic on the CPU for a given seed. Runs with one intra-op thread (small tensors:
    see :func:`pgcourse.device.torch_threads`).
    """
    cfg = replace(config if config is not None else PPOConfig(), **overrides)
    dev = torch.device(device) if device is not None else default_device()
    if update is not None and not callable(update):
        raise TypeError(f"update must be a function update(agent, opt, batch, cfg, generator), got {update!r}")
    with torch_threads(1):
        return _train(cfg, dev, progress, update or ppo_update)


def _train(cfg: PPOConfig, dev: torch.device, progress: bool, update: UpdateFn) -> History:
    seed_everything(cfg.seed)
    envs = make_vec_env(cfg.env_id, cfg.n_envs, seed=cfg.seed)
    obs_dim, n_actions = envs.single_observation_space.shape[0], int(envs.single_action_space.n)
    agent = ActorCritic(obs_dim, n_actions, cfg.hidden).to(dev)
    # the fused Adam does one kernel for all parameters: 4x fewer ops than the default loop on a CPU
    opt = torch.optim.Adam(agent.parameters(), lr=cfg.lr, eps=cfg.adam_eps, fused=dev.type in ("cpu", "cuda"))
    collector = Collector(envs, agent.actor, agent.critic, seed=cfg.seed, device=dev)
    gen = make_generator(cfg.seed + 1, dev)
    label = "PPO" if cfg.clip else "PPO without clip"
    hist, timer = History(label=label), Timer()
    bar = tqdm(total=cfg.total_steps, disable=not progress, desc=label, unit="step")
    while collector.env_steps < cfg.total_steps:
        lr = cfg.lr * (1.0 - collector.env_steps / cfg.total_steps) if cfg.anneal_lr else cfg.lr
        for group in opt.param_groups:
            group["lr"] = lr
        batch = rollout_batch(collector.collect(cfg.n_steps), cfg.gamma, cfg.lam)
        with torch.no_grad():
            old_logits = agent.actor(batch["obs"])
        stats = update(agent, opt, batch, cfg, gen)
        stats = {**stats, "policy_kl": policy_kl(agent, batch["obs"], old_logits)}
        hist.env_steps.append(collector.env_steps)
        hist.wall_time.append(timer())
        hist._sync(collector.stats, hist.wall_time[-1])
        hist.log(lr=lr, **stats)
        bar.update(collector.env_steps - bar.n)
        bar.set_postfix(ret=f"{hist.mean_return_last():.0f}")
        if cfg.stop_at_return is not None and len(hist.episode_returns) >= 20 \
                and hist.mean_return_last(20) >= cfg.stop_at_return:
            break
    bar.close()
    envs.close()
    hist.agent = agent  # type: ignore[attr-defined]
    return hist
