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


def _weights(psi: str, ro: Rollout, gamma: float, discount_t: bool, baseline_of) -> torch.Tensor:
    r"""REINFORCE's :math:`\Psi_t` for a batch of whole episodes; ``baseline_of(G)`` gives b for the baseline form."""
    r, dones = ro.rewards, ro.dones
    if psi == "full_return":
        return est.full_return_weights(r, gamma, dones)
    if psi == "reward_to_go":
        return est.reward_to_go_weights(r, gamma, dones, discount_t=discount_t)
    return est.baseline_weights(r, baseline_of(reward_to_go(r, gamma, dones)), gamma, dones, discount_t=discount_t)


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
        m = ro.mask

        def baseline_of(g: torch.Tensor) -> torch.Tensor:
            if baseline in ("batch_mean", "leave_one_out"):
                return batch_mean_baseline(g, m, leave_one_out=baseline == "leave_one_out")
            if baseline == "ema":
                b = torch.full_like(g, ema.value)
                ema.update(float(g[m].mean()))
                return b
            with torch.no_grad():
                b = critic(ro.obs)
            for _ in range(value_epochs):
                critic_opt.zero_grad()
                ((critic(ro.obs) - g)[m] ** 2).mean().backward()
                critic_opt.step()
            return b

        w = _weights(psi, ro, gamma, discount_t, baseline_of)
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


class StackedMLP(nn.Module):
    r"""K independent tanh MLPs evaluated at once: ``forward(x)`` maps (K, n, D) to (K, n, out), net k on x[k].

    Built from K ``nn.Sequential`` of Linear/Tanh layers (copies of their weights), so net k starts exactly
    where the k-th given network does. Because the loss of a batched run is the sum of the K runs'
    losses, each net's gradient is its own run's gradient, and Adam (elementwise) updates each as alone.
    """

    def __init__(self, nets: Sequence[nn.Module]):
        super().__init__()
        linears = [[m for m in net.modules() if isinstance(m, nn.Linear)] for net in nets]
        if not linears or any(len(ls) != len(linears[0]) for ls in linears) or not linears[0]:
            raise ValueError("nets must be a non-empty list of MLPs with the same layers")
        self.weights = nn.ParameterList(nn.Parameter(torch.stack([ls[i].weight.detach().T for ls in linears]))
                                        for i in range(len(linears[0])))
        self.biases = nn.ParameterList(nn.Parameter(torch.stack([ls[i].bias.detach() for ls in linears]).unsqueeze(1))
                                       for i in range(len(linears[0])))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            x = torch.baddbmm(b, x, w)
            if i < last:
                x = torch.tanh(x)
        return x


def _per_run_baseline(baseline: str, g: torch.Tensor, m: torch.Tensor, emas: list[MovingAverage], critic,
                      critic_opt, obs: torch.Tensor, value_epochs: int) -> torch.Tensor:
    """The baseline b (K, N, T) of each run from its own episodes only (``g``, ``m`` shaped (K, N, T))."""
    if baseline in ("batch_mean", "leave_one_out"):
        return torch.stack([batch_mean_baseline(g[k], m[k], leave_one_out=baseline == "leave_one_out")
                            for k in range(g.shape[0])])
    if baseline == "ema":
        b = torch.stack([torch.full_like(g[k], e.value) for k, e in enumerate(emas)])
        for k, e in enumerate(emas):
            if bool(m[k].any()):
                e.update(float(g[k][m[k]].mean()))
        return b
    K, N, T = g.shape
    flat_obs = obs.reshape(K, N * T, -1)
    with torch.no_grad():
        b = critic(flat_obs).reshape(K, N, T)
    w = m.to(g.dtype)
    for _ in range(value_epochs):        # each run's own mean squared error, summed over the runs
        critic_opt.zero_grad()
        sq = (critic(flat_obs).reshape(K, N, T) - g) ** 2 * w
        (sq.sum((1, 2)) / w.sum((1, 2)).clamp_min(1)).sum().backward()
        critic_opt.step()
    return b


@torch.no_grad()
def _freeze(params: Sequence[torch.Tensor], saved: Sequence[torch.Tensor] | None, done: torch.Tensor):
    """Keep the finished runs' slices (axis 0) of ``params`` as they were before an optimizer step."""
    if saved is not None and bool(done.any()):
        for p, s in zip(params, saved):
            p[done] = s[done]


def reinforce_seeds(seeds: Sequence[int] = (0, 1, 2, 3, 4), env_id: str = "CartPole-v1", psi: str = "reward_to_go",
                    baseline: str | None = None, total_steps: int = 50_000, episodes_per_batch: int = 8,
                    gamma: float = 0.99, lr: float = 1e-2, hidden: Sequence[int] = (32,), discount_t: bool = False,
                    value_lr: float = 1e-2, value_epochs: int = 5, ema_decay: float = 0.9, chunk: int = 16,
                    device: torch.device | str | None = None, progress: bool = False) -> list[History]:
    r""":func:`reinforce` for several seeds at once: one run per seed, all stepped together, a History each.

    The same algorithm and arguments as :func:`reinforce`; run k starts from the network that
    ``reinforce(seed=seeds[k])`` starts from (and, with a learned V, the same critic). The runs share one
    vector environment of ``len(seeds) × episodes_per_batch`` copies (seeded with ``seeds[0]``) and one
    action sampler, so run k's episodes are not those of ``reinforce(seed=seeds[k])``; the result depends
    only on ``seeds`` and the arguments. A run stops learning and collecting once it has used
    ``total_steps`` environment steps. Every network op covers all runs (batched matmuls), so K seeds cost
    little more than one.
    """
    psi = one_of(psi, "psi", REINFORCE_PSI)
    if (psi == "reward_to_go_minus_baseline") != (baseline is not None):
        raise ValueError("baseline must be given exactly when psi='reward_to_go_minus_baseline'")
    if baseline is not None:
        one_of(baseline, "baseline", BASELINES)
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be a non-empty list of distinct ints, got {seeds}")
    total_steps = positive_int(total_steps, "total_steps")
    n = positive_int(episodes_per_batch, "episodes_per_batch")
    gamma, lr = unit_interval(gamma, "gamma"), positive_float(lr, "lr")
    dev = torch.device(device) if device is not None else default_device()
    K = len(seeds)
    with torch_threads(1):
        envs = make_vec_env(env_id, K * n, seed=seeds[0])
        obs_dim, n_actions = envs.single_observation_space.shape[0], int(envs.single_action_space.n)
        nets, critics = [], []
        for s in seeds:                     # the initial networks of reinforce(seed=s)
            seed_everything(s)
            nets.append(MLPCategorical(obs_dim, n_actions, hidden).net)
            if baseline == "value":
                critics.append(value_net(obs_dim).net)
        policy = StackedMLP(nets).to(dev)
        opt = torch.optim.Adam(policy.parameters(), lr=lr)
        critic = StackedMLP(critics).to(dev) if critics else None
        critic_opt = torch.optim.Adam(critic.parameters(), lr=value_lr) if critic is not None else None
        emas = [MovingAverage(ema_decay) for _ in seeds]
        collector = EpisodeCollector(envs, lambda o: policy(o.view(K, n, -1)).reshape(K * n, -1), seed=seeds[0],
                                     device=dev)
        label = psi if baseline is None else f"{psi} ({baseline})"
        hists, timer = [History(label=label) for _ in seeds], Timer()
        steps = torch.zeros(K, dtype=torch.long)
        bar = tqdm(total=K * total_steps, disable=not progress, desc=f"REINFORCE {label} x {K} seeds", unit="step")
        while bool((steps < total_steps).any()):
            active = steps < total_steps
            ro = collector.collect(chunk, rows=active.repeat_interleave(n).numpy())
            T = ro.rewards.shape[-1]
            r, dones, m = ro.rewards, ro.dones, ro.mask
            w = _weights(psi, ro, gamma, discount_t, lambda g: _per_run_baseline(
                baseline, g.view(K, n, T), m.view(K, n, T), emas, critic, critic_opt, ro.obs, value_epochs).reshape(K * n, T))
            logp = torch.log_softmax(policy(ro.obs.reshape(K, n * T, -1)), -1).view(K * n, T, -1)
            logp = logp.gather(-1, ro.actions.unsqueeze(-1)).squeeze(-1)
            per_run = (torch.where(m, logp, torch.zeros_like(logp)) * w.detach()).view(K, n * T).sum(-1) / -n
            saved = [p.detach().clone() for p in policy.parameters()] if not bool(active.all()) else None
            opt.zero_grad()
            per_run.sum().backward()          # = the sum of each run's pg_loss: each net gets its own gradient
            opt.step()
            _freeze(list(policy.parameters()), saved, ~active)
            now = timer()
            lengths, ends = m.sum(-1), dones.float().argmax(-1)
            for k in active.nonzero().flatten().tolist():
                h, rows = hists[k], range(k * n, (k + 1) * n)
                for i in sorted(rows, key=lambda i: (int(ends[i]), i)):    # in order of ending, as reinforce
                    steps[k] += int(lengths[i])
                    h.episode_returns.append(float(r[i].sum()))
                    h.episode_lengths.append(int(lengths[i]))
                    h.episode_end_steps.append(int(steps[k]))
                    h.episode_end_times.append(now)
                h.env_steps.append(int(steps[k]))
                h.wall_time.append(now)
                h.log(loss=float(per_run[k].detach()))
            bar.update(int(steps.clamp_max(total_steps).sum()) - bar.n)
        bar.close()
        envs.close()
    return hists
