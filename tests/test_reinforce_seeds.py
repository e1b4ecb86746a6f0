"""pgcourse.train.reinforce_seeds (several REINFORCE runs at once) and EpisodeCollector's ``rows``.

One seed run alone is ``reinforce`` itself (same environment, sampler and network), step for step;
several seeds are independent runs: each starts from its own ``reinforce(seed=k)`` network, keeps its
own budget, and learns only from its own episodes.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pgcourse.rollout import EpisodeCollector, make_vec_env
from pgcourse.train import StackedMLP, _freeze, reinforce, reinforce_seeds


@pytest.mark.parametrize("kwargs", [dict(psi="full_return"), dict(psi="reward_to_go", gamma=1.0),
                                    dict(psi="reward_to_go_minus_baseline", baseline="value"),
                                    dict(psi="reward_to_go_minus_baseline", baseline="ema")],
                         ids=["full", "rtg", "value", "ema"])
def test_one_seed_is_reinforce(kwargs):
    a = reinforce(total_steps=1200, seed=3, progress=False, device="cpu", **kwargs)
    (b,) = reinforce_seeds([3], total_steps=1200, chunk=64, device="cpu", **kwargs)   # reinforce's chunk of 64
    assert a.episode_returns == b.episode_returns
    assert a.env_steps == b.env_steps and a.episode_end_steps == b.episode_end_steps
    np.testing.assert_allclose(a.extra["loss"], b.extra["loss"], rtol=1e-4)


def test_seeds_are_independent_runs_with_their_own_budget():
    hists = reinforce_seeds([0, 1, 2], psi="reward_to_go", total_steps=3000, episodes_per_batch=4, device="cpu")
    assert len(hists) == 3
    for h in hists:
        assert h.env_steps[-1] >= 3000 and h.env_steps[-2] < 3000           # stops once its budget is used
        assert len(h.episode_returns) == 4 * len(h.env_steps)              # 4 whole episodes per update
        assert h.episode_end_steps[-1] == h.env_steps[-1] == sum(h.episode_lengths)
        assert h.episode_returns == [float(n) for n in h.episode_lengths]  # CartPole pays 1 per step
        assert len(h.extra["loss"]) == len(h.env_steps)
    assert hists[0].episode_returns != hists[1].episode_returns
    again = reinforce_seeds([0, 1, 2], psi="reward_to_go", total_steps=3000, episodes_per_batch=4, device="cpu")
    assert [h.episode_returns for h in again] == [h.episode_returns for h in hists]   # deterministic


def test_stacked_mlp_is_each_net():
    torch.manual_seed(0)
    nets = [torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2)) for _ in range(3)]
    stacked = StackedMLP(nets)
    x = torch.randn(3, 5, 4)
    for k, net in enumerate(nets):
        torch.testing.assert_close(stacked(x)[k], net(x[k]))
    with pytest.raises(ValueError, match="nets"):
        StackedMLP([])


def test_a_finished_run_keeps_its_network():
    # Adam moves a parameter even with a zero gradient (momentum): a finished run's slice is put back
    p = torch.nn.Parameter(torch.zeros(3, 2))
    opt = torch.optim.Adam([p], lr=0.1)
    for _ in range(2):
        saved = [p.detach().clone()]
        opt.zero_grad()
        (p * torch.tensor([[1.0], [1.0], [0.0]])).sum().backward()
        opt.step()
        _freeze([p], saved, torch.tensor([False, True, True]))
    assert bool((p[0] != 0).all()) and bool((p[1:] == 0).all())


@pytest.mark.parametrize("kwargs, match", [(dict(seeds=[]), "seeds"), (dict(seeds=[1, 1]), "seeds"),
                                           (dict(psi="advantage"), "psi"), (dict(total_steps=0), "total_steps"),
                                           (dict(psi="reward_to_go_minus_baseline"), "baseline"),
                                           (dict(gamma=1.5), "gamma")])
def test_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        reinforce_seeds(**kwargs)


def test_episode_collector_rows_waits_only_for_the_wanted_envs():
    envs = make_vec_env("CartPole-v1", 6, seed=0)
    col = EpisodeCollector(envs, lambda o: torch.zeros(o.shape[0], 2), seed=0)
    wanted = np.array([True, True, False, False, True, False])
    ro = col.collect(8, rows=wanted)
    assert not bool(ro.mask[~torch.from_numpy(wanted)].any()), "unwanted rows are masked out"
    lengths = ro.mask.sum(-1)[torch.from_numpy(wanted)]
    assert bool((lengths > 0).all()) and bool(ro.dones[torch.from_numpy(wanted)].any(-1).all())
    assert col.env_steps == int(lengths.sum()) and len(col.stats.returns) == 3
    with pytest.raises(ValueError, match="rows"):
        col.collect(rows=np.zeros(6, dtype=bool))
    with pytest.raises(ValueError, match="rows"):
        col.collect(rows=np.ones(5, dtype=bool))
    envs.close()
