"""pgcourse.rollout on an environment whose dynamics the test knows.

``Counter`` observes (env index j, episode number e, step k). Action a in step k pays
1000 j + 100 e + 10 k + a and leads to (j, e, k + 1); episode e of env j terminates after
LENGTHS[(e + j) % 5] steps, and a TimeLimit truncates every episode after MAX_STEPS. So every
field of every transition a rollout keeps can be checked against the truth: no autoreset step
(reset observation, ignored action) may be kept, none of the real ones may be lost, the flags
must be right, and a truncated step must bootstrap from its final observation's value.
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from pgcourse.estimators import pg_loss
from pgcourse.returns import gae
from pgcourse.rollout import Collector, EpisodeCollector, Rollout, first_episode_mask, make_vec_env

LENGTHS = (2, 7, 3, 5, 1)   # 7 is cut by the time limit; 5 terminates on the time limit's step (both flags)
MAX_STEPS = 5
MODES = [gym.vector.AutoresetMode.NEXT_STEP, gym.vector.AutoresetMode.SAME_STEP]


class Counter(gym.Env):
    """obs = (j, e, k); reward 1000 j + 100 e + 10 k + a; terminates after LENGTHS[(e + j) % 5] steps."""

    def __init__(self, j: int):
        self.j, self.e, self.k = j, -1, 0
        self.observation_space = gym.spaces.Box(0.0, 1e6, (3,), np.float32)
        self.action_space = gym.spaces.Discrete(2)

    def _obs(self):
        return np.array([self.j, self.e, self.k], dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.e, self.k = self.e + 1, 0
        return self._obs(), {}

    def step(self, action):
        assert self.action_space.contains(action)
        r = 1000.0 * self.j + 100.0 * self.e + 10.0 * self.k + int(action)
        self.k += 1
        return self._obs(), r, self.k == LENGTHS[(self.e + self.j) % 5], False, {}


def counter_envs(n: int = 3, mode=gym.vector.AutoresetMode.NEXT_STEP) -> gym.vector.SyncVectorEnv:
    return gym.vector.SyncVectorEnv([lambda j=j: gym.wrappers.TimeLimit(Counter(j), MAX_STEPS) for j in range(n)],
                                    autoreset_mode=mode)


def value_of(obs: torch.Tensor) -> torch.Tensor:
    """A value function that names its observation: V(j, e, k) = 10000 j + 100 e + k."""
    return obs[..., 0] * 10000 + obs[..., 1] * 100 + obs[..., 2]


def uniform_logits(obs: torch.Tensor) -> torch.Tensor:
    return torch.zeros(obs.shape[0], 2)


def episode_length(j: int, e: int) -> int:
    return min(LENGTHS[(e + j) % 5], MAX_STEPS)


def cat(rollouts: list[Rollout]) -> Rollout:
    return Rollout(**{k: torch.cat([getattr(r, k) for r in rollouts], 1) for k in
                      ("obs", "actions", "logp", "rewards", "terminated", "truncated", "mask", "values",
                       "next_values")})


@pytest.fixture(params=MODES, ids=lambda m: m.name)
def collected(request):
    envs = counter_envs(3, request.param)
    col = Collector(envs, uniform_logits, value_of, seed=0)
    ro = cat([col.collect(n) for n in (4, 1, 7, 6, 5)])  # boundaries between calls fall anywhere
    return request.param, col, ro


def test_kept_transitions_are_exactly_the_true_ones(collected):
    mode, col, ro = collected
    for j in range(3):
        m = ro.mask[j]
        obs = ro.obs[j][m].long().tolist()
        assert all(o[0] == j for o in obs)
        e0 = obs[0][1]
        truth = [(e, k) for e in range(e0, e0 + 30) for k in range(episode_length(j, e))][:len(obs)]
        # every real transition, in order, none lost, none invented (no reset observation as a "step")
        assert [(o[1], o[2]) for o in obs] == truth
        e, k = ro.obs[j, m, 1], ro.obs[j, m, 2]
        a = ro.actions[j][m].float()
        assert torch.equal(ro.rewards[j][m], 1000.0 * j + 100 * e + 10 * k + a)  # the action taken was applied
        ends = torch.tensor([k_ + 1 == episode_length(j, int(e_)) for e_, k_ in zip(e.tolist(), k.tolist())])
        term = torch.tensor([k_ + 1 == LENGTHS[(int(e_) + j) % 5] for e_, k_ in zip(e.tolist(), k.tolist())])
        assert torch.equal(ro.terminated[j][m], term)
        assert torch.equal(ro.truncated[j][m], ends & (k + 1 == MAX_STEPS))
        # next_values is V of the true next observation: the final one at a done step, bootstrap included
        assert torch.equal(ro.values[j][m], value_of(ro.obs[j][m]))
        assert torch.equal(ro.next_values[j][m], j * 10000 + e * 100 + k + 1)


def test_both_kinds_of_end_occur(collected):
    _, _, ro = collected
    m = ro.mask
    assert bool((ro.truncated & ~ro.terminated & m).any()), "a pure truncation (length 7 cut at 5)"
    assert bool((ro.terminated & ~ro.truncated & m).any())
    assert bool((ro.terminated & ro.truncated & m).any()), "length 5 ends on the time limit's step"


def test_autoreset_steps_are_masked_and_empty(collected):
    mode, col, ro = collected
    fake = ~ro.mask
    if mode == gym.vector.AutoresetMode.SAME_STEP:
        assert not bool(fake.any())
        return
    # NEXT_STEP: exactly the step after each done is fake, and it carries nothing
    after_done = torch.zeros_like(ro.mask)
    after_done[:, 1:] = ro.dones[:, :-1]
    assert torch.equal(fake, after_done)
    assert bool(fake.any())
    assert not bool(ro.rewards[fake].any())
    assert not bool((ro.terminated | ro.truncated)[fake].any())
    # the fake step starts from the final observation and lands on the reset observation (k = 0)
    assert bool((ro.obs[fake][:, 2] > 0).all())


def test_masked_steps_never_reach_gae_or_the_loss(collected):
    """Garbage in every masked entry changes no advantage, return or loss at a real step."""
    _, _, ro = collected
    m = ro.mask
    logp = torch.randn(ro.rewards.shape, generator=torch.Generator().manual_seed(0))
    junk = lambda x: torch.where(m, x, torch.full_like(x, 1e6))  # noqa: E731
    adv, ret = gae(ro.rewards, ro.values, ro.next_values, ro.terminated, ro.truncated, 0.9, 0.8)
    adv2, ret2 = gae(junk(ro.rewards), junk(ro.values), junk(ro.next_values), ro.terminated, ro.truncated, 0.9, 0.8)
    assert torch.equal(adv[m], adv2[m]) and torch.equal(ret[m], ret2[m])
    assert torch.equal(pg_loss(logp, adv, m), pg_loss(torch.where(m, logp, torch.full_like(logp, -1e6)), adv2, m))


def test_truncation_bootstraps_and_termination_does_not(collected):
    """GAE with λ = 1 on the collected batch: an episode cut by the time limit adds γ^n V(final obs)."""
    _, _, ro = collected
    gamma = 0.5
    adv, ret = gae(ro.rewards, ro.values, ro.next_values, ro.terminated, ro.truncated, gamma, 1.0)
    m = ro.mask
    for j in range(3):
        idx = torch.nonzero(m[j]).squeeze(-1).tolist()
        for pos, t in enumerate(idx):
            # find the end of t's episode among the real steps
            end = next((u for u in idx[pos:] if bool(ro.dones[j, u])), None)
            if end is None:  # the episode is still running at the end of the batch
                continue
            steps = [u for u in idx[pos:] if u <= end]
            g = sum(gamma ** i * float(ro.rewards[j, u]) for i, u in enumerate(steps))
            if bool(ro.truncated[j, end]) and not bool(ro.terminated[j, end]):
                g += gamma ** len(steps) * float(value_of(torch.tensor([j, ro.obs[j, end, 1], ro.obs[j, end, 2] + 1])))
            assert ret[j, t].item() == pytest.approx(g, rel=1e-6)


def test_episode_statistics_are_exact(collected):
    _, col, ro = collected
    m = ro.mask
    returns, lengths, ends = [], [], []
    steps_so_far = torch.cumsum(m.sum(0), 0)  # real transitions after each vector step
    for t in range(m.shape[1]):
        for j in range(3):
            if bool(ro.dones[j, t]):
                e = int(ro.obs[j, t, 1])
                ep = m[j] & (ro.obs[j, :, 1] == e)
                returns.append(float(ro.rewards[j][ep].sum()))
                lengths.append(int(ep.sum()))
                assert lengths[-1] == episode_length(j, e)
                ends.append(int(steps_so_far[t]))
    assert len(lengths) >= 10
    assert col.stats.returns == returns
    assert col.stats.lengths == lengths
    assert col.stats.end_steps == ends
    assert col.env_steps == int(m.sum()), "env_steps counts real transitions, not autoreset steps"


def test_first_episode_mask():
    d = torch.tensor([[False, True, False, True], [False, False, False, False], [True, False, True, False]])
    m = torch.tensor([[True, True, False, True], [True, True, True, False], [True, False, True, True]])
    assert torch.equal(first_episode_mask(d, m), torch.tensor([[True, True, False, False], [True, True, True, False],
                                                                [True, False, False, False]]))


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.name)
def test_episode_collector_one_whole_episode_per_row(mode):
    envs = counter_envs(4, mode)
    col = EpisodeCollector(envs, uniform_logits, value_of, seed=0)
    total = 0
    for call in range(3):
        ro = col.collect(2)  # chunks of 2 steps: episodes span several chunks
        assert ro.rewards.shape[0] == 4
        lengths = ro.mask.sum(-1)
        for j in range(4):
            m = ro.mask[j]
            L = int(lengths[j])
            assert bool(m[:L].all()) and not bool(m[L:].any()), "one episode, padded at the end"
            e = int(ro.obs[j, 0, 1])
            assert L == episode_length(j, e)
            assert ro.obs[j, :L, 2].tolist() == list(range(L)) and bool((ro.obs[j, :L, 1] == e).all())
            assert torch.equal(ro.dones[j], torch.arange(ro.dones.shape[1]) == L - 1)
            assert bool(ro.terminated[j, L - 1]) == (LENGTHS[(e + j) % 5] <= MAX_STEPS)
            assert not bool(ro.rewards[j, L:].any())
            a = ro.actions[j, :L].float()
            assert torch.equal(ro.rewards[j, :L], 1000.0 * j + 100 * e + 10 * torch.arange(L) + a)
            assert torch.equal(ro.next_values[j, :L], value_of(ro.obs[j, :L]) + 1)
        assert ro.mask.shape[1] == int(lengths.max()), "no all-padding columns"
        total += int(lengths.sum())
        assert col.env_steps == total, "env_steps counts the kept transitions only"
        assert col.stats.lengths[-4:] == sorted(lengths.tolist(), key=lambda L: L)  # in order of ending
        assert sorted(col.stats.returns[-4:]) == sorted(ro.rewards.sum(-1).tolist())
    assert len(col.stats.returns) == 12


@pytest.mark.parametrize("mode", ["vector_entry_point", "sync"])
def test_episode_collector_batches_start_from_fresh_states(mode):
    """Consecutive batches must not replay the same initial states (a seed scheme like seed + call would:
    a SyncVectorEnv seeds its env i with seed + i)."""
    envs = make_vec_env("CartPole-v1", 4, seed=0, vectorization_mode=mode)
    col = EpisodeCollector(envs, lambda o: torch.zeros(o.shape[0], 2), seed=0)
    firsts = torch.cat([col.collect().obs[:, 0] for _ in range(5)])
    assert torch.unique(firsts, dim=0).shape[0] == firsts.shape[0]


def test_collector_is_deterministic():
    def run():
        envs = make_vec_env("CartPole-v1", 4, seed=3)
        col = Collector(envs, lambda o: o[:, :2] * 3, seed=3)
        return [col.collect(20) for _ in range(3)], col.stats
    (a, sa), (b, sb) = run(), run()
    for x, y in zip(a, b):
        assert torch.equal(x.obs, y.obs) and torch.equal(x.actions, y.actions) and torch.equal(x.mask, y.mask)
    assert sa == sb


def test_make_vec_env_cartpole_is_numpy_batched_with_next_step_autoreset():
    envs = make_vec_env("CartPole-v1", 3, seed=0)
    assert envs.num_envs == 3
    assert envs.metadata["autoreset_mode"] == gym.vector.AutoresetMode.NEXT_STEP
    assert "VectorEnv" in type(envs.unwrapped).__name__


def test_unsupported_autoreset_mode_is_refused():
    with pytest.raises(ValueError, match="autoreset"):
        Collector(counter_envs(2, gym.vector.AutoresetMode.DISABLED), uniform_logits)


def test_bad_arguments():
    with pytest.raises(ValueError, match="n_envs"):
        make_vec_env("CartPole-v1", 0)
    col = Collector(counter_envs(2), uniform_logits)
    with pytest.raises(ValueError, match="n_steps"):
        col.collect(0)


def test_logp_is_the_acting_policys():
    envs = counter_envs(2)
    logits_fn = lambda o: torch.stack([o[:, 2], -o[:, 2]], -1)  # noqa: E731
    ro = Collector(envs, logits_fn, seed=1).collect(12)
    expected = torch.log_softmax(logits_fn(ro.obs.reshape(-1, 3)), -1).reshape(2, 12, 2)
    assert torch.allclose(ro.logp, expected.gather(-1, ro.actions.unsqueeze(-1)).squeeze(-1))


def test_collector_on_device(dev):
    envs = make_vec_env("CartPole-v1", 2, seed=0)
    net = torch.nn.Linear(4, 2).to(dev)
    ro = Collector(envs, net, lambda o: o.sum(-1), seed=0, device=dev).collect(8)
    assert ro.obs.device.type == dev.type and ro.rewards.device.type == dev.type
    assert ro.values.device.type == dev.type and ro.mask.device.type == dev.type
