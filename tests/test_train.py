"""pgcourse.train: History bookkeeping, determinism, every Ψ and baseline runs, CartPole learns, bad input."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pgcourse.rollout import EpisodeStats
from pgcourse.train import BASELINES, History, actor_critic, reinforce, value_net

RANDOM_CARTPOLE = 22.0  # mean episode length of the uniform random policy on CartPole-v1


def _fields(h: History) -> dict:
    d = h.to_dict()
    d.pop("label")
    return d


# ---- History ---------------------------------------------------------------------------------------------------

def test_history_sync_and_summaries():
    h, s = History(), EpisodeStats()
    s.returns += [10.0, 20.0]
    s.lengths += [10, 20]
    s.end_steps += [10, 30]
    h._sync(s, 1.0)
    h._sync(s, 2.0)  # nothing new: nothing appended
    s.returns += [30.0, 40.0, 50.0]
    s.lengths += [30, 40, 50]
    s.end_steps += [60, 100, 150]
    h._sync(s, 3.0)
    assert h.episode_returns == [10.0, 20.0, 30.0, 40.0, 50.0]
    assert h.episode_end_steps == [10, 30, 60, 100, 150]
    assert h.episode_end_times == [1.0, 1.0, 3.0, 3.0, 3.0]
    assert h.mean_return_last(2) == 45.0
    assert h.mean_return_last() == 30.0
    # moving mean over 2 episodes: 15, 25, 35, 45 -> first >= 30 is the window ending at episode 3 (step 100)
    assert h.steps_to(30.0, window=2) == 100
    assert h.steps_to(46.0, window=2) is None
    assert h.steps_to(10.0, window=6) is None  # fewer episodes than the window
    assert math.isnan(History().mean_return_last())
    h.log(loss=1.5)
    h.log(loss=2)
    assert h.extra == {"loss": [1.5, 2.0]}


# ---- determinism -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("train, kwargs", [
    (reinforce, dict(psi="full_return")),
    (reinforce, dict(psi="reward_to_go_minus_baseline", baseline="value")),
    (actor_critic, dict()),
], ids=["reinforce-full", "reinforce-value", "actor-critic"])
def test_same_seed_same_history(train, kwargs):
    a = train(total_steps=1500, seed=3, progress=False, device="cpu", **kwargs)
    b = train(total_steps=1500, seed=3, progress=False, device="cpu", **kwargs)
    c = train(total_steps=1500, seed=4, progress=False, device="cpu", **kwargs)
    for k in ("env_steps", "episode_returns", "episode_lengths", "episode_end_steps", "extra"):
        assert getattr(a, k) == getattr(b, k), k
    assert a.episode_returns != c.episode_returns
    assert a.env_steps[-1] >= 1500 and len(a.wall_time) == len(a.env_steps)
    assert a.episode_end_steps == sorted(a.episode_end_steps)
    assert sum(a.episode_lengths) <= a.env_steps[-1]


def test_reinforce_env_steps_are_the_episodes_used():
    h = reinforce(total_steps=1000, episodes_per_batch=4, seed=0, progress=False, device="cpu")
    assert len(h.episode_returns) == 4 * len(h.env_steps)  # every update uses 4 whole episodes
    assert h.episode_end_steps[-1] == h.env_steps[-1] == sum(h.episode_lengths)
    assert h.episode_returns == [float(n) for n in h.episode_lengths]  # CartPole pays 1 per step


@pytest.mark.parametrize("baseline", BASELINES)
def test_every_baseline_runs(baseline):
    h = reinforce(psi="reward_to_go_minus_baseline", baseline=baseline, total_steps=600, seed=0, progress=False,
                  device="cpu")
    assert h.episode_returns and all(np.isfinite(h.extra["loss"]))
    assert baseline in h.label


def test_training_leaves_the_thread_count_alone():
    before = torch.get_num_threads()
    reinforce(total_steps=200, seed=0, progress=False, device="cpu")
    assert torch.get_num_threads() == before


# ---- learning --------------------------------------------------------------------------------------------------

def test_reinforce_reward_to_go_learns_cartpole():
    # 15k steps: seeds 0-4 reach 145-224 (the uniform random policy: about 22)
    h = reinforce(psi="reward_to_go", total_steps=15_000, seed=0, progress=False, device="cpu")
    assert h.mean_return_last(20) > 4 * RANDOM_CARTPOLE
    assert np.mean(h.episode_returns[:20]) < 2 * RANDOM_CARTPOLE  # it started out random


def test_actor_critic_learns_cartpole():
    # 15k steps: seeds 0-4 reach 84-172
    h = actor_critic(total_steps=15_000, seed=0, progress=False, device="cpu")
    assert h.mean_return_last(20) > 3 * RANDOM_CARTPOLE
    assert set(h.extra) >= {"loss", "value_loss", "entropy"}


# ---- devices and bad input -------------------------------------------------------------------------------------

def test_runs_on_device(dev):
    h = reinforce(total_steps=300, seed=0, progress=False, device=dev)
    assert h.episode_returns
    h = actor_critic(total_steps=300, n_envs=2, seed=0, progress=False, device=dev)
    assert h.env_steps[-1] >= 300


def test_value_net_shape():
    v = value_net(4, (8,))
    assert v(torch.zeros(5, 4)).shape == (5,)
    assert v(torch.zeros(2, 3, 4)).shape == (2, 3)


@pytest.mark.parametrize("kwargs, match", [
    (dict(psi="advantage"), "psi"),
    (dict(psi="reward_to_go_minus_baseline"), "baseline"),
    (dict(psi="reward_to_go", baseline="ema"), "baseline"),
    (dict(psi="reward_to_go_minus_baseline", baseline="median"), "baseline"),
    (dict(total_steps=0), "total_steps"),
    (dict(episodes_per_batch=0), "episodes_per_batch"),
    (dict(gamma=1.5), "gamma"),
    (dict(lr=-1.0), "lr"),
])
def test_reinforce_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        reinforce(progress=False, **kwargs)


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_envs=0), "n_envs"), (dict(n_steps=0), "n_steps"), (dict(lam=2.0), "lam"), (dict(gamma=-0.1), "gamma"),
    (dict(total_steps=-5), "total_steps"),
])
def test_actor_critic_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        actor_critic(progress=False, **kwargs)
