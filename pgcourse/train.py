r"""Training loops on gymnasium environments: REINFORCE with any Ψ, and an actor-critic with GAE.

Both maximize :math:`J(\theta)=\mathbb E[\sum_t \gamma^t r_t]` with the surrogate of
:func:`pgcourse.estimators.pg_loss`; they differ only in the weights :math:`\Psi_t`.
Hyper-parameters are the function arguments, in one place; everything is seeded.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from . import estimators as est
from .baselines import MovingAverage, batch_mean_baseline
from .device import device as default_device
from .device import seed_everything, torch_threads
from .policies import MLPCategorical
from .returns import gae, reward_to_go
from .rollout import Collector, EpisodeCollector, EpisodeStats, Rollout, Timer, make_vec_env
from .validate import one_of, positive_float, positive_int, unit_interval

REINFORCE_PSI = ("full_return", "reward_to_go", "reward_to_go_minus_baseline")
BASELINES = ("batch_mean", "leave_one_out", "ema", "value")


@dataclass
class History:
    """What a training run did: per update, per finished episode, and anything extra."""

    env_steps: list[int] = field(default_factory=list)       # cumulative env steps at each update
    wall_time: list[float] = field(default_factory=list)     # seconds since the start, at each update
    episode_returns: list[float] = field(default_factory=list)
    episode_lengths: list[int] = field(default_factory=list)
    episode_end_steps: list[int] = field(default_factory=list)
    episode_end_times: list[float] = field(default_factory=list)
    extra: dict[str, list[float]] = field(default_factory=dict)
    label: str = ""

    def log(self, **values: float) -> None:
        for k, v in values.items():
            self.extra.setdefault(k, []).append(float(v))

    def mean_return_last(self, k: int = 20) -> float:
        """Mean return of the last ``k`` finished episodes (NaN if none finished)."""
        return float(np.mean(self.episode_returns[-k:])) if self.episode_returns else float("nan")

    def steps_to(self, threshold: float, window: int = 20) -> int | None:
        """Env steps when the mean return of the last ``window`` episodes first reached ``threshold``."""
        r = np.asarray(self.episode_returns, dtype=float)
        if len(r) < window:
            return None
        means = np.convolve(r, np.ones(window) / window, mode="valid")
        hit = np.flatnonzero(means >= threshold)
        return int(self.episode_end_steps[hit[0] + window - 1]) if hit.size else None

    def _sync(self, stats: EpisodeStats, now: float) -> None:
        new = len(stats.returns) - len(self.episode_returns)
        self.episode_returns += stats.returns[-new:] if new else []
        self.episode_lengths += stats.lengths[-new:] if new else []
        self.episode_end_steps += stats.end_steps[-new:] if new else []
        self.episode_end_times += [now] * new

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("env_steps", "wall_time", "episode_returns", "episode_lengths",
                                              "episode_end_steps", "extra", "label")}


def _mlp(sizes: Sequence[int], activation=nn.Tanh) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


def value_net(obs_dim: int, hidden: Sequence[int] = (64, 64)) -> nn.Module:
    """A state-value network V(o) → (N,) (squeezes the last axis)."""
    class _V(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = _mlp([obs_dim, *hidden, 1])

        def forward(self, obs):
            return self.net(obs).squeeze(-1)
    return _V()


def _masked_logp(policy: MLPCategorical, ro: Rollout) -> torch.Tensor:
    logits = policy.net(ro.obs)
    return torch.log_softmax(logits, -1).gather(-1, ro.actions.unsqueeze(-1)).squeeze(-1)


@torch_threads(1)
def reinforce(env_id: str = "CartPole-v1", psi: str = "reward_to_go", baseline: str | None = None,
              total_steps: int = 50_000, episodes_per_batch: int = 8, gamma: float = 0.99, lr: float = 1e-2,
              hidden: Sequence[int] = (32,), discount_t: bool = False, value_lr: float = 1e-2,
              value_epochs: int = 5, ema_decay: float = 0.9, seed: int = 0, device: torch.device | str | None = None,
              progress: bool = True) -> History:
    r"""REINFORCE: whole episodes from the current policy, :math:`\hat g = \frac1N\sum_i\sum_t \nabla\log\pi\,\Psi_t`.

    ``psi`` picks :math:`\Psi_t`: the full return, the reward-to-go, or the reward-to-go minus a
    ``baseline`` ("batch_mean", "leave_one_out", "ema" or "value", a learned V(s)). Like most code,
    training drops :math:`\gamma^t` by default (``discount_t=False``; notebook 2 measures the bias).
    """
    psi = one_of(psi, "psi", REINFORCE_PSI)
    if (psi == "reward_to_go_minus_baseline") != (baseline is not None):
        raise ValueError("baseline must be given exactly when psi='reward_to_go_minus_baseline'")
    if baseline is not None:
        one_of(baseline, "baseline", BASELINES)
    total_steps = positive_int(total_steps, "total_steps")
    n = positive_int(episodes_per_batch, "episodes_per_batch")
    gamma, lr = unit_interval(gamma, "gamma"), positive_float(lr, "lr")
    dev = torch.device(device) if device is not None else default_device()
    seed_everything(seed)
    envs = make_vec_env(env_id, n, seed=seed)
    obs_dim, n_actions = envs.single_observation_space.shape[0], int(envs.single_action_space.n)
    policy = MLPCategorical(obs_dim, n_actions, hidden).to(dev)
    opt = torch.optim.Adam(policy.parameters(), lr=lr)
    critic = value_net(obs_dim).to(dev) if baseline == "value" else None
    critic_opt = torch.optim.Adam(critic.parameters(), lr=value_lr) if critic is not None else None
    ema = MovingAverage(ema_decay)
    collector = EpisodeCollector(envs, policy.net, seed=seed, device=dev)
    hist, timer = History(label=psi if baseline is None else f"{psi} ({baseline})"), Timer()
    bar = tqdm(total=total_steps, disable=not progress, desc=f"REINFORCE {hist.label}", unit="step")
    while collector.env_steps < total_steps:
        ro = collector.collect()
        r, dones, m = ro.rewards, ro.dones, ro.mask
        if psi == "full_return":
            w = est.full_return_weights(r, gamma, dones)
        elif psi == "reward_to_go":
            w = est.reward_to_go_weights(r, gamma, dones, discount_t=discount_t)
        else:
            g = reward_to_go(r, gamma, dones)
            if baseline in ("batch_mean", "leave_one_out"):
                b = batch_mean_baseline(g, m, leave_one_out=baseline == "leave_one_out")
            elif baseline == "ema":
                b = torch.full_like(g, ema.value)
                ema.update(float(g[m].mean()))
            else:
                with torch.no_grad():
                    b = critic(ro.obs)
                for _ in range(value_epochs):
                    critic_opt.zero_grad()
                    ((critic(ro.obs) - g)[m] ** 2).mean().backward()
                    critic_opt.step()
            w = est.baseline_weights(r, b, gamma, dones, discount_t=discount_t)
        loss = est.pg_loss(_masked_logp(policy, ro), w, m)
        opt.zero_grad()
        loss.backward()
        opt.step()
        hist.env_steps.append(collector.env_steps)
        hist.wall_time.append(timer())
        hist._sync(collector.stats, hist.wall_time[-1])
        hist.log(loss=loss.item())
        bar.update(collector.env_steps - bar.n)
        bar.set_postfix(ret=f"{hist.mean_return_last():.0f}")
    bar.close()
    envs.close()
    return hist


@torch_threads(1)
def actor_critic(env_id: str = "CartPole-v1", total_steps: int = 50_000, n_envs: int = 8, n_steps: int = 32,
                 gamma: float = 0.99, lam: float = 0.95, lr: float = 3e-3, hidden: Sequence[int] = (64,),
                 value_coef: float = 0.5, entropy_coef: float = 0.0, normalize_advantages: bool = True,
                 max_grad_norm: float = 0.5, seed: int = 0, device: torch.device | str | None = None,
                 progress: bool = True) -> History:
    r"""Advantage actor-critic: a learned :math:`V_\phi` and :math:`\Psi_t = \hat A^{\text{GAE}(\gamma,\lambda)}_t`.

    Each update collects ``n_steps`` from ``n_envs`` environments, computes GAE (truncated
    episodes bootstrap from the final observation), and takes one gradient step on
    :math:`-\overline{\log\pi\,\hat A} + c_v \overline{(V_\phi - \hat R)^2} - c_e \bar{\mathcal H}`
    over real transitions.
    """
    total_steps, n_envs = positive_int(total_steps, "total_steps"), positive_int(n_envs, "n_envs")
    n_steps = positive_int(n_steps, "n_steps")
    gamma, lam, lr = unit_interval(gamma, "gamma"), unit_interval(lam, "lam"), positive_float(lr, "lr")
    dev = torch.device(device) if device is not None else default_device()
    seed_everything(seed)
    envs = make_vec_env(env_id, n_envs, seed=seed)
    obs_dim, n_actions = envs.single_observation_space.shape[0], int(envs.single_action_space.n)
    policy = MLPCategorical(obs_dim, n_actions, hidden).to(dev)
    critic = value_net(obs_dim, hidden).to(dev)
    opt = torch.optim.Adam([*policy.parameters(), *critic.parameters()], lr=lr)
    collector = Collector(envs, policy.net, critic, seed=seed, device=dev)
    hist, timer = History(label=f"actor-critic GAE(λ={lam})"), Timer()
    bar = tqdm(total=total_steps, disable=not progress, desc=hist.label, unit="step")
    while collector.env_steps < total_steps:
        ro = collector.collect(n_steps)
        adv, ret = gae(ro.rewards, ro.values, ro.next_values, ro.terminated, ro.truncated, gamma, lam)
        m = ro.mask
        a = adv[m]
        if normalize_advantages and a.numel() > 1:
            a = (a - a.mean()) / (a.std() + 1e-8)
        logits = policy.net(ro.obs[m])
        logp = torch.log_softmax(logits, -1).gather(-1, ro.actions[m].unsqueeze(-1)).squeeze(-1)
        entropy = torch.distributions.Categorical(logits=logits).entropy().mean()
        v_loss = ((critic(ro.obs[m]) - ret[m]) ** 2).mean()
        pg = -(logp * a.detach()).mean()
        loss = pg + value_coef * v_loss - entropy_coef * entropy
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_([*policy.parameters(), *critic.parameters()], max_grad_norm)
        opt.step()
        hist.env_steps.append(collector.env_steps)
        hist.wall_time.append(timer())
        hist._sync(collector.stats, hist.wall_time[-1])
        hist.log(loss=loss.item(), value_loss=v_loss.item(), entropy=entropy.item())
        bar.update(collector.env_steps - bar.n)
        bar.set_postfix(ret=f"{hist.mean_return_last():.0f}")
    bar.close()
    envs.close()
    return hist
