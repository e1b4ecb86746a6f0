"""pgcourse.policies: the tabular softmax, its closed-form score against autograd, and the MLP policy."""
import pytest
import torch

from pgcourse.policies import MLPCategorical, softmax_log_prob, softmax_probs, softmax_score, softmax_score_sum

D = torch.float64


def _logits(S=3, A=4, seed=0, dtype=D):
    return torch.randn(S, A, generator=torch.Generator().manual_seed(seed), dtype=D).to(dtype)


def test_softmax_probs_by_hand():
    p = softmax_probs(torch.tensor([[0.0, 0.0], [0.0, torch.log(torch.tensor(3.0))]], dtype=D))
    torch.testing.assert_close(p, torch.tensor([[0.5, 0.5], [0.25, 0.75]], dtype=D))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_softmax_score_matches_autograd(dtype):
    logits = _logits(dtype=dtype)
    S, A = logits.shape
    for s in range(S):
        for a in range(A):
            th = logits.clone().requires_grad_(True)
            (grad,) = torch.autograd.grad(torch.log_softmax(th, -1)[s, a], th)
            score = softmax_score(logits, s, a)
            assert score.dtype == dtype and score.shape == (S, A)
            torch.testing.assert_close(score, grad)
            # Only row s is non-zero, and it sums to 0 (e_a − π(·|s)).
            assert score[torch.arange(S) != s].abs().max() == 0
            assert abs(float(score[s].sum())) < 1e-6


def test_softmax_log_prob_matches_table_and_is_differentiable():
    logits = _logits().requires_grad_(True)
    states = torch.tensor([[0, 2, 1], [1, 1, 0]])
    actions = torch.tensor([[3, 0, 1], [2, 2, 0]])
    logp = softmax_log_prob(logits, states, actions)
    assert logp.shape == states.shape
    torch.testing.assert_close(logp, torch.log(softmax_probs(logits))[states, actions])
    logp.sum().backward()
    expected = sum(softmax_score(logits.detach(), int(s), int(a)) for s, a in zip(states.flatten(), actions.flatten()))
    torch.testing.assert_close(logits.grad, expected)


def test_softmax_score_sum_matches_a_loop_over_steps():
    logits = _logits(S=4, A=3, seed=1)
    g = torch.Generator().manual_seed(2)
    n, n_groups = 40, 3
    states = torch.randint(0, 4, (n,), generator=g)
    actions = torch.randint(0, 3, (n,), generator=g)
    weights = torch.randn(n, generator=g, dtype=D)
    group = torch.randint(0, n_groups, (n,), generator=g)
    out = softmax_score_sum(logits, states, actions, weights, group, n_groups)
    expected = torch.zeros(n_groups, 4, 3, dtype=D)
    for i in range(n):
        expected[group[i]] += weights[i] * softmax_score(logits, int(states[i]), int(actions[i]))
    torch.testing.assert_close(out, expected)


def test_scores_on_device(dev):
    logits = _logits()
    on = logits.to(dev)
    assert softmax_probs(on).device.type == dev.type
    torch.testing.assert_close(softmax_score(on, 1, 2).cpu(), softmax_score(logits, 1, 2))
    st, ac = torch.tensor([0, 1, 2]), torch.tensor([3, 2, 1])
    w, grp = torch.tensor([1.0, -2.0, 0.5], dtype=D), torch.tensor([0, 1, 1])
    torch.testing.assert_close(softmax_score_sum(on, st.to(dev), ac.to(dev), w.to(dev), grp.to(dev), 2).cpu(),
                               softmax_score_sum(logits, st, ac, w, grp, 2))
    torch.testing.assert_close(softmax_log_prob(on, st.to(dev), ac.to(dev)).cpu(), softmax_log_prob(logits, st, ac))


def test_mlp_categorical():
    torch.manual_seed(0)
    pi = MLPCategorical(4, 2, hidden=(8, 8))
    assert sum(isinstance(m, torch.nn.Linear) for m in pi.net) == 3
    obs = torch.randn(5, 4)
    dist = pi(obs)
    assert dist.probs.shape == (5, 2)
    torch.testing.assert_close(dist.probs.sum(-1), torch.ones(5))
    assert pi(torch.randn(4)).probs.shape == (2,)
    assert pi(obs.double()).probs.dtype == torch.get_default_dtype()
    a1 = pi.act(obs, torch.Generator().manual_seed(1))
    a2 = pi.act(obs, torch.Generator().manual_seed(1))
    assert a1.shape == (5,) and torch.equal(a1, a2) and ((a1 == 0) | (a1 == 1)).all()
    # The log-probability is differentiable in the parameters.
    dist.log_prob(a1).sum().backward()
    assert all(p.grad is not None for p in pi.parameters())


def test_mlp_categorical_on_device(dev):
    pi = MLPCategorical(3, 2).to(dev)
    assert pi(torch.randn(6, 3, device=dev)).probs.device.type == dev.type
