r"""Rollouts from gymnasium vector environments into time-last tensors.

Gymnasium 1.x vector environments autoreset with ``NEXT_STEP``: the step *after* an episode
ends returns the first observation of the next episode, with reward 0, and ignores the action.
That step is no transition of the MDP, so it gets ``mask = False`` here and never enters a loss,
an advantage normalization or a statistic. The step that ends an episode returns the episode's
*final* observation, so for every real step

.. math:: \text{next\_values}_t = V(o_{t+1}),

which for a truncated step is the value of the final observation: truncation bootstraps,
termination does not (``gae`` ignores ``next_values`` where ``terminated``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, fields
from typing import Callable, Optional

import gymnasium as gym
import numpy as np
import torch

from .device import generator as make_generator
from .validate import positive_int

LogitsFn = Callable[[torch.Tensor], torch.Tensor]
ValueFn = Callable[[torch.Tensor], torch.Tensor]


def make_vec_env(env_id: str = "CartPole-v1", n_envs: int = 8, seed: int = 0, **kwargs) -> gym.vector.VectorEnv:
    """``gymnasium.make_vec`` (CartPole's numpy-batched env where there is one), reset with ``seed``.

    Only ``NEXT_STEP`` and ``SAME_STEP`` autoreset are supported by :class:`Collector`.
    """
    positive_int(n_envs, "n_envs")
    envs = gym.make_vec(env_id, num_envs=n_envs, **kwargs)
    autoreset_mode(envs)
    envs.reset(seed=seed)
    envs.action_space.seed(seed)
    return envs


def autoreset_mode(envs: gym.vector.VectorEnv) -> gym.vector.AutoresetMode:
    """The vector environment's autoreset mode; a ``ValueError`` unless NEXT_STEP or SAME_STEP."""
    mode = envs.metadata.get("autoreset_mode", gym.vector.AutoresetMode.NEXT_STEP)
    if mode not in (gym.vector.AutoresetMode.NEXT_STEP, gym.vector.AutoresetMode.SAME_STEP):
        raise ValueError(f"envs: autoreset mode {mode} is not supported (use NEXT_STEP or SAME_STEP)")
    return mode


@dataclass
class Rollout:
    """``n_steps`` steps of ``n_envs`` environments, time last: rewards[env, t], obs[env, t, :].

    ``mask`` is False on autoreset steps (no transition), whose rewards are 0.
    """

    obs: torch.Tensor          # (N, T, D)
    actions: torch.Tensor      # (N, T)
    logp: torch.Tensor         # (N, T) log π(a_t|o_t) under the policy that acted
    rewards: torch.Tensor      # (N, T)
    terminated: torch.Tensor   # (N, T) bool
    truncated: torch.Tensor    # (N, T) bool
    mask: torch.Tensor         # (N, T) bool: a real transition
    values: Optional[torch.Tensor] = None       # (N, T) V(o_t)
    next_values: Optional[torch.Tensor] = None  # (N, T) V(o_{t+1}); final observation's value when truncated

    @property
    def dones(self) -> torch.Tensor:
        return self.terminated | self.truncated

    @property
    def n_transitions(self) -> int:
        return int(self.mask.sum())

    def flat(self, mask: bool = True) -> dict[str, torch.Tensor]:
        """Every field flattened over (env, time), keeping only real transitions by default."""
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if v is None:
                continue
            v = v.reshape(-1, *v.shape[2:])
            out[f.name] = v[self.mask.reshape(-1)] if mask else v
        return out


@dataclass
class EpisodeStats:
    """Returns and lengths of the episodes that ended, and the env-step count when each ended."""

    returns: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    end_steps: list[int] = field(default_factory=list)


class Collector:
    """Steps a vector environment with a policy and returns :class:`Rollout` batches.

    ``logits_fn(obs) -> logits (N, A)`` picks actions (sampled with a seeded generator);
    ``value_fn(obs) -> (N,)`` (optional) fills ``values`` and ``next_values``. Episode statistics
    accumulate in ``self.stats``; ``self.env_steps`` counts real transitions (autoreset steps,
    which are none, are not counted), so the count does not depend on the autoreset mode.
    """

    def __init__(self, envs: gym.vector.VectorEnv, logits_fn: LogitsFn, value_fn: ValueFn | None = None,
                 seed: int = 0, device: torch.device | str = "cpu"):
        self.envs, self.logits_fn, self.value_fn = envs, logits_fn, value_fn
        self.device = torch.device(device)
        self.n_envs = envs.num_envs
        self.same_step = autoreset_mode(envs) == gym.vector.AutoresetMode.SAME_STEP
        obs, _ = envs.reset(seed=seed)
        self.obs = np.asarray(obs, dtype=np.float32)
        self.prev_done = np.zeros(self.n_envs, dtype=bool)
        self.gen = make_generator(seed, self.device)
        self.ep_return = np.zeros(self.n_envs)
        self.ep_length = np.zeros(self.n_envs, dtype=np.int64)
        self.stats = EpisodeStats()
        self.env_steps = 0

    def _to_torch(self, x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(x).to(self.device)

    @torch.no_grad()
    def collect(self, n_steps: int) -> Rollout:
        T, N = positive_int(n_steps, "n_steps"), self.n_envs
        obs_buf = np.empty((T + 1, N) + self.obs.shape[1:], dtype=np.float32)
        final_obs = np.empty_like(obs_buf[:T])
        rew = np.zeros((T, N), dtype=np.float32)
        term = np.zeros((T, N), dtype=bool)
        trunc = np.zeros((T, N), dtype=bool)
        valid = np.zeros((T, N), dtype=bool)
        act = torch.empty((T, N), dtype=torch.long, device=self.device)
        logp = torch.empty((T, N), device=self.device)
        for t in range(T):
            obs_buf[t] = self.obs
            logits = self.logits_fn(self._to_torch(self.obs))
            a = torch.multinomial(torch.softmax(logits, -1), 1, generator=self.gen).squeeze(-1)
            act[t] = a
            logp[t] = torch.log_softmax(logits, -1).gather(-1, a.unsqueeze(-1)).squeeze(-1)
            obs, r, te, tr, info = self.envs.step(a.cpu().numpy())
            obs = np.asarray(obs, dtype=np.float32)
            real = ~self.prev_done  # NEXT_STEP: a step right after a done only resets
            done = (te | tr) & real
            rew[t], term[t], trunc[t], valid[t] = np.where(real, r, 0.0), te & real, tr & real, real
            final_obs[t] = obs
            if self.same_step and done.any():  # SAME_STEP: obs is already the reset obs
                final_obs[t][done] = np.stack(info["final_obs"][done])
            self.ep_return += np.where(real, r, 0.0)
            self.ep_length += real
            self.env_steps += int(real.sum())
            for i in np.flatnonzero(done):
                self.stats.returns.append(float(self.ep_return[i]))
                self.stats.lengths.append(int(self.ep_length[i]))
                self.stats.end_steps.append(self.env_steps)
            self.ep_return[done], self.ep_length[done] = 0.0, 0
            self.prev_done = done if not self.same_step else np.zeros_like(done)
            self.obs = obs
        obs_buf[T] = self.obs
        tt = lambda x: self._to_torch(np.ascontiguousarray(np.swapaxes(x, 0, 1)))  # noqa: E731  (T, N) -> (N, T)
        out = Rollout(obs=tt(obs_buf[:T]), actions=act.T.contiguous(), logp=logp.T.contiguous(), rewards=tt(rew),
                      terminated=tt(term), truncated=tt(trunc), mask=tt(valid))
        if self.value_fn is not None:
            v_all = self.value_fn(self._to_torch(obs_buf).reshape(-1, obs_buf.shape[-1])).reshape(T + 1, N)
            v_next = v_all[1:]
            if self.same_step:
                v_next = self.value_fn(self._to_torch(final_obs).reshape(-1, final_obs.shape[-1])).reshape(T, N)
            out.values, out.next_values = v_all[:T].T.contiguous(), v_next.T.contiguous()
        return out


def first_episode_mask(dones: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """True on the valid steps of each row's FIRST episode (up to and including its first done)."""
    ended_before = (torch.cumsum((dones & mask).int(), -1) - (dones & mask).int()) > 0
    return mask & ~ended_before


class EpisodeCollector(Collector):
    """Whole episodes, one per environment, all sampled by the current policy (REINFORCE's batches).

    Each call resets every environment, steps until each has finished its first episode
    (terminated, or truncated by the time limit), and keeps only those first episodes: row i of the
    returned :class:`Rollout` is episode i, padded with ``mask = False``. ``env_steps`` counts the
    transitions kept; the steps an early finisher takes while waiting for the others are discarded.
    The environments are seeded once, by the constructor; each reset continues their random streams
    (reseeding every call with ``seed + call`` would replay initial states: a ``SyncVectorEnv``
    seeds its environment i with ``seed + i``).
    """

    def __init__(self, envs, logits_fn, value_fn=None, seed: int = 0, device="cpu", max_steps: int = 10_000):
        super().__init__(envs, logits_fn, value_fn, seed, device)
        self.max_steps = positive_int(max_steps, "max_steps")

    @torch.no_grad()
    def collect(self, n_steps: int | None = None, rows=None) -> Rollout:
        """One batch of whole episodes, stepping ``n_steps`` (default 64) at a time until all have ended.

        ``rows`` (booleans, one per environment; default all) names the environments whose episode
        is wanted: only they are waited for; the other rows are cut wherever they are, get
        ``mask = False`` everywhere and count neither in ``env_steps`` nor in ``stats``.
        """
        wanted = np.ones(self.n_envs, dtype=bool) if rows is None else np.asarray(rows, dtype=bool).reshape(-1)
        if wanted.shape != (self.n_envs,):
            raise ValueError(f"rows must hold one boolean per environment ({self.n_envs}), got shape {wanted.shape}")
        if not wanted.any():
            raise ValueError("rows must select at least one environment")
        obs, _ = self.envs.reset()
        self.obs = np.asarray(obs, dtype=np.float32)
        self.prev_done[:] = False
        self.ep_return[:], self.ep_length[:] = 0.0, 0
        stats, steps, self.stats = self.stats, self.env_steps, EpisodeStats()
        chunks, finished = [], ~wanted
        while not finished.all():
            if sum(c.mask.shape[1] for c in chunks) >= self.max_steps:
                raise RuntimeError(f"episodes longer than max_steps={self.max_steps}")
            chunk = super().collect(n_steps or 64)
            finished |= chunk.dones.any(-1).cpu().numpy()
            chunks.append(chunk)
        out = Rollout(**{f.name: torch.cat([getattr(c, f.name) for c in chunks], 1)
                         for f in fields(Rollout) if getattr(chunks[0], f.name) is not None})
        out.mask = first_episode_mask(out.dones, out.mask) & torch.from_numpy(wanted).to(out.mask.device).unsqueeze(-1)
        last = int(out.mask.any(0).nonzero().max()) + 1
        out = Rollout(**{f.name: (getattr(out, f.name)[:, :last] if getattr(out, f.name) is not None else None)
                         for f in fields(Rollout)})
        for f in ("terminated", "truncated"):
            setattr(out, f, getattr(out, f) & out.mask)
        out.rewards = out.rewards * out.mask
        # statistics of the kept episodes only, in order of ending
        lengths = out.mask.sum(-1)
        ends = out.dones.float().argmax(-1)
        order = torch.argsort(ends, stable=True).tolist()
        self.stats = stats
        for i in (i for i in order if wanted[i]):
            steps += int(lengths[i])
            self.stats.returns.append(float(out.rewards[i].sum()))
            self.stats.lengths.append(int(lengths[i]))
            self.stats.end_steps.append(steps)
        self.env_steps = steps
        return out


class Timer:
    """Wall seconds since construction (for History.wall_time)."""

    def __init__(self):
        self.t0 = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.t0
