"""Tests of pgcourse.ppo: the clipped surrogate by hand, its diagnostics, bad input, the epoch loop,
a deterministic update, a short CartPole run that learns, and the ``bench ppo`` command."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pgcourse.ppo import (ActorCritic, PPOConfig, clip_loss, minibatch_epochs, policy_kl, ppo, ppo_loss, ppo_update,
                          rollout_batch)
from pgcourse.rollout import Collector, make_vec_env

ROOT = Path(__file__).resolve().parent.parent


def _hand_case(dev, dtype=torch.float64):
    # ratios 1.5, 0.5, 1.0, 1.3, 0.7 with advantages +1, +1, -1, -1, -2 and eps = 0.2
    ratio = torch.tensor([1.5, 0.5, 1.0, 1.3, 0.7], dtype=dtype, device=dev)
    old = torch.tensor([-0.7, -1.2, -0.3, -2.0, -0.9], dtype=dtype, device=dev)
    logp = (old + ratio.log()).requires_grad_(True)
    adv = torch.tensor([1.0, 1.0, -1.0, -1.0, -2.0], dtype=dtype, device=dev)
    return logp, old, adv


def test_clip_loss_hand_value_and_gradient(dev):
    logp, old, adv = _hand_case(dev)
    loss, stats = clip_loss(logp, old, adv, clip_eps=0.2)
    # min(rho A, clip(rho) A): 1.2 (clipped), 0.5, -1.0, -1.3 (A<0, rho>1+eps: the unclipped, lower side), -1.6 (clipped)
    expected = -(1.2 + 0.5 - 1.0 - 1.3 - 1.6) / 5
    assert loss.item() == pytest.approx(expected, abs=1e-12)
    assert loss.device.type == dev.type and loss.dtype == torch.float64
    (grad,) = torch.autograd.grad(loss, logp)
    # d/dlogp of -rho*A/n is -rho*A/n where the unclipped side is the min, 0 where the clipped side is
    ratio = torch.tensor([1.5, 0.5, 1.0, 1.3, 0.7], dtype=torch.float64)
    a = torch.tensor([1.0, 1.0, -1.0, -1.0, -2.0], dtype=torch.float64)
    active = torch.tensor([0.0, 1.0, 1.0, 1.0, 0.0], dtype=torch.float64)
    torch.testing.assert_close(grad.cpu(), -ratio * a * active / 5)
    assert stats["clip_fraction"].item() == pytest.approx(4 / 5)  # |rho - 1| > 0.2 for all but rho = 1.0
    assert stats["approx_kl"].dim() == 0 and not stats["approx_kl"].requires_grad


def test_clip_is_asymmetric_in_the_sign_of_the_advantage():
    """A > 0: the clip bites only above 1+eps; A < 0: only below 1-eps (the min is pessimistic)."""
    rho = torch.tensor([0.5, 0.9, 1.1, 1.5], dtype=torch.float64)
    for sign, flat in ((1.0, [False, False, False, True]), (-1.0, [True, False, False, False])):
        logp = rho.log().requires_grad_(True)
        loss, _ = clip_loss(logp, torch.zeros(4, dtype=torch.float64), torch.full((4,), sign, dtype=torch.float64))
        (g,) = torch.autograd.grad(loss, logp)
        assert (g == 0).tolist() == flat
        # the clipped objective never exceeds the unclipped one (a lower bound) ...
        per = -torch.stack([clip_loss(logp[i:i + 1], torch.zeros(1, dtype=torch.float64),
                                      torch.tensor([sign], dtype=torch.float64))[0] for i in range(4)])
        assert bool((per <= rho * sign + 1e-12).all())
    # ... and equals it near rho = 1
    lp = torch.tensor([0.05, -0.05], dtype=torch.float64)
    a = torch.tensor([2.0, -3.0], dtype=torch.float64)
    assert clip_loss(lp, torch.zeros(2, dtype=torch.float64), a)[0].item() == pytest.approx(
        -(lp.exp() * a).mean().item())


def test_infinite_eps_is_the_unclipped_surrogate():
    g = torch.Generator().manual_seed(0)
    logp, old, adv = torch.randn(50, generator=g), torch.randn(50, generator=g), torch.randn(50, generator=g)
    loss, stats = clip_loss(logp, old, adv, clip_eps=math.inf)
    assert loss.item() == pytest.approx(-((logp - old).exp() * adv).mean().item(), rel=1e-6)
    assert stats["clip_fraction"].item() == 0.0


def test_mask_ignores_padding_and_averages_over_valid_entries(dev):
    logp, old, adv = _hand_case(dev)
    pad = torch.tensor([float("-inf"), float("nan")], dtype=torch.float64, device=dev)
    lp2 = torch.cat([logp.detach(), pad]).requires_grad_(True)
    old2 = torch.cat([old, pad])
    adv2 = torch.cat([adv, torch.tensor([5.0, float("inf")], dtype=torch.float64, device=dev)])
    mask = torch.tensor([True] * 5 + [False, False], device=dev)
    loss2, st2 = clip_loss(lp2, old2, adv2, 0.2, mask)
    loss, st = clip_loss(logp, old, adv, 0.2)
    assert loss2.item() == pytest.approx(loss.item())
    for k in ("approx_kl", "clip_fraction"):
        assert st2[k].item() == pytest.approx(st[k].item())
    (g,) = torch.autograd.grad(loss2, lp2)
    assert torch.isfinite(g).all() and bool((g[5:] == 0).all())
    # (N, T) with a mask: the mean is over valid entries, not rows
    lp = torch.zeros(2, 3)
    a = torch.tensor([[1.0, 2.0, 0.0], [3.0, 0.0, 0.0]])
    m = torch.tensor([[True, True, False], [True, False, False]])
    assert clip_loss(lp, torch.zeros(2, 3), a, mask=m)[0].item() == pytest.approx(-2.0)


def test_approx_kl_is_the_k3_estimator():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, generator=g, dtype=torch.float64)
    assert clip_loss(x, x.clone(), torch.ones(200, dtype=torch.float64))[1]["approx_kl"].item() == 0.0
    for _ in range(5):
        lp, old = torch.randn(100, generator=g), torch.randn(100, generator=g)
        assert clip_loss(lp, old, torch.ones(100))[1]["approx_kl"].item() >= 0.0
    # unbiased for KL(old || new) when the actions come from the old policy
    p_old = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
    p_new = torch.tensor([0.4, 0.3, 0.3], dtype=torch.float64)
    kl = float((p_old * (p_old / p_new).log()).sum())
    n = 200_000
    a = torch.multinomial(p_old, n, replacement=True, generator=g)
    lp, lo = p_new.log()[a], p_old.log()[a]
    est = clip_loss(lp, lo, torch.ones(n, dtype=torch.float64))[1]["approx_kl"].item()
    r = (lp - lo).exp()
    se = float(((r - 1) - (lp - lo)).std()) / math.sqrt(n)
    assert abs(est - kl) < 4 * se


@pytest.mark.parametrize("kwargs, exc, word", [
    ({"logp": [[0.1, 0.2]]}, ValueError, "old_logp"),               # shape mismatch
    ({"advantages": torch.ones(3)}, ValueError, "advantages"),
    ({"logp": "x"}, TypeError, "logp"),
    ({"old_logp": torch.zeros(2, dtype=torch.long)}, TypeError, "old_logp"),
    ({"advantages": torch.tensor([1.0, float("nan")])}, ValueError, "advantages"),
    ({"logp": torch.tensor([float("-inf"), 0.0])}, ValueError, "logp"),
    ({"clip_eps": -0.1}, ValueError, "clip_eps"),
    ({"clip_eps": float("nan")}, ValueError, "clip_eps"),
    ({"clip_eps": "0.2"}, TypeError, "clip_eps"),
    ({"mask": torch.tensor([False, False])}, ValueError, "mask"),
    ({"mask": torch.tensor([True])}, ValueError, "mask"),
    ({"mask": torch.tensor([0.5, 1.0])}, ValueError, "mask"),
    ({"logp": torch.tensor([])}, ValueError, "logp"),
])
def test_clip_loss_bad_input(kwargs, exc, word):
    args = {"logp": torch.zeros(2), "old_logp": torch.zeros(2), "advantages": torch.ones(2)}
    args.update(kwargs)
    with pytest.raises(exc, match=word):
        clip_loss(**args)


@pytest.mark.parametrize("kwargs, exc, word", [
    ({"n_envs": 0}, ValueError, "n_envs"), ({"lr": -1.0}, ValueError, "lr"), ({"gamma": 1.5}, ValueError, "gamma"),
    ({"n_epochs": 2.5}, TypeError, "n_epochs"), ({"target_kl": 0.0}, ValueError, "target_kl"),
    ({"n_minibatches": 10_000}, ValueError, "n_minibatches"), ({"entropy_coef": -0.1}, ValueError, "entropy_coef"),
    ({"seed": "0"}, TypeError, "seed"), ({"hidden": (64, 0)}, ValueError, "hidden"),
])
def test_config_bad_values(kwargs, exc, word):
    with pytest.raises(exc, match=word):
        PPOConfig(**kwargs)


def test_minibatch_epochs_partitions_each_epoch_and_reshuffles():
    calls = []
    visited = minibatch_epochs(lambda idx: calls.append(idx) or {"approx_kl": 0.0}, 10, 3, 4,
                               torch.Generator().manual_seed(0))
    assert len(visited) == len(calls) == 12
    epochs = [torch.cat(visited[4 * e:4 * e + 4]) for e in range(3)]
    for e in epochs:
        assert sorted(e.tolist()) == list(range(10))
    assert sorted(len(i) for i in visited[:4]) == [2, 2, 3, 3]
    assert not all(torch.equal(epochs[0], e) for e in epochs[1:])
    # early stop: after the first epoch whose mean approx_kl exceeds the target
    v = minibatch_epochs(lambda idx: {"approx_kl": torch.tensor(0.03)}, 10, 5, 2, torch.Generator(), target_kl=0.02)
    assert len(v) == 2
    v = minibatch_epochs(lambda idx: {"approx_kl": torch.tensor(0.01)}, 10, 5, 2, torch.Generator(), target_kl=0.02)
    assert len(v) == 10


def _batch_and_agent(seed=0, n_steps=32):
    torch.manual_seed(seed)
    envs = make_vec_env("CartPole-v1", 4, seed=seed)
    agent = ActorCritic(4, 2)
    col = Collector(envs, agent.actor, agent.critic, seed=seed)
    ro = col.collect(n_steps)
    envs.close()
    return ro, agent


def test_rollout_batch_drops_autoreset_steps():
    ro, _ = _batch_and_agent(n_steps=64)
    b = rollout_batch(ro, 0.99, 0.95)
    n = int(ro.mask.sum())
    assert n < ro.mask.numel()  # some episode ended, so some autoreset step was dropped
    assert all(v.shape[0] == n for v in b.values())
    torch.testing.assert_close(b["returns"], b["advantages"] + b["values"])


@pytest.mark.parametrize("clip", [True, False])
def test_ppo_update_is_deterministic(clip):
    ro, agent = _batch_and_agent()
    batch = rollout_batch(ro, 0.99, 0.95)
    cfg = PPOConfig(n_envs=4, n_steps=32, clip=clip, clip_value=True)
    state = {k: v.clone() for k, v in agent.state_dict().items()}
    with torch.no_grad():
        old_logits = agent.actor(batch["obs"])
    results = []
    for _ in range(2):
        agent.load_state_dict(state)
        opt = torch.optim.Adam(agent.parameters(), lr=cfg.lr, eps=cfg.adam_eps)
        stats = ppo_update(agent, opt, batch, cfg, torch.Generator().manual_seed(7))
        results.append((stats, [p.detach().clone() for p in agent.parameters()]))
    assert results[0][0] == results[1][0]
    for a, b in zip(results[0][1], results[1][1]):
        assert torch.equal(a, b)
    stats = results[0][0]
    assert stats["epochs"] == cfg.n_epochs and 0 <= stats["clip_fraction"] <= 1
    assert policy_kl(agent, batch["obs"], old_logits) > 0
    assert any(not torch.equal(a, state[k]) for a, k in zip(results[0][1], [n for n, _ in agent.named_parameters()]))


def test_ppo_loss_is_the_sum_of_its_three_terms():
    ro, agent = _batch_and_agent()
    mb = rollout_batch(ro, 0.99, 0.95)
    cfg = PPOConfig(n_envs=4, n_steps=32)
    loss, st = ppo_loss(agent, mb, cfg)
    a = mb["advantages"]
    a = (a - a.mean()) / (a.std() + 1e-8)
    logits, v = agent(mb["obs"])
    lp = torch.log_softmax(logits, -1)
    logp = lp.gather(-1, mb["actions"][:, None]).squeeze(-1)
    ent = -(lp.exp() * lp).sum(-1).mean()
    pg = clip_loss(logp, mb["logp"], a)[0]
    expected = pg + 0.5 * 0.5 * ((v - mb["returns"]) ** 2).mean() - 0.01 * ent
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert set(st) == {"approx_kl", "clip_fraction", "value_loss", "entropy"}
    assert st["entropy"].item() == pytest.approx(ent.item())


def test_ppo_takes_a_learners_update():
    calls = []

    def update(agent, opt, batch, cfg, generator):
        calls.append(batch["obs"].shape[0])
        return ppo_update(agent, opt, batch, cfg, generator)
    kw = dict(total_steps=512, n_envs=4, n_steps=64, progress=False, seed=5)
    mine, ref = ppo(update=update, **kw), ppo(**kw)
    assert len(calls) == len(ref.env_steps) and mine.episode_returns == ref.episode_returns
    assert mine.extra == ref.extra
    with pytest.raises(TypeError, match="update"):
        ppo(update="ppo_update", **kw)


def test_ppo_is_seeded():
    kw = dict(total_steps=1024, n_envs=4, n_steps=64, progress=False)
    h1, h2 = ppo(seed=3, **kw), ppo(seed=3, **kw)
    assert h1.episode_returns == h2.episode_returns and h1.extra == h2.extra
    steps = h1.env_steps  # real transitions: autoreset steps are not counted
    assert all(0 < b - a <= 256 for a, b in zip([0] + steps, steps)) and steps[-2] < 1024 <= steps[-1]
    assert ppo(seed=4, **kw).episode_returns != h1.episode_returns


def test_ppo_learns_cartpole():
    """A short run with a fixed seed: the last 20 episodes return far more than the first 20."""
    hist = ppo(total_steps=16_384, seed=0, progress=False)
    first, last = sum(hist.episode_returns[:20]) / 20, hist.mean_return_last(20)
    assert first < 50 and last > 120, (first, last)
    assert set(hist.extra) >= {"approx_kl", "clip_fraction", "policy_kl", "value_loss", "entropy", "epochs", "lr"}
    assert hist.extra["lr"][0] == PPOConfig().lr and hist.extra["lr"][-1] < hist.extra["lr"][0]


def test_ppo_runs_on_the_device(dev):
    hist = ppo(total_steps=256, n_envs=4, n_steps=32, n_minibatches=2, seed=0, device=dev, progress=False)
    params = list(hist.agent.parameters())
    assert all(p.device.type == dev.type for p in params) and all(torch.isfinite(p).all() for p in params)
    assert hist.env_steps[-1] >= 256 and all(math.isfinite(v) for v in hist.extra["policy_kl"])


def test_bench_ppo_quick_json():
    out = subprocess.run([sys.executable, "-m", "pgcourse", "bench", "ppo", "--quick", "--json"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert {"seconds_to_475", "steps_to_475", "steps_per_second"} <= set(result)
    assert result["steps_per_second"] > 0 and result["seeds"] == 1
