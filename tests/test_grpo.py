"""GRPO's formulas (pgcourse.grpo.loss) against hand computations; the training loop is in test_grpo_train.py."""
import math

import pytest
import torch

from pgcourse.grpo import (LOSS_TYPES, aggregate_tokens, group_advantages, grpo_loss, kl_estimators, kl_k1, kl_k2,
                           kl_k3, leave_one_out_baseline, token_weights)


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


# ---------------------------------------------------------------- group advantages

def test_group_advantages_by_hand(dev):
    r = torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 1.0]], device=dev)
    a = group_advantages(r)
    s0 = math.sqrt(1 / 3)        # Bessel: sum of squares 4·0.25 over G−1 = 3
    expected = torch.tensor([[0.5, -0.5, -0.5, 0.5], [0.0] * 4, [-0.25, -0.25, -0.25, 0.75]], device=dev)
    expected[0] /= s0 + 1e-4
    expected[2] /= 0.5 + 1e-4    # sum of squares 0.75 over 3 = 0.25
    assert a.device.type == dev.type
    assert torch.allclose(a, expected, atol=1e-6)
    assert torch.equal(group_advantages(r, scale=False), r - r.mean(1, keepdim=True))
    assert torch.allclose(group_advantages(r, eps=0.0)[2], torch.tensor([-0.5, -0.5, -0.5, 1.5], device=dev))


def test_group_advantages_identical_rewards_give_zeros():
    r = torch.full((3, 5), 0.7)
    assert torch.equal(group_advantages(r), torch.zeros(3, 5))


def test_group_advantages_invariances():
    g = torch.Generator().manual_seed(0)
    r = torch.rand(6, 8, generator=g, dtype=torch.float64)
    a = group_advantages(r, eps=0.0)
    shift, scale = torch.rand(6, 1, generator=g, dtype=torch.float64), 0.5 + torch.rand(6, 1, generator=g, dtype=torch.float64)
    assert torch.allclose(group_advantages(r * scale + shift, eps=0.0), a)
    assert torch.allclose(a.sum(1), torch.zeros(6, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(a.std(1), torch.ones(6, dtype=torch.float64))


def test_group_advantages_bad_inputs():
    with pytest.raises(ValueError, match="rewards"):
        group_advantages(torch.ones(4))
    with pytest.raises(ValueError, match="rewards"):
        group_advantages(torch.tensor([[1.0, float("nan")]]))
    with pytest.raises(TypeError, match="rewards"):
        group_advantages(torch.ones(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="group"):
        group_advantages(torch.ones(2, 1))
    with pytest.raises(ValueError, match="eps"):
        group_advantages(torch.ones(2, 3), eps=-1.0)
    with pytest.raises(TypeError, match="scale"):
        group_advantages(torch.ones(2, 3), scale="yes")


def test_leave_one_out_baseline_by_hand():
    r = torch.tensor([[1.0, 0.0, 0.0, 1.0], [3.0, 1.0, 2.0, 2.0]])
    b = leave_one_out_baseline(r)
    assert torch.allclose(b, torch.tensor([[1 / 3, 2 / 3, 2 / 3, 1 / 3], [5 / 3, 7 / 3, 2.0, 2.0]]))
    G = r.shape[1]
    # r − b_loo = G/(G−1)·(r − mean): the group mean, which includes r_i itself, shrinks the signal by 1 − 1/G
    assert torch.allclose(r - b, G / (G - 1) * group_advantages(r, scale=False))
    with pytest.raises(ValueError, match="rewards"):
        leave_one_out_baseline(torch.ones(3, 1))


# ---------------------------------------------------------------- KL estimators

def _two_categoricals(shift: float):
    q = torch.softmax(torch.tensor([0.5, 0.0, -0.3, 1.0, -1.0], dtype=torch.float64), 0)
    p = torch.softmax(torch.log(q) + shift * torch.tensor([1.0, -1.0, 0.5, 0.0, 2.0], dtype=torch.float64), 0)
    return q, p


def test_k1_and_k3_are_unbiased_and_k2_is_not():
    q, p = _two_categoricals(0.8)
    exact = (q * (q.log() - p.log())).sum()                           # KL(q || p), samples from q
    est = kl_estimators(q.log(), p.log())
    mean = {k: (q * v).sum() for k, v in est.items()}                # exact expectation over x ~ q
    assert torch.allclose(mean["k1"], exact) and torch.allclose(mean["k3"], exact)
    assert not torch.allclose(mean["k2"], exact, rtol=1e-2)
    # k1 takes negative values, k2 and k3 never do
    assert (est["k1"] < 0).any() and (est["k2"] >= 0).all() and (est["k3"] >= 0).all()


def test_k3_sampled_mean_within_four_standard_errors():
    q, p = _two_categoricals(0.5)
    x = torch.multinomial(q, 50_000, replacement=True, generator=torch.Generator().manual_seed(0))
    k3 = kl_k3(q.log()[x], p.log()[x])
    exact = (q * (q.log() - p.log())).sum()
    assert abs(k3.mean() - exact) < 4 * k3.std() / math.sqrt(len(k3))


def test_kl_estimators_zero_when_equal(dev):
    lp = torch.log(torch.tensor([0.1, 0.5, 0.4], device=dev))
    for f in (kl_k1, kl_k2, kl_k3):
        assert torch.equal(f(lp, lp), torch.zeros(3, device=dev))
    with pytest.raises(ValueError, match="ref_logp"):
        kl_k3(lp, lp[:2])


# ---------------------------------------------------------------- token aggregation

def test_aggregate_tokens_by_hand(dev):
    v = torch.tensor([[1.0, 2.0, 3.0], [4.0, float("nan"), 5.0]], device=dev, requires_grad=True)
    m = torch.tensor([[True, True, True], [True, False, False]], device=dev)
    assert torch.isclose(aggregate_tokens(v, m, "grpo"), torch.tensor(3.0, device=dev))       # (6/3 + 4/1)/2
    assert torch.isclose(aggregate_tokens(v, m, "bnpo"), torch.tensor(2.5, device=dev))       # 10/4
    assert torch.isclose(aggregate_tokens(v, m, "dr_grpo"), torch.tensor(10 / 6, device=dev))  # 10/(2·3)
    aggregate_tokens(v, m, "grpo").backward()
    expected = torch.tensor([[1 / 6] * 3, [0.5, 0.0, 0.0]], device=dev)
    assert torch.allclose(v.grad, expected)


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_token_weights_are_the_aggregation(loss_type):
    g = torch.Generator().manual_seed(0)
    v = torch.randn(6, 7, generator=g, dtype=torch.float64)
    m = torch.arange(7)[None, :] < torch.tensor([7, 1, 3, 5, 2, 0])[:, None]   # the last row has no valid token
    w = token_weights(m, loss_type, torch.float64)
    assert torch.allclose((w * v).sum(), aggregate_tokens(v, m, loss_type))
    assert (w[~m] == 0).all()
    total = {"grpo": 5 / 6, "bnpo": 1.0, "dr_grpo": 18 / 42}[loss_type]   # Σw: rows with tokens / B; 1; N/(B·T)
    assert math.isclose(float(w.sum()), total, rel_tol=1e-12)


def test_aggregate_tokens_bad_inputs():
    v, m = torch.ones(2, 3), torch.ones(2, 3, dtype=torch.bool)
    with pytest.raises(ValueError, match="loss_type"):
        aggregate_tokens(v, m, "mean")
    with pytest.raises(ValueError, match="mask"):
        aggregate_tokens(v, m[:, :2])
    with pytest.raises(ValueError, match="values"):
        aggregate_tokens(torch.ones(3), torch.ones(3, dtype=torch.bool))
    bad = v.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="values"):
        aggregate_tokens(bad, m)


# ---------------------------------------------------------------- the GRPO loss

def _example(dev="cpu"):
    logp = torch.log(torch.tensor([[0.5, 0.4, 0.9], [0.3, 0.6, 0.2]], device=dev)).requires_grad_()
    mask = torch.tensor([[True, True, True], [True, True, False]], device=dev)
    adv = torch.tensor([1.0, -2.0], device=dev)
    return logp, mask, adv


@pytest.mark.parametrize("loss_type, weight", [
    ("grpo", lambda lengths, B, T, N: 1 / (lengths * B)),
    ("bnpo", lambda lengths, B, T, N: torch.full_like(lengths, 1 / N)),
    ("dr_grpo", lambda lengths, B, T, N: torch.full_like(lengths, 1 / (B * T))),
])
def test_grpo_loss_value_and_gradient_on_policy(loss_type, weight, dev):
    logp, mask, adv = _example(dev)
    old = ref = logp.detach()
    loss, stats = grpo_loss(logp, old, ref, adv, mask, loss_type=loss_type)
    lengths = mask.sum(1).double()
    w = weight(lengths, 2, 3, int(mask.sum())).to(dev, torch.float32)       # per-token weight of each sequence
    # on policy: ratio 1, k3 = 0, loss = −Σ_i w_i |y_i| A_i
    assert torch.isclose(loss, -(w * mask.sum(1) * adv).sum(), atol=1e-6)
    loss.backward()
    # ∂loss/∂logp_it = −w_i A_i on valid tokens (the k3 gradient 1 − e^{ref−logp} is 0 at logp = ref), 0 elsewhere
    assert torch.allclose(logp.grad, torch.where(mask, -(w * adv)[:, None], torch.zeros_like(logp)), atol=1e-6)
    assert stats["clip_fraction"] == 0.0 and stats["k3"] == stats["kl_ref"] == stats["approx_kl"] == 0.0
    assert stats["ratio"] == 1.0 and stats["kl_old"] == 0.0 and stats["tokens"] == 5


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_grpo_loss_off_policy_by_hand(loss_type):
    """ρ ≠ 1 and ref ≠ logp: the loss and its gradient written out token by token."""
    logp, mask, adv = _example()
    old = logp.detach() + torch.tensor([[-0.3, -0.1, 0.05], [-0.4, 0.4, 0.0]])   # ρ = e^{0.3} (clipped), e^{0.1}, …
    ref = logp.detach() + torch.tensor([[0.2, -0.5, 0.1], [0.3, 0.0, 7.0]])
    beta, eps = 0.1, 0.2
    loss, stats = grpo_loss(logp, old, ref, adv, mask, clip_eps=eps, beta=beta, loss_type=loss_type)
    loss.backward()
    want, grad, n_clipped = 0.0, torch.zeros(2, 3), 0
    B, T, N = 2, 3, 5
    for i in range(B):
        L = int(mask[i].sum())
        w = {"grpo": 1 / (B * L), "bnpo": 1 / N, "dr_grpo": 1 / (B * T)}[loss_type]
        for t in range(L):
            rho = math.exp(float(logp[i, t].detach() - old[i, t]))
            a = float(adv[i])
            clipped = min(max(rho, 1 - eps), 1 + eps)
            active_clip = clipped * a < rho * a
            n_clipped += active_clip
            d = float(ref[i, t] - logp[i, t].detach())
            want += w * (-min(rho * a, clipped * a) + beta * (math.exp(d) - d - 1))
            # ∂/∂logp: −ρA where the unclipped term is the min, 0 where the clip is; + β(1 − e^{ref−logp})
            grad[i, t] = w * ((0.0 if active_clip else -rho * a) + beta * (1 - math.exp(d)))
    assert math.isclose(float(loss.detach()), want, rel_tol=1e-5)
    assert torch.allclose(logp.grad, grad, atol=1e-6)
    assert math.isclose(stats["clip_fraction"], n_clipped / N, rel_tol=1e-6) and n_clipped == 2


def test_grpo_loss_weights_give_a_microbatch_its_share():
    logp, mask, adv = _example()
    old, ref = logp.detach() + 0.1, logp.detach() - 0.2
    for loss_type in LOSS_TYPES:
        full, _ = grpo_loss(logp, old, ref, adv, mask, loss_type=loss_type)
        w = token_weights(mask, loss_type)
        parts = [grpo_loss(logp[i:i + 1], old[i:i + 1], ref[i:i + 1], adv[i:i + 1], mask[i:i + 1],
                           loss_type=loss_type, weights=w[i:i + 1])[0] for i in range(2)]
        assert torch.isclose(parts[0] + parts[1], full)
    with pytest.raises(ValueError, match="weights"):
        grpo_loss(logp, old, ref, adv, mask, weights=torch.ones(2, 2))


def test_grpo_loss_advantages_per_token_same_as_broadcast():
    logp, mask, adv = _example()
    old = logp.detach() + 0.1
    ref = logp.detach() - 0.2
    a, _ = grpo_loss(logp, old, ref, adv, mask)
    b, _ = grpo_loss(logp, old, ref, adv[:, None].expand(2, 3).clone(), mask)
    assert torch.equal(a, b)


def test_k3_term_alone():
    logp, mask, _ = _example()
    ref = logp.detach() + torch.tensor([[0.3, -0.2, 0.1], [0.0, 0.5, 9.0]])
    beta = 0.1
    loss, stats = grpo_loss(logp, logp.detach(), ref, torch.zeros(2), mask, beta=beta, loss_type="bnpo")
    d = (ref - logp.detach())[mask]
    k3 = torch.exp(d) - d - 1
    assert torch.isclose(loss, beta * k3.mean())
    assert math.isclose(stats["k3"], float(k3.mean()), rel_tol=1e-5)
    loss.backward()
    # ∂/∂logp β(e^{ref−logp} − (ref−logp) − 1) = β(1 − e^{ref−logp}), over N valid tokens
    expected = torch.zeros(2, 3)
    expected[mask] = beta * (1 - torch.exp(d)) / 5
    assert torch.allclose(logp.grad, expected, atol=1e-6)


@pytest.mark.parametrize("log_ratio, adv, clipped", [
    (math.log(1.5), 1.0, True),     # ratio above 1+ε with A > 0: clipped, no gradient
    (math.log(1.5), -1.0, False),   # ratio above 1+ε with A < 0: the unclipped (worse) term counts
    (math.log(0.5), -1.0, True),    # ratio below 1−ε with A < 0: clipped
    (math.log(0.5), 1.0, False),    # ratio below 1−ε with A > 0: unclipped
    (math.log(1.1), 1.0, False),    # inside the trust region
])
def test_clip_zeroes_the_gradient(log_ratio, adv, clipped):
    logp = torch.full((1, 2), -1.0, requires_grad=True)
    old = logp.detach() - log_ratio
    mask = torch.ones(1, 2, dtype=torch.bool)
    loss, stats = grpo_loss(logp, old, logp.detach(), torch.tensor([adv]), mask, beta=0.0)
    loss.backward()
    ratio = math.exp(log_ratio)
    assert stats["clip_fraction"] == (1.0 if clipped else 0.0)
    if clipped:
        assert torch.equal(logp.grad, torch.zeros(1, 2))
        assert math.isclose(float(loss.detach()), -max(0.8, min(1.2, ratio)) * adv, rel_tol=1e-5)
    else:
        assert torch.allclose(logp.grad, torch.full((1, 2), -ratio * adv / 2))


def test_masks_are_respected():
    logp, mask, adv = _example()
    junk = logp.detach().clone()
    junk[~mask] = float("nan")
    old, ref = junk + 0.05, junk - 0.1
    loss, stats = grpo_loss(logp, old, ref, adv, mask)
    assert torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(logp.grad).all() and (logp.grad[~mask] == 0).all()
    # changing masked entries changes nothing
    other = logp.detach().clone()
    other[~mask] = 3.0
    loss2, _ = grpo_loss(other, old, ref, adv, mask)
    assert torch.isclose(loss2, loss)


def test_grpo_loss_bad_inputs():
    logp, mask, adv = _example()
    old = ref = logp.detach()
    with pytest.raises(ValueError, match="old_logp"):
        grpo_loss(logp, old[:, :2], ref, adv, mask)
    with pytest.raises(ValueError, match="ref_logp"):
        grpo_loss(logp, old, ref[:1], adv, mask)
    with pytest.raises(ValueError, match="mask"):
        grpo_loss(logp, old, ref, adv, mask[:, :2])
    with pytest.raises(ValueError, match="advantages"):
        grpo_loss(logp, old, ref, adv[:1], mask)
    with pytest.raises(ValueError, match="advantages"):
        grpo_loss(logp, old, ref, torch.tensor([1.0, float("nan")]), mask)
    with pytest.raises(ValueError, match="loss_type"):
        grpo_loss(logp, old, ref, adv, mask, loss_type="ppo")
    with pytest.raises(ValueError, match="clip_eps"):
        grpo_loss(logp, old, ref, adv, mask, clip_eps=-0.1)
    with pytest.raises(ValueError, match="beta"):
        grpo_loss(logp, old, ref, adv, mask, beta=-1.0)
    with pytest.raises(TypeError, match="logp"):
        grpo_loss(torch.zeros(2, 3, dtype=torch.long), old, ref, adv, mask)
    with pytest.raises(ValueError, match="logp"):
        grpo_loss(logp[0], old[0], ref[0], adv, mask[0])
    bad = old.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="old_logp"):
        grpo_loss(logp, bad, ref, adv, mask)
