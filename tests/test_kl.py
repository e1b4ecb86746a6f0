"""pgcourse.kl: the exact KL-gradient identities, Monte Carlo agreement within standard errors, bad inputs."""
import pytest
import torch

from pgcourse import kl
from pgcourse.stats import bias_test

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def pair(shape, seed, scale=1.0, dev="cpu"):
    g = torch.Generator().manual_seed(seed)
    z = scale * torch.randn(shape, generator=g, dtype=torch.float64)
    r = scale * torch.randn(shape, generator=g, dtype=torch.float64)
    return z.to(dev), r.to(dev)


def autograd_of(fn, z, r):
    z = z.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(fn(z, r).sum(), z)
    return grad


SHAPES = [(2,), (5,), (3, 7), (2, 4, 11)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_closed_forms_are_the_autograd_of_the_exact_kls(shape, seed, dev):
    z, r = pair(shape, seed, dev=dev)
    torch.testing.assert_close(kl.kl_gradient(z, r, "reverse"), autograd_of(kl.reverse_kl, z, r), rtol=0, atol=1e-13)
    torch.testing.assert_close(kl.kl_gradient(z, r, "forward"), autograd_of(kl.forward_kl, z, r), rtol=0, atol=1e-13)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_each_treatment_follows_its_kl_exactly(shape, seed, dev):
    z, r = pair(shape, seed, scale=1.5, dev=dev)
    rev, fwd = autograd_of(kl.reverse_kl, z, r), autograd_of(kl.forward_kl, z, r)
    exact = {"reverse": rev, "forward": fwd, "zero": torch.zeros_like(rev)}
    for t in kl.ALL_TREATMENTS:
        got = kl.expected_gradient(z, r, t)
        target = kl.FOLLOWS[t]
        if target is None:  # k3 as a reward follows neither
            assert float((got - rev).abs().max()) > 1e-3 and float((got - fwd).abs().max()) > 1e-3, t
        else:
            torch.testing.assert_close(got, exact[target], rtol=0, atol=1e-13, msg=t)
        assert kl.which_kl(got, z, r) == target, t


def test_k3_in_the_loss_does_not_follow_the_reverse_kl_whose_value_it_estimates():
    z, r = pair((6,), 3)
    p = torch.softmax(z, -1)
    lp, lr = torch.log_softmax(z, -1), torch.log_softmax(r, -1)
    # the value: E_pi[k3] is the reverse KL
    torch.testing.assert_close((p * (torch.exp(lr - lp) - (lr - lp) - 1)).sum(), kl.reverse_kl(z, r), rtol=0, atol=1e-14)
    # the gradient of the loss term: the forward KL's, pi - pi_ref, not the reverse KL's
    g = kl.expected_gradient(z, r, "k3_loss")
    torch.testing.assert_close(g, p - torch.softmax(r, -1), rtol=0, atol=1e-14)
    assert float((g - kl.kl_gradient(z, r, "reverse")).abs().max()) > 0.05


def test_k3_reward_is_the_reverse_kl_minus_the_pathwise_part():
    """The full gradient of E_pi[k3] (score function + pathwise) is the reverse KL's."""
    z, r = pair((2, 9), 4)
    total = kl.expected_gradient(z, r, "k3_reward") + kl.expected_gradient(z, r, "k3_loss")
    torch.testing.assert_close(total, kl.kl_gradient(z, r, "reverse"), rtol=0, atol=1e-13)


def test_identities_hold_for_model_parameters():
    """Through a model: the surrogate's parameter gradient is the exact KL's parameter gradient."""
    g = torch.Generator().manual_seed(5)
    W = torch.randn(4, 6, generator=g, dtype=torch.float64, requires_grad=True)
    x = torch.randn(8, 4, generator=g, dtype=torch.float64)
    ref = torch.randn(8, 6, generator=g, dtype=torch.float64)
    for t, fn in (("k1_reward", kl.reverse_kl), ("k3_loss", kl.forward_kl), ("k2_loss", kl.reverse_kl)):
        (got,) = torch.autograd.grad(kl.expected_surrogate(x @ W, ref, t).sum(), W)
        (want,) = torch.autograd.grad(fn(x @ W, ref).sum(), W)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-13, msg=t)


def test_expected_gradient_leaves_the_callers_graph_alone():
    z = torch.randn(5, dtype=torch.float64, requires_grad=True)
    r = torch.randn(5, dtype=torch.float64)
    kl.expected_gradient(z, r, "k3_loss")
    assert z.grad is None


def test_gradient_table_rows():
    z, r = pair((3, 5), 6)
    rows = {row["treatment"]: row for row in kl.gradient_table(z, r)}
    assert list(rows) == list(kl.ALL_TREATMENTS)
    assert rows["k1_reward"]["follows"] == "reverse" and rows["k1_reward"]["cos_reverse"] == pytest.approx(1, abs=1e-12)
    assert rows["k3_loss"]["follows"] == "forward" and rows["k3_loss"]["err_forward"] < 1e-13
    assert rows["k3_loss"]["cos_reverse"] < 0.999
    assert rows["k1_loss"]["follows"] == "zero" and rows["k1_loss"]["cos_reverse"] == 0.0
    assert rows["k3_reward"]["follows"] is None


def test_float32_identities_to_float32_precision():
    z, r = (t.float() for t in pair((4, 13), 7, scale=2.0))
    assert kl.which_kl(kl.expected_gradient(z, r, "k3_loss"), z, r) == "forward"
    assert kl.which_kl(kl.expected_gradient(z, r, "k1_reward"), z, r) == "reverse"


# ---- Monte Carlo: single-sample estimates average to the exact expectation ------------------------

@pytest.mark.parametrize("treatment", [t for t in kl.ALL_TREATMENTS if t != "reverse_kl"])
def test_monte_carlo_mean_agrees_within_standard_errors(treatment, dev):
    """Per coordinate |z| <= 4 and the joint chi^2 not rejected at 1e-3 (no bias: |z| ~ N(0,1), p uniform)."""
    z, r = pair((5,), 8, dev=dev)
    draws = kl.sample_gradients(z, r, treatment, 20_000, seed=9)
    test = bias_test(draws.cpu(), kl.expected_gradient(z, r, treatment).cpu())
    assert test.unbiased(), test.summary()


def test_monte_carlo_has_the_power_to_tell_the_directions_apart():
    """The same draws of k3-in-the-loss sit many standard errors away from the reverse KL's gradient."""
    z, r = pair((5,), 8)
    draws = kl.sample_gradients(z, r, "k3_loss", 20_000, seed=9)
    assert bias_test(draws, kl.kl_gradient(z, r, "reverse")).biased(z_min=40)


def test_sample_gradients_shape_and_seed():
    z, r = pair((2, 3, 4), 10)
    a = kl.sample_gradients(z, r, "k1_reward", 7, seed=1)
    assert a.shape == (7, 2, 3, 4)
    torch.testing.assert_close(a, kl.sample_gradients(z, r, "k1_reward", 7, seed=1), rtol=0, atol=0)
    torch.testing.assert_close(a.sum(-1), torch.zeros(7, 2, 3, dtype=a.dtype), rtol=0, atol=1e-12)  # softmax


# ---- bad inputs -----------------------------------------------------------------------------------

@pytest.mark.parametrize("call, exc, words", [
    (lambda: kl.reverse_kl(torch.zeros(3), torch.zeros(4)), ValueError, "ref_logits"),
    (lambda: kl.forward_kl(torch.zeros(3, dtype=torch.long), torch.zeros(3)), TypeError, "logits"),
    (lambda: kl.kl_gradient(torch.tensor([0.0, float("nan")]), torch.zeros(2)), ValueError, "logits"),
    (lambda: kl.kl_gradient(torch.zeros(1), torch.zeros(1)), ValueError, "2 outcomes"),
    (lambda: kl.kl_gradient(torch.zeros(3), torch.zeros(3), "sideways"), ValueError, "direction"),
    (lambda: kl.expected_gradient(torch.zeros(3), torch.ones(3), "k4_loss"), ValueError, "treatment"),
    (lambda: kl.expected_surrogate([0.0, 1.0], torch.zeros(2), 3), TypeError, "treatment"),
    (lambda: kl.sample_gradients(torch.zeros(3), torch.ones(3), "k3_loss", 0), ValueError, "n"),
    (lambda: kl.sample_gradients(torch.zeros(3), torch.ones(3), "reverse_kl", 5), ValueError, "exact"),
    (lambda: kl.sample_gradients(torch.zeros(3), torch.ones(3), "k3_loss", 5, seed=1.5), TypeError, "seed"),
    (lambda: kl.which_kl(torch.zeros(3), torch.zeros(3), torch.zeros(3)), ValueError, "same distribution"),
    (lambda: kl.which_kl(torch.zeros(4), torch.zeros(3), torch.ones(3)), ValueError, "grad"),
    (lambda: kl.reverse_kl("logits", torch.zeros(3)), TypeError, "logits"),
    (lambda: kl.reverse_kl(torch.zeros(0), torch.zeros(0)), ValueError, "empty"),
])
def test_bad_input(call, exc, words):
    with pytest.raises(exc, match=words):
        call()


# ---- where each treatment leads: the optimum of E[r] - beta KL -------------------------------------

REWARD = torch.tensor([1.0, 0.6, 0.2, 0.0, 0.0], dtype=torch.float64)
REF = torch.log(torch.tensor([0.1, 0.2, 0.3, 0.2, 0.2], dtype=torch.float64))


@pytest.mark.parametrize("beta", [0.1, 0.3, 1.0])
@pytest.mark.parametrize("direction", kl.DIRECTIONS)
def test_regularized_optimum_is_stationary(beta, direction):
    p = kl.regularized_optimum(REWARD, REF, beta, direction)
    assert float(p.sum()) == pytest.approx(1, abs=1e-12) and bool((p > 0).all())
    z = torch.log(p)
    grad_reward = p * (REWARD - (p * REWARD).sum())
    torch.testing.assert_close(grad_reward, beta * kl.kl_gradient(z, REF, direction), rtol=0, atol=1e-12)


def test_each_treatment_ascends_to_its_own_optimum():
    betas = torch.tensor([0.3, 1.0], dtype=torch.float64)[:, None]
    r, ref = REWARD.expand(2, 5), REF.expand(2, 5)
    for treatment, direction in (("k1_reward", "reverse"), ("reverse_kl", "reverse"), ("k3_loss", "forward")):
        for i, beta in enumerate(betas.flatten().tolist()):
            z = kl.ascend(r[i], ref[i], beta, treatment, steps=3000)
            want = kl.regularized_optimum(r[i], ref[i], beta, direction)
            torch.testing.assert_close(torch.softmax(z, -1), want, rtol=0, atol=1e-6, msg=treatment)
    # the two optima differ: k3 in the loss does not lead where the reverse KL does
    gap = kl.regularized_optimum(REWARD, REF, 0.3, "forward") - kl.regularized_optimum(REWARD, REF, 0.3, "reverse")
    assert float(gap.abs().max()) > 0.05


def test_no_kl_ascends_towards_the_best_outcome():
    p = torch.softmax(kl.ascend(REWARD, REF, 0.0, None, steps=2000), -1)
    assert float(p[0]) > 0.95


@pytest.mark.parametrize("call, exc, words", [
    (lambda: kl.regularized_optimum(REWARD, REF, 0.0), ValueError, "beta"),
    (lambda: kl.regularized_optimum(REWARD, REF, 0.1, "both"), ValueError, "direction"),
    (lambda: kl.regularized_optimum(REWARD[:3], REF, 0.1), ValueError, "ref_logits"),
    (lambda: kl.ascend(REWARD, REF, 0.1, "k3_loss", steps=0), ValueError, "steps"),
    (lambda: kl.ascend(REWARD, REF, 0.1, "k5"), ValueError, "treatment"),
    (lambda: kl.ascend(REWARD, REF, -1.0, "k3_loss"), ValueError, "beta"),
])
def test_bad_input_optimum(call, exc, words):
    with pytest.raises(exc, match=words):
        call()


def test_a_callable_penalty_is_a_treatment_in_the_loss():
    z, r = pair((3, 6), 11)
    k2 = lambda logp, ref_logp: 0.5 * (logp - ref_logp) ** 2
    k3 = lambda logp, ref_logp: torch.exp(ref_logp - logp) - (ref_logp - logp) - 1
    torch.testing.assert_close(kl.expected_gradient(z, r, k2), kl.kl_gradient(z, r, "reverse"), rtol=0, atol=1e-13)
    torch.testing.assert_close(kl.expected_gradient(z, r, k3), kl.kl_gradient(z, r, "forward"), rtol=0, atol=1e-13)
    assert bias_test(kl.sample_gradients(z, r, k3, 5000, seed=2), kl.kl_gradient(z, r, "forward")).unbiased()
    with pytest.raises(ValueError, match="shaped like logp"):
        kl.expected_gradient(z, r, lambda logp, ref_logp: (logp - ref_logp).sum())


def test_penalty_gradient_wraps_a_learners_penalty():
    z, r = pair((4,), 12)
    grad = kl.penalty_gradient(lambda logp, ref_logp: 0.5 * (logp - ref_logp) ** 2)
    torch.testing.assert_close(grad(z, r), kl.kl_gradient(z, r, "reverse"), rtol=0, atol=1e-13)
    with pytest.raises(TypeError, match="penalty"):
        kl.penalty_gradient("k2")
