"""pgcourse.estimators: pg_loss's value and gradient, and every Ψ weight, by hand; pg_loss's gradient is ĝ."""
import pytest
import torch

import naive
from pgcourse import estimators as est
from pgcourse.mdp import early_rewards
from pgcourse.policies import softmax_log_prob
from pgcourse.variance import gradient_samples

F, T_ = False, True
D = torch.float64


# ---- pg_loss -------------------------------------------------------------------------------------------------------

def test_pg_loss_value_and_gradient_by_hand():
    logp = torch.tensor([[-1.0, -2.0], [-0.5, -1.0]], requires_grad=True)
    w = torch.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    loss = est.pg_loss(logp, w)
    # −(1/N) Σ logp·w = −(−1 − 4 − 1.5 − 4)/2
    assert float(loss.detach()) == pytest.approx(5.25)
    loss.backward()
    assert torch.equal(logp.grad, -w.detach() / 2)
    assert w.grad is None  # the weights are constants (stop-gradient)


def test_pg_loss_mask_drops_padding_even_if_infinite():
    logp = torch.tensor([[-1.0, -2.0], [-0.5, float("-inf")]], requires_grad=True)
    w = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    mask = torch.tensor([[T_, T_], [T_, F]])
    loss = est.pg_loss(logp, w, mask)
    assert float(loss.detach()) == pytest.approx((1 + 4 + 1.5) / 2)  # still divided by the number of rows
    loss.backward()
    assert torch.equal(logp.grad, torch.tensor([[-0.5, -1.0], [-1.5, 0.0]]))


def test_pg_loss_one_episode_and_leading_axes():
    logp, w = torch.tensor([-1.0, -3.0]), torch.tensor([2.0, 1.0])
    assert float(est.pg_loss(logp, w)) == pytest.approx(5.0)
    # (2, 3, T): six rows, each an episode.
    lp, ww = logp.expand(2, 3, 2), w.expand(2, 3, 2)
    assert float(est.pg_loss(lp, ww)) == pytest.approx(5.0)


def test_pg_loss_gradient_is_the_batch_estimate():
    # −∇ pg_loss through softmax_log_prob equals gradient_samples' closed-form score sum, same episodes.
    mdp = early_rewards(horizon=6, gamma=0.9)
    logits = torch.randn(mdp.n_states, 2, generator=torch.Generator().manual_seed(0), dtype=D)
    N, seed = 64, 5
    ep = mdp.sample(logits, N, seed=seed)
    th = logits.clone().requires_grad_(True)
    logp = softmax_log_prob(th, ep.states, ep.actions)
    w = est.reward_to_go_weights(ep.rewards, mdp.gamma, ep.dones)
    (grad,) = torch.autograd.grad(est.pg_loss(logp, w, ep.mask), th)
    g_hat = gradient_samples(mdp, logits, "reward_to_go", N, 1, seed=seed)[0]
    assert g_hat.abs().max() > 1e-3
    torch.testing.assert_close(-grad, g_hat)


# ---- the weights Ψ --------------------------------------------------------------------------------------------------

R = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0]])
DN = torch.tensor([[F, T_, F, F, F]])           # episodes {0, 1} and {2, 3, 4}; γᵗ = 1, ½, 1, ½, ¼ at γ = ½
G = torch.tensor([[2.0, 2.0, 6.25, 6.5, 5.0]])  # reward-to-go at γ = ½ (see test_returns)
GT = torch.tensor([[1.0, 0.5, 1.0, 0.5, 0.25]])


def test_discount_factors():
    assert torch.equal(est.discount_factors(DN, 0.5), GT)
    assert est.discount_factors(DN, 0.5, torch.float64).dtype == torch.float64
    assert torch.equal(est.discount_factors(DN, 0.0), torch.tensor([[1.0, 0.0, 1.0, 0.0, 0.0]]))  # 0⁰ = 1


def test_full_return_weights():
    assert torch.equal(est.full_return_weights(R, 0.5, DN), torch.tensor([[2.0, 2.0, 6.25, 6.25, 6.25]]))


def test_reward_to_go_weights():
    assert torch.equal(est.reward_to_go_weights(R, 0.5, DN), GT * G)
    assert torch.equal(est.reward_to_go_weights(R, 0.5, DN, discount_t=False), G)
    assert torch.equal(est.reward_to_go_weights(R, 1.0, DN), naive.reward_to_go(R, 1.0, DN).float())


def test_baseline_weights():
    assert torch.equal(est.baseline_weights(R, 1.0, 0.5, DN), GT * (G - 1))
    b = torch.tensor([[0.0, 1.0, 2.0, 3.0, 4.0]])
    assert torch.equal(est.baseline_weights(R, b, 0.5, DN), GT * (G - b))
    assert torch.equal(est.baseline_weights(R, b, 0.5, DN, discount_t=False), G - b)


def test_q_and_advantage_weights():
    q = torch.tensor([[3.0, -1.0, 2.0, 0.5, 8.0]])
    assert torch.equal(est.q_weights(q, 0.5, DN), GT * q)
    assert torch.equal(est.advantage_weights(q, 0.5, DN), GT * q)
    assert torch.equal(est.advantage_weights(q, 0.5, DN, discount_t=False), q)


def test_td_residual_and_gae_weights():
    # The hand case of test_returns.test_gae_by_hand_terminated_vs_truncated: δ = (1, 1, 3.5, 52),
    # A = (1.25, 1, 3.5, 52); episodes {0, 1}, {2}, {3} so γᵗ = (1, ½, 1, 1).
    r = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    v = torch.tensor([[0.5, 1.0, 1.5, 2.0]])
    nv = torch.tensor([[1.0, 10.0, 4.0, 100.0]])
    term, trunc = torch.tensor([[F, T_, F, F]]), torch.tensor([[F, F, T_, F]])
    gt = torch.tensor([[1.0, 0.5, 1.0, 1.0]])
    torch.testing.assert_close(est.td_residual_weights(r, v, nv, term, trunc, 0.5), gt * torch.tensor([[1.0, 1, 3.5, 52]]))
    torch.testing.assert_close(est.gae_weights(r, v, nv, term, trunc, 0.5, 0.5), gt * torch.tensor([[1.25, 1, 3.5, 52]]))
    torch.testing.assert_close(est.gae_weights(r, v, nv, term, trunc, 0.5, 0.5, discount_t=False),
                               torch.tensor([[1.25, 1, 3.5, 52]]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_weights_keep_dtype_and_device(dev, dtype):
    r, d = R.to(dev, dtype), DN.to(dev)
    outs = [est.full_return_weights(r, 0.5, d), est.reward_to_go_weights(r, 0.5, d), est.baseline_weights(r, 1.0, 0.5, d),
            est.q_weights(r, 0.5, d), est.advantage_weights(r, 0.5, d), est.td_residual_weights(r, r, r, d, None, 0.5),
            est.gae_weights(r, r, r, d, None, 0.5, 0.9), est.discount_factors(d, 0.5, dtype)]
    for o in outs:
        assert o.dtype == dtype and o.device.type == dev.type
    torch.testing.assert_close(outs[1].cpu().double(), (GT * G).double())
    loss = est.pg_loss(torch.zeros_like(r, requires_grad=True), outs[1])
    assert loss.device.type == dev.type and loss.dtype == dtype
