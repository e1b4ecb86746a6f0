"""pgcourse.returns: hand-computed cases, property tests against plain loops, both scan paths, dtype and device."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import naive
from pgcourse import returns
from pgcourse.returns import discounted_return, episode_start_index, gae, reverse_scan, reward_to_go, steps_since_start

PROPERTY = settings(derandomize=True, max_examples=60, deadline=None)
F, T_ = False, True


# ---- hand-computed cases ------------------------------------------------------------------------------------------

# Two rows, γ = 1/2. Row 0: episodes {0, 1} and {2, 3, 4} (the last one cut by the end of the row).
# Row 1: episodes {0}, {1, 2}, {3, 4}.
HAND_R = [[1.0, 2.0, 3.0, 4.0, 5.0], [1.0, 1.0, 1.0, 1.0, 1.0]]
HAND_D = [[F, T_, F, F, F], [T_, F, T_, F, T_]]
# G_1 = 2, G_0 = 1 + 2/2 = 2;  G_4 = 5, G_3 = 4 + 5/2 = 6.5, G_2 = 3 + 6.5/2 = 6.25.
HAND_RTG = [[2.0, 2.0, 6.25, 6.5, 5.0], [1.0, 1.5, 1.0, 1.5, 1.0]]
HAND_RET = [[2.0, 2.0, 6.25, 6.25, 6.25], [1.0, 1.5, 1.5, 1.5, 1.5]]
HAND_STEPS = [[0, 1, 0, 1, 2], [0, 0, 1, 0, 1]]


def test_reward_to_go_by_hand():
    r, d = torch.tensor(HAND_R), torch.tensor(HAND_D)
    assert torch.equal(reward_to_go(r, 0.5, d), torch.tensor(HAND_RTG))


def test_discounted_return_by_hand():
    r, d = torch.tensor(HAND_R), torch.tensor(HAND_D)
    assert torch.equal(discounted_return(r, 0.5, d), torch.tensor(HAND_RET))


def test_steps_since_start_by_hand():
    d = torch.tensor(HAND_D)
    assert torch.equal(steps_since_start(d), torch.tensor(HAND_STEPS))
    assert torch.equal(episode_start_index(d), torch.tensor([[0, 0, 2, 2, 2], [0, 1, 1, 3, 3]]))


def test_no_dones_is_one_episode_per_row():
    r = torch.tensor([1.0, 0.0, 2.0])
    assert torch.allclose(reward_to_go(r, 0.5), torch.tensor([1.5, 1.0, 2.0]))
    assert torch.allclose(discounted_return(r, 0.5), torch.tensor([1.5, 1.5, 1.5]))
    assert torch.allclose(reward_to_go(r), torch.tensor([3.0, 2.0, 2.0]))  # γ = 1 by default
    assert torch.allclose(reward_to_go(r, 0.0), r)  # γ = 0: only the step's own reward


def test_gae_by_hand_terminated_vs_truncated():
    # γ = λ = 1/2. Step 1 terminates (its next value 10 must be ignored), step 2 is truncated (its next value
    # 4, the value of the final observation, is bootstrapped), step 3 ends the row unfinished (bootstraps 100).
    r = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    v = torch.tensor([[0.5, 1.0, 1.5, 2.0]])
    nv = torch.tensor([[1.0, 10.0, 4.0, 100.0]])
    term = torch.tensor([[F, T_, F, F]])
    trunc = torch.tensor([[F, F, T_, F]])
    adv, ret = gae(r, v, nv, term, trunc, gamma=0.5, lam=0.5)
    # δ3 = 4 + 100/2 − 2 = 52;  δ2 = 3 + 4/2 − 1.5 = 3.5 (no A3 across the truncation);
    # δ1 = 2 − 1 = 1 (terminated: no bootstrap);  δ0 = 1 + 1/2 − 0.5 = 1,  A0 = 1 + (1/4)·1 = 1.25.
    assert torch.allclose(adv, torch.tensor([[1.25, 1.0, 3.5, 52.0]]))
    assert torch.allclose(ret, adv + v)
    # Had step 2 been terminated instead, its next value would be dropped: δ2 = 3 − 1.5.
    adv2, _ = gae(r, v, nv, term | trunc, None, gamma=0.5, lam=0.5)
    assert torch.allclose(adv2, torch.tensor([[1.25, 1.0, 1.5, 52.0]]))


def test_gae_lambda_one_is_return_minus_value_and_lambda_zero_is_td_residual():
    g = torch.Generator().manual_seed(0)
    r, v, nv = (torch.randn(3, 7, generator=g, dtype=torch.float64) for _ in range(3))
    term = torch.rand(3, 7, generator=g) < 0.3
    term[:, -1] = True  # every episode terminates: no bootstrap anywhere
    nv[:, :-1] = v[:, 1:]  # consistent values: V(s_{t+1}) is the next step's value, so the δ's telescope
    adv, ret = gae(r, v, nv, term, None, gamma=0.9, lam=1.0)
    assert torch.allclose(ret, reward_to_go(r, 0.9, term))
    adv0, _ = gae(r, v, nv, term, None, gamma=0.9, lam=0.0)
    assert torch.allclose(adv0, r + 0.9 * (~term) * nv - v)


def test_reverse_scan_by_hand_both_paths():
    x = torch.tensor([1.0, 2.0, 3.0])
    c = torch.tensor([2.0, 0.0, 5.0])  # y2 = 3, y1 = 2 + 0·3 = 2, y0 = 1 + 2·2 = 5 (c_{T-1} never used)
    expected = torch.tensor([5.0, 2.0, 3.0])
    for scan in (reverse_scan, returns._scan_numpy, returns._scan_doubling):
        assert torch.equal(scan(x, c), expected)


# ---- property tests against plain loops ---------------------------------------------------------------------------

def _batch(seed: int, shape, dtype, p_done: float, p_trunc: float = 0.0):
    g = torch.Generator().manual_seed(seed)
    r = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    term = torch.rand(shape, generator=g) < p_done
    trunc = (torch.rand(shape, generator=g) < p_trunc) & ~term
    return g, r, term, trunc


shapes = st.tuples(st.lists(st.integers(1, 3), min_size=0, max_size=2), st.integers(1, 12)).map(
    lambda bt: tuple(bt[0]) + (bt[1],))
dtypes = st.sampled_from([torch.float32, torch.float64])
unit = st.one_of(st.sampled_from([0.0, 1.0]), st.floats(0.0, 1.0))


def _tol(dtype):
    return dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)


@PROPERTY
@given(seed=st.integers(0, 2**31), shape=shapes, dtype=dtypes, gamma=unit, p=st.floats(0.0, 0.6))
def test_reward_to_go_and_discounted_return_match_loops(seed, shape, dtype, gamma, p):
    _, r, term, trunc = _batch(seed, shape, dtype, p, p / 2)
    dones = term | trunc
    rtg, ret = reward_to_go(r, gamma, dones), discounted_return(r, gamma, dones)
    assert rtg.dtype == ret.dtype == dtype and rtg.shape == ret.shape == r.shape
    torch.testing.assert_close(rtg.double(), naive.reward_to_go(r, gamma, dones), **_tol(dtype))
    torch.testing.assert_close(ret.double(), naive.discounted_return(r, gamma, dones), **_tol(dtype))
    assert torch.equal(steps_since_start(dones), naive.steps_since_start(dones))


@PROPERTY
@given(seed=st.integers(0, 2**31), shape=shapes, dtype=dtypes, gamma=unit, lam=unit, p=st.floats(0.0, 0.6))
def test_gae_matches_loop(seed, shape, dtype, gamma, lam, p):
    g, r, term, trunc = _batch(seed, shape, dtype, p, p / 2)
    v = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    nv = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    adv, ret = gae(r, v, nv, term, trunc, gamma, lam)
    assert adv.dtype == ret.dtype == dtype and adv.shape == r.shape
    exp_adv, exp_ret = naive.gae(r, v, nv, term, trunc, gamma, lam)
    torch.testing.assert_close(adv.double(), exp_adv, **_tol(dtype))
    torch.testing.assert_close(ret.double(), exp_ret, **_tol(dtype))


@PROPERTY
@given(seed=st.integers(0, 2**31), shape=shapes, dtype=dtypes, gamma=unit, n=st.integers(1, 14), p=st.floats(0.0, 0.6))
def test_n_step_advantage_matches_loop(seed, shape, dtype, gamma, n, p):
    g, r, term, trunc = _batch(seed, shape, dtype, p, p / 2)
    v = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    nv = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    adv = returns.n_step_advantage(r, v, nv, term, trunc, gamma, n)
    assert adv.dtype == dtype and adv.shape == r.shape
    torch.testing.assert_close(adv.double(), naive.n_step_advantage(r, v, nv, term, trunc, gamma, n), **_tol(dtype))


def test_n_step_advantage_ends():
    # n = 1 is the TD residual; n ≥ T is GAE with λ = 1.
    _, r, term, trunc = _batch(7, (3, 9), torch.float64, 0.2, 0.1)
    v, nv = torch.randn(3, 9, dtype=torch.float64), torch.randn(3, 9, dtype=torch.float64)
    nv[:, :-1] = v[:, 1:]  # consistent values inside episodes: only then do the δ's telescope
    td, _ = gae(r, v, nv, term, trunc, 0.9, 0.0)
    full, _ = gae(r, v, nv, term, trunc, 0.9, 1.0)
    torch.testing.assert_close(returns.n_step_advantage(r, v, nv, term, trunc, 0.9, 1), td)
    torch.testing.assert_close(returns.n_step_advantage(r, v, nv, term, trunc, 0.9, 9), full)


def _loop_scan(x, c):
    y = torch.zeros(x.shape, dtype=torch.float64)
    for idx, row in naive.rows(x):
        acc = 0.0
        for t in reversed(range(len(row))):
            acc = row[t] + float(c[idx][t]) * acc
            y[idx][t] = acc
    return y


@PROPERTY
@given(seed=st.integers(0, 2**31), lead=st.lists(st.integers(1, 3), max_size=2), T=st.integers(1, 70), dtype=dtypes)
def test_both_scan_paths_match_loop(seed, lead, T, dtype):
    # T up to 70 exercises every doubling level up to a shift of 64, including non-powers of two.
    g = torch.Generator().manual_seed(seed)
    shape = tuple(lead) + (T,)
    x = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    c = torch.rand(shape, generator=g, dtype=torch.float64).to(dtype) * 1.05  # some |c| > 1 too
    x_before = x.clone()
    expected = _loop_scan(x, c)
    for scan in (returns._scan_numpy, returns._scan_doubling):
        y = scan(x, c)
        assert y.dtype == dtype and y.shape == x.shape
        torch.testing.assert_close(y.double(), expected, rtol=1e-4 if dtype == torch.float32 else 1e-10, atol=1e-4
                                   if dtype == torch.float32 else 1e-10)
    assert torch.equal(x, x_before), "a scan modified its input"


def test_inputs_are_not_modified():
    g = torch.Generator().manual_seed(1)
    r, v, nv = (torch.randn(6, generator=g) for _ in range(3))
    term = torch.tensor([F, F, T_, F, F, F])
    copies = [t.clone() for t in (r, v, nv, term)]
    reward_to_go(r, 0.9, term)
    discounted_return(r, 0.9, term)
    gae(r, v, nv, term, None, 0.9, 0.8)
    for a, b in zip((r, v, nv, term), copies):
        assert torch.equal(a, b)


# ---- autograd ---------------------------------------------------------------------------------------------------

def test_autograd_through_doubling_scan_gradcheck():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 11, generator=g, dtype=torch.float64, requires_grad=True)
    c = torch.rand(2, 11, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(returns._scan_doubling, (x, c))


def test_reward_to_go_is_differentiable_and_gradient_is_right():
    # ∂(Σ_t G_t)/∂r_k = Σ_{t ≤ k, same episode} γ^{k−t}.
    d = torch.tensor(HAND_D)
    r = torch.tensor(HAND_R, dtype=torch.float64, requires_grad=True)
    out = reward_to_go(r, 0.5, d)
    assert out.requires_grad
    torch.testing.assert_close(out.detach(), torch.tensor(HAND_RTG, dtype=torch.float64))
    out.sum().backward()
    expected = torch.tensor([[1.0, 1.5, 1.0, 1.5, 1.75], [1.0, 1.0, 1.5, 1.0, 1.5]], dtype=torch.float64)
    torch.testing.assert_close(r.grad, expected)


def test_gae_is_differentiable_in_values():
    r = torch.tensor([1.0, 2.0], dtype=torch.float64)
    v = torch.tensor([0.5, 1.0], dtype=torch.float64, requires_grad=True)
    nv = torch.tensor([1.0, 3.0], dtype=torch.float64)
    adv, _ = gae(r, v, nv, torch.tensor([F, T_]), None, gamma=0.5, lam=0.5)
    adv.sum().backward()
    # A1 = r1 − v1; A0 = r0 + γ·nv0 − v0 + γλ A1: ∂ΣA/∂v0 = −1, ∂ΣA/∂v1 = −1 − γλ.
    torch.testing.assert_close(v.grad, torch.tensor([-1.0, -1.25], dtype=torch.float64))


# ---- dtypes, devices, input kinds ---------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_dtype_preserved(dtype):
    r, d = torch.tensor(HAND_R, dtype=dtype), torch.tensor(HAND_D)
    for out in (reward_to_go(r, 0.5, d), discounted_return(r, 0.5, d), *gae(r, r, r, d, None, 0.5, 0.5)):
        assert out.dtype == dtype
    tol = dict(rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(reward_to_go(r, 0.5, d).double(), torch.tensor(HAND_RTG, dtype=torch.float64), **tol)


def test_device_preserved_and_matches_cpu(dev):
    g = torch.Generator().manual_seed(3)
    r, v, nv = (torch.randn(4, 33, generator=g) for _ in range(3))
    term = torch.rand(4, 33, generator=g) < 0.1
    trunc = (torch.rand(4, 33, generator=g) < 0.1) & ~term
    cpu = [reward_to_go(r, 0.9, term | trunc), discounted_return(r, 0.9, term | trunc),
           *gae(r, v, nv, term, trunc, 0.9, 0.8), steps_since_start(term)]
    on = [reward_to_go(r.to(dev), 0.9, (term | trunc).to(dev)), discounted_return(r.to(dev), 0.9, (term | trunc).to(dev)),
          *gae(r.to(dev), v.to(dev), nv.to(dev), term.to(dev), trunc.to(dev), 0.9, 0.8), steps_since_start(term.to(dev))]
    for a, b in zip(cpu, on):
        assert b.device.type == dev.type
        torch.testing.assert_close(b.cpu(), a, rtol=1e-5, atol=1e-5)


def test_numpy_and_int_dones_accepted():
    r = np.array(HAND_R)
    out = reward_to_go(r, 0.5, np.array(HAND_D, dtype=np.int64))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64
    assert torch.equal(out, torch.tensor(HAND_RTG, dtype=torch.float64))
    out = reward_to_go(torch.tensor(HAND_R), torch.tensor(0.5), torch.tensor(HAND_D, dtype=torch.float32))
    assert torch.equal(out, torch.tensor(HAND_RTG))


def test_python_loop_and_vectorized_agree_on_bench_sized_batch():
    # The benchmark's shape, smaller: every row holds several episodes, some truncated.
    _, r, term, trunc = _batch(5, (16, 500), torch.float32, 0.01, 0.005)
    dones = term | trunc
    torch.testing.assert_close(reward_to_go(r, 0.99, dones).double(), naive.reward_to_go(r, 0.99, dones),
                               rtol=1e-4, atol=1e-4)
