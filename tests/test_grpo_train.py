"""GRPO's rollouts, the microbatch step (gradient accumulation) and the training loop."""
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pgcourse.digitsort import DigitSort
from pgcourse.grpo import (EVAL_FIELDS, LOSS_TYPES, STEP_FIELDS, GRPOConfig, advantages_from_rewards,
                           evaluate, group_advantages, grpo_loss, make_policy, microbatch_step, pretrained_policy,
                           rollout, train)
from pgcourse.tinylm import completion_logp, sample

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


@pytest.fixture(scope="module")
def task():
    return DigitSort(1, 4)


@pytest.fixture(scope="module")
def sft(task):
    return pretrained_policy(task, sft_steps=30)


def _rollout(policy, task, seed=0, reward_fn=None, **kw):
    config = GRPOConfig(**{"prompts_per_step": 6, "group_size": 4, "beta": 0.1, **kw})
    return rollout(policy, make_policy(task, seed=99), task, config, torch.Generator().manual_seed(seed), reward_fn)


def _grads(policy):
    return [p.grad.detach().clone() for p in policy.parameters()]


# ---------------------------------------------------------------- rollouts and advantages

def test_rollout_groups_rewards_and_advantages(task, sft):
    b = _rollout(sft, task, temperature=0.8)
    assert repr(b).startswith("Rollout(24 completions in groups of 4")
    N, G = 24, 4
    assert len(b) == N and b.group_size == G and b.samples == N
    assert b.completions.shape == b.mask.shape == b.old_logp.shape == b.ref_logp.shape == (N, task.completion_len)
    assert (b.prompts.view(6, G, -1) == b.prompts.view(6, G, -1)[:, :1]).all()     # groups are contiguous
    assert torch.equal(b.correct, task.reward(b.prompts, b.completions))
    assert torch.equal(b.rewards, b.correct)
    assert torch.equal(b.advantages, group_advantages(b.rewards.view(6, G)).view(-1))
    # old log-probs are the policy's at the sampling temperature, exactly
    again = completion_logp(sft, b.prompts, b.completions, temperature=0.8)
    assert torch.equal(again[b.mask], b.old_logp[b.mask])
    r = b.rewards.view(6, G)
    assert b.zero_variance == float((r == r[:, :1]).all(1).float().mean())


def test_advantage_options_by_hand():
    r = torch.tensor([[1.0, 0.0, 0.0, 1.0], [2.0, 0.0, 1.0, 1.0]])
    s = r.std(1, keepdim=True) + 1e-4
    loo = (r.sum(1, keepdim=True) - r) / 3
    assert torch.equal(advantages_from_rewards(r), group_advantages(r))
    assert torch.equal(advantages_from_rewards(r, scale=False), r - r.mean(1, keepdim=True))
    assert torch.allclose(advantages_from_rewards(r, "leave_one_out", scale=False), r - loo)
    assert torch.allclose(advantages_from_rewards(r, "leave_one_out"), (r - loo) / s)
    assert torch.equal(advantages_from_rewards(r, "none", scale=False), r)
    assert torch.allclose(advantages_from_rewards(r, "none"), r / s)
    with pytest.raises(ValueError, match="baseline"):
        advantages_from_rewards(r, "critic")


def test_format_bonus_and_k1_reward_penalty(task, sft):
    b = _rollout(sft, task, format_bonus=1.0, kl_penalty="reward_k1")
    k1 = ((b.old_logp - b.ref_logp) * b.mask).sum(1)
    want = b.correct + task.well_formed(b.completions) - 0.1 * k1
    assert torch.allclose(b.rewards, want)
    assert torch.allclose(b.advantages, group_advantages(want.view(6, 4)).view(-1))
    with pytest.raises(TypeError, match="config"):
        rollout(sft, sft, task, {"beta": 0.1}, torch.Generator())
    with pytest.raises(TypeError, match="gen"):
        rollout(sft, sft, task, GRPOConfig(), 0)


def test_dynamic_sampling_drops_zero_variance_groups(task, sft):
    plain = _rollout(sft, task, seed=3, prompts_per_step=8)
    assert plain.zero_variance > 0                                         # some groups carry no signal
    b = _rollout(sft, task, seed=3, prompts_per_step=8, dynamic_sampling=True, max_refills=20)
    r = b.rewards.view(-1, 4)
    assert len(b) == 32 and bool((r != r[:, :1]).any(1).all())           # full, and every group informative
    assert b.samples > 32 and b.zero_variance == plain.zero_variance      # it paid for the refills


def test_rollout_rejects_a_bad_reward_fn(task, sft):
    with pytest.raises(ValueError, match="reward_fn"):
        _rollout(sft, task, reward_fn=lambda p, c: torch.full((p.shape[0],), float("nan")))
    with pytest.raises(ValueError, match="reward_fn"):
        _rollout(sft, task, reward_fn=lambda p, c: torch.zeros(3))


# ---------------------------------------------------------------- the microbatch step

def test_rho_is_exactly_one_before_the_first_update(task, sft):
    b = _rollout(sft, task, temperature=0.7)
    policy = pretrained_policy(task, sft_steps=30)
    stats = microbatch_step(policy, b, 5, temperature=0.7)
    assert stats["ratio"] == 1.0 and stats["kl_old"] == 0.0 and stats["clip_fraction"] == 0.0


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_gradient_accumulation_equals_the_full_batch(task, sft, loss_type):
    b = _rollout(sft, task, temperature=0.9)
    b.old_logp = torch.where(b.mask, b.old_logp + 0.3 * torch.randn(b.old_logp.shape, generator=torch.Generator().manual_seed(1)),
                             b.old_logp)                                  # off policy: the clip is active
    policy = pretrained_policy(task, sft_steps=30)
    logp = completion_logp(policy, b.prompts, b.completions, 0.9)
    loss, _ = grpo_loss(logp, b.old_logp, b.ref_logp, b.advantages, b.mask, beta=0.1, loss_type=loss_type)
    full = torch.autograd.grad(loss, list(policy.parameters()))
    for size in (1, 5, 7, 24, 100):                                         # uneven last microbatches too
        policy.zero_grad()
        stats = microbatch_step(policy, b, size, loss_type=loss_type, beta=0.1, temperature=0.9)
        for g_full, g_acc in zip(full, _grads(policy)):
            assert torch.allclose(g_acc, g_full, atol=1e-6, rtol=1e-4), f"microbatch_size={size}"
        assert math.isclose(stats["loss"], float(loss.detach()), rel_tol=1e-5, abs_tol=1e-7)
        assert stats["clip_fraction"] > 0
    # the naive recipe (each microbatch's own mean / number of microbatches) is wrong for uneven splits
    if loss_type != "dr_grpo":
        policy.zero_grad()
        parts = [b.rows(slice(0, 7)), b.rows(slice(7, 24))]
        for mb in parts:
            lp = completion_logp(policy, mb.prompts, mb.completions, 0.9)
            (grpo_loss(lp, mb.old_logp, mb.ref_logp, mb.advantages, mb.mask, beta=0.1, loss_type=loss_type)[0] / 2).backward()
        assert not all(torch.allclose(a, g, atol=1e-6, rtol=1e-4) for a, g in zip(_grads(policy), full))


def test_microbatch_step_accumulates_and_checks_inputs(task, sft):
    b = _rollout(sft, task)
    policy = pretrained_policy(task, sft_steps=30)
    microbatch_step(policy, b, 8)
    once = _grads(policy)
    microbatch_step(policy, b, 8)                                           # it adds, it does not zero
    assert all(torch.allclose(g2, 2 * g1) for g1, g2 in zip(once, _grads(policy)))
    with pytest.raises(TypeError, match="batch"):
        microbatch_step(policy, {"prompts": b.prompts}, 8)
    with pytest.raises(ValueError, match="microbatch_size"):
        microbatch_step(policy, b, 0)
    with pytest.raises(ValueError, match="loss_type"):
        microbatch_step(policy, b, 8, loss_type="sum")


# ---------------------------------------------------------------- evaluation and the loop

def test_evaluate_is_exact_pass_at_1_and_pass_at_k(task, sft):
    prompts = task.sample_prompts(48, seed=2)
    ev = evaluate(sft, task, prompts, temperature=0.8, k=4)
    n = 64
    reps = prompts.repeat_interleave(n, 0)
    r = task.reward(reps, sample(sft, reps, task.completion_len, task.eos, task.pad, seed=0, temperature=0.8).tokens)
    r = r.view(48, n)
    se = float(r.var(1).mean().sqrt()) / math.sqrt(48 * n)
    assert abs(float(r.mean()) - ev["accuracy"]) < 4 * se                   # |z| < 4 under "no difference"
    # pass@4 from the same draws: 1 − Pr(4 wrong), estimated per prompt without bias
    fails = (1 - r).view(48, 16, 4).prod(2).mean(1)
    se4 = float((1 - r).view(48, 16, 4).prod(2).var(1).mean().sqrt()) / math.sqrt(48 * 16)
    assert abs(float(1 - fails.mean()) - ev["pass_at_k"]) < 4 * se4
    assert ev["pass_at_k"] >= ev["accuracy"]
    assert set(ev["accuracy_by_length"]) == {1, 2, 3, 4}


def test_training_records_every_field_and_the_clip_is_active(task):
    policy = pretrained_policy(task, sft_steps=30)
    config = GRPOConfig(steps=4, prompts_per_step=8, group_size=4, epochs=3, eval_every=2, lr=3e-3)
    hist = train(policy, task, config, eval_prompts=task.sample_prompts(32, seed=5), seed=0)
    for name in STEP_FIELDS:
        assert len(getattr(hist, name)) == 4, name
    for name in EVAL_FIELDS:
        assert len(getattr(hist, name)) == 3, name
    assert hist.eval_steps == [0, 2, 4]
    assert all(c > 0 for c in hist.clip_fraction) and all(k > 0 for k in hist.kl_old)   # epochs 2, 3: ρ ≠ 1
    assert hist.kl_ref[0] == 0.0 and hist.kl_ref[-1] > 0                               # the policy left the reference
    assert hist.samples == [32] * 4 and all(0 <= z <= 1 for z in hist.zero_variance)
    one = train(pretrained_policy(task, sft_steps=30), task, config.replace(epochs=1, steps=2),
                eval_prompts=task.sample_prompts(32, seed=5), seed=0)
    assert one.clip_fraction == [0.0, 0.0] and one.kl_old == [0.0, 0.0]               # one epoch: never clipped


def test_training_is_seeded_and_microbatching_changes_little(task):
    config = GRPOConfig(steps=3, prompts_per_step=8, group_size=4, eval_every=3)
    runs = [train(pretrained_policy(task, sft_steps=30), task, config.replace(microbatch_size=m),
                  eval_prompts=task.sample_prompts(32, seed=5), seed=0) for m in (None, None, 5)]
    assert runs[0].loss == runs[1].loss and runs[0].eval_accuracy == runs[1].eval_accuracy
    assert all(math.isclose(a, b, rel_tol=1e-3, abs_tol=1e-5) for a, b in zip(runs[0].loss, runs[2].loss))


@pytest.mark.parametrize("changes", [
    {"baseline": "none", "scale_rewards": False}, {"baseline": "leave_one_out"}, {"loss_type": "dr_grpo",
     "scale_rewards": False}, {"kl_penalty": "reward_k1"}, {"dynamic_sampling": True, "max_refills": 2},
    {"format_bonus": 1.0, "loss_type": "bnpo"}, {"beta": 0.0, "temperature": 0.7}])
def test_options_run(task, changes):
    policy = pretrained_policy(task, sft_steps=30)
    before = [p.detach().clone() for p in policy.parameters()]
    ref = make_policy(task, seed=1)
    hist = train(policy, task, GRPOConfig(steps=2, prompts_per_step=4, group_size=4, **changes), ref=ref,
                 eval_prompts=task.sample_prompts(16, seed=5), seed=0)
    assert len(hist.reward) == 2 and len(hist.eval_accuracy) == 2
    assert any(not torch.equal(a, b) for a, b in zip(before, policy.parameters()))
    assert all(not p.requires_grad for p in ref.parameters())


def test_group_advantages_make_training_blind_to_a_reward_shift(task):
    """(r + c − mean) / std = (r − mean) / std: a constant bonus changes nothing (bit for bit with 0/1 rewards)."""
    config = GRPOConfig(steps=3, prompts_per_step=8, group_size=4, eval_every=3)
    runs = []
    for reward_fn in (None, lambda p, c: task.reward(p, c) + 1.0):
        policy = pretrained_policy(task, sft_steps=30)
        runs.append((train(policy, task, config, reward_fn=reward_fn, eval_prompts=task.sample_prompts(32, seed=5),
                           seed=0), policy))
    (h0, p0), (h1, p1) = runs
    assert h0.eval_accuracy == h1.eval_accuracy and h0.kl_ref == h1.kl_ref
    assert all(torch.equal(a, b) for a, b in zip(p0.parameters(), p1.parameters()))


def test_grpo_improves_accuracy_on_a_small_budget():
    task = DigitSort(1, 5)
    policy = pretrained_policy(task)
    hist = train(policy, task, GRPOConfig(steps=40, prompts_per_step=16, eval_every=20, lr=2e-3),
                 eval_prompts=task.sample_prompts(256, seed=2), seed=0)
    assert hist.eval_accuracy[0] < 0.5                                   # SFT: partly right
    assert hist.eval_accuracy[-1] > hist.eval_accuracy[0] + 0.1          # GRPO lifts it


def test_config_bad_inputs(task):
    for field, value in [("loss_type", "mean"), ("baseline", "critic"), ("kl_penalty", "k2"), ("lr", 0),
                         ("beta", -1.0), ("max_refills", -1), ("microbatch_size", 0), ("temperature", 0.0)]:
        with pytest.raises(ValueError, match=field):
            GRPOConfig(**{field: value})
    with pytest.raises(ValueError, match="group_size"):
        GRPOConfig(group_size=1)
    with pytest.raises(TypeError, match="scale_rewards"):
        GRPOConfig(scale_rewards="yes")
    with pytest.raises(TypeError, match="unknown"):
        GRPOConfig().replace(learning_rate=1.0)
    assert GRPOConfig().replace(steps=5).steps == 5
    with pytest.raises(TypeError, match="config"):
        train(make_policy(task), task, config={"steps": 1})
    with pytest.raises(TypeError, match="task"):
        pretrained_policy("digits")


def test_bench_quick():
    out = subprocess.run([sys.executable, "-m", "pgcourse", "bench", "grpo", "--quick", "--json"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    for key in ("model", "parameters", "accuracy_before", "accuracy_after", "grpo_seconds", "grpo_cpu_seconds",
                "sft_seconds"):
        assert key in result
    assert 0.0 <= result["accuracy_before"] <= 1.0
    assert result["accuracy_after"] > result["accuracy_before"]
