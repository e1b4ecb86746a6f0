r"""GAE on a real gymnasium rollout: FrozenLake-v1 in a vector environment, whose dynamics we know exactly.

Gymnasium 1.x vector environments autoreset with ``NEXT_STEP``: the ``step`` call *after* an episode
ends resets that environment; it ignores the action, returns reward 0, ``terminated = truncated =
False`` and the first observation of the next episode. That call is no transition of the MDP. The call
that ends an episode returns the *final* observation, so with the observations stacked time-last,
``obs[:, t + 1]`` is the state the step t led to, and a truncated step bootstraps from its value.

:func:`lake_rollout` records such a rollout; :func:`naive_rollout_advantages` turns it into
advantages the way a first attempt does (two silent bugs), :func:`rollout_advantages` does it right, and
:func:`td_bias` measures each against the exact advantage :math:`A(s, a)` of the lake.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import gymnasium as gym
import numpy as np
import torch

from ...mdp import TabularMDP
from ...returns import gae

__all__ = ["LakeRollout", "TDBias", "bias_rollout", "lake_mdp", "lake_rollout", "lake_values", "naive_rollout_advantages",
           "policy_actions", "rollout_advantages", "td_bias"]

LAKE_ID = "FrozenLake-v1"
LONG = 2000     # a horizon long enough that γ^H is 0 to double precision: the values of the endless task


@dataclass
class LakeRollout:
    """One rollout of ``n_envs`` lakes for ``T`` steps, time last, exactly as the vector env returned it."""

    obs: torch.Tensor          # (N, T + 1) long: obs[:, t] before step t, obs[:, T] after the last step
    actions: torch.Tensor      # (N, T) long
    rewards: torch.Tensor      # (N, T) float64
    terminated: torch.Tensor   # (N, T) bool
    truncated: torch.Tensor    # (N, T) bool


def lake_rollout(actions: Callable[[np.ndarray, int], np.ndarray] | np.ndarray, n_envs: int, n_steps: int,
                 time_limit: int = 100, seed: int = 0, slippery: bool = True) -> LakeRollout:
    """Step ``n_envs`` FrozenLake-v1 copies (``gymnasium.make_vec``, NEXT_STEP autoreset) for ``n_steps`` steps.

    ``actions`` is an (n_steps, n_envs) array, or a function ``(obs, t) -> actions`` of the current observations.
    """
    envs = gym.make_vec(LAKE_ID, num_envs=n_envs, vectorization_mode="sync", max_episode_steps=time_limit,
                        is_slippery=slippery)
    if envs.metadata.get("autoreset_mode", gym.vector.AutoresetMode.NEXT_STEP) != gym.vector.AutoresetMode.NEXT_STEP:
        raise RuntimeError("this lesson expects gymnasium's NEXT_STEP autoreset")
    o, _ = envs.reset(seed=seed)
    obs, acts, rew, term, trunc = [np.asarray(o)], [], [], [], []
    for t in range(n_steps):
        a = np.asarray(actions(obs[-1], t) if callable(actions) else actions[t], dtype=np.int64)
        o, r, te, tr, _ = envs.step(a)
        obs.append(np.asarray(o)), acts.append(a), rew.append(r), term.append(te), trunc.append(tr)
    envs.close()
    tl = lambda xs, dt: torch.as_tensor(np.stack(xs, 1), dtype=dt)  # noqa: E731  (T, N) lists -> (N, T)
    return LakeRollout(tl(obs, torch.long), tl(acts, torch.long), tl(rew, torch.float64), tl(term, torch.bool),
                       tl(trunc, torch.bool))


def policy_actions(logits: torch.Tensor, gen: torch.Generator) -> Callable[[np.ndarray, int], np.ndarray]:
    """Actions of the tabular softmax policy with ``logits`` (S, A), drawn with ``gen``."""
    probs = torch.softmax(logits.double(), -1)
    return lambda obs, t: torch.multinomial(probs[torch.as_tensor(obs)], 1, generator=gen).squeeze(-1).numpy()


@lru_cache(maxsize=4)
def lake_mdp(gamma: float) -> TabularMDP:
    """FrozenLake-v1 (slippery, reward 1 at the goal) as a :class:`TabularMDP` with a very long horizon."""
    return TabularMDP.from_gymnasium(gym.make(LAKE_ID), horizon=LONG, gamma=gamma)


def lake_values(logits: torch.Tensor, gamma: float) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The exact values of the endless lake, :math:`V(s)` (S,) and :math:`Q(s,a)` (S, A): what a time limit cuts off."""
    V, Q = lake_mdp(gamma).values(logits.double())
    return V[0], Q[0]


# ---- from a rollout to advantages ---------------------------------------------------------------------------

def naive_rollout_advantages(obs, rewards, terminated, truncated, V, gamma, lam):
    """GAE advantages and the mask of the steps to train on, for a rollout of a gymnasium vector env."""
    values, next_values = V[obs[..., :-1]], V[obs[..., 1:]]
    ended = terminated | truncated
    advantages, _ = gae(rewards, values, next_values, ended, None, gamma, lam)  # the episode ended: nothing after it
    mask = torch.ones_like(ended)                                               # every step is a transition
    return advantages, mask


def rollout_advantages(obs, rewards, terminated, truncated, V, gamma, lam):
    r"""GAE advantages (0 where masked) and the mask of real transitions, for a NEXT_STEP-autoreset rollout.

    The step after a done is gymnasium's reset, not a transition: masked. A truncated step bootstraps
    from :math:`V(\text{obs}_{t+1})`, the final observation; a terminated one does not.
    """
    values, next_values = V[obs[..., :-1]], V[obs[..., 1:]]
    advantages, _ = gae(rewards, values, next_values, terminated, truncated, gamma, lam)
    done = terminated | truncated
    mask = torch.ones_like(done)
    mask[..., 1:] = ~done[..., :-1]
    return advantages.masked_fill(~mask, 0.0), mask


# ---- measured against the exact advantage ---------------------------------------------------------------------

@dataclass
class TDBias:
    r"""The mean of :math:`\hat A_t - A(s_t, a_t)` over the steps a function's mask keeps, with its SE."""

    mean: float
    se: float
    n_steps: int        # steps the mask keeps
    n_fake: int         # of which autoreset steps (no transition)
    n_impossible: int   # of which transitions the lake's dynamics cannot make, P(s' | s, a) = 0
    n_truncated: int    # real steps cut by the time limit

    @property
    def z(self) -> float:
        return self.mean / self.se


@lru_cache(maxsize=2)
def bias_rollout(seed: int = 0, n_envs: int = 16, n_steps: int = 400, time_limit: int = 8) -> LakeRollout:
    """The rollout :func:`td_bias` measures on: the lesson's policy on 16 slippery lakes, time limit 8."""
    from .experiments import lesson_mdp
    _, logits = lesson_mdp()
    gen = torch.Generator().manual_seed(seed)
    return lake_rollout(policy_actions(logits, gen), n_envs, n_steps, time_limit, seed)


def td_bias(fn, gamma: float = 0.95, seed: int = 0) -> TDBias:
    r"""Run ``fn(obs, rewards, terminated, truncated, V, gamma, 0.0)`` with the exact V of the endless lake on
    :func:`bias_rollout` and compare its TD residuals with :math:`A(s_t,a_t)` on the steps its mask keeps.

    With the exact V, :math:`\mathbb E[\delta_t \mid s_t, a_t] = A(s_t, a_t)` on every real step (a truncated
    one included, if it bootstraps), and the :math:`\delta_t - A` are uncorrelated across steps, so
    z = mean / SE is about N(0, 1) for a right ``fn``.
    """
    from .experiments import lesson_mdp
    _, logits = lesson_mdp()
    V, Q = lake_values(logits, gamma)
    ro = bias_rollout(seed)
    adv, mask = fn(ro.obs, ro.rewards, ro.terminated, ro.truncated, V.clone(), gamma, 0.0)
    mask = torch.as_tensor(mask, dtype=torch.bool)
    A = Q - V.unsqueeze(-1)
    s, s2 = ro.obs[:, :-1], ro.obs[:, 1:]
    err = (adv - A[s, ro.actions])[mask]
    real = torch.ones_like(mask)
    real[:, 1:] = ~(ro.terminated | ro.truncated)[:, :-1]
    impossible = lake_mdp(gamma).P[s, ro.actions, s2] == 0
    return TDBias(float(err.mean()), float(err.std() / err.numel() ** 0.5), int(mask.sum()),
                  int((mask & ~real).sum()), int((mask & impossible).sum()), int((mask & ro.truncated).sum()))
