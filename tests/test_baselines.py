"""pgcourse.baselines: hand-computed cases of every baseline."""
import pytest
import torch

from pgcourse.baselines import (MovingAverage, batch_mean_baseline, constant_baseline, ema, optimal_constant_baseline,
                                state_value_baseline)

X = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 9.0]])


def test_constant_baseline():
    b = constant_baseline(X.double(), 2.5)
    assert b.dtype == torch.float64 and torch.equal(b, torch.full((3, 2), 2.5, dtype=torch.float64))


def test_batch_mean_baseline_includes_the_episode_itself():
    assert torch.equal(batch_mean_baseline(X), torch.tensor([[3.0, 5.0]] * 3))


def test_leave_one_out_baseline_excludes_the_episode():
    # Row i: mean of the other rows, e.g. row 0 → ((3 + 5)/2, (4 + 9)/2).
    expected = torch.tensor([[4.0, 6.5], [3.0, 5.5], [2.0, 3.0]])
    assert torch.equal(batch_mean_baseline(X, leave_one_out=True), expected)
    # It is N/(N−1) · (mean − x_i/N): the two baselines differ by exactly the episode's own share.
    N = X.shape[0]
    torch.testing.assert_close(expected, (N * batch_mean_baseline(X) - X) / (N - 1))


def test_batch_mean_baseline_with_mask():
    # Column 1 has only row 0 valid: the plain mean there is 2; leave-one-out has no other episode for row 0 (→ 0).
    mask = torch.tensor([[True, True], [True, False], [True, False]])
    assert torch.equal(batch_mean_baseline(X, mask), torch.tensor([[3.0, 2.0]] * 3))
    assert torch.equal(batch_mean_baseline(X, mask, leave_one_out=True),
                       torch.tensor([[4.0, 0.0], [3.0, 2.0], [2.0, 2.0]]))


def test_batch_mean_baseline_over_axis_0_of_a_3d_layout():
    # (B, n, H): a mean within each of the n batches.
    x = torch.arange(12.0).view(2, 3, 2)
    b = batch_mean_baseline(x)
    assert b.shape == x.shape and torch.equal(b[0], (x[0] + x[1]) / 2) and torch.equal(b[1], b[0])


def test_ema_by_hand_and_moving_average_agrees():
    series = torch.tensor([1.0, 2.0, 3.0])
    # b_0 = init = 0 (nothing seen yet), b_1 = 0.5·0 + 0.5·1 = 0.5, b_2 = 0.5·0.5 + 0.5·2 = 1.25.
    out = ema(series, decay=0.5)
    assert torch.equal(out, torch.tensor([0.0, 0.5, 1.25]))
    assert torch.equal(ema(series, decay=0.5, init=4.0), torch.tensor([4.0, 2.5, 2.25]))
    ma, seen = MovingAverage(decay=0.5), []
    for x in series.tolist():
        seen.append(ma.value)
        ma.update(x)
    assert seen == out.tolist()
    assert ma.value == pytest.approx(0.5 * 1.25 + 0.5 * 3.0)
    assert torch.equal(ema(series, decay=1.0, init=7.0), torch.full((3,), 7.0))  # decay 1: never moves
    assert torch.equal(ema(series, decay=0.0)[1:], series[:-1])  # decay 0: the previous item


def test_ema_weights_are_the_unrolled_sum_of_the_docstring():
    # b_k = beta^k init + sum_{j=1..k} (1 - beta) beta^(j-1) x_{k-j}: the item one step back has weight 1 - beta.
    x = torch.tensor([0.3, -1.2, 2.0, 0.7, 5.0], dtype=torch.float64)
    beta, init = 0.7, 1.5
    want = torch.tensor([beta ** k * init + sum(float((1 - beta) * beta ** (j - 1) * x[k - j]) for j in range(1, k + 1))
                        for k in range(len(x))], dtype=torch.float64)
    torch.testing.assert_close(ema(x, beta, init), want)


def test_optimal_constant_baseline_by_hand_and_is_a_minimum():
    s2, R = torch.tensor([1.0, 3.0], dtype=torch.float64), torch.tensor([2.0, 4.0], dtype=torch.float64)
    b = optimal_constant_baseline(s2, R)
    assert float(b) == pytest.approx((1 * 2 + 3 * 4) / 4)
    var = lambda c: float((s2 * (R - c) ** 2).sum())  # noqa: E731  (the second moment ∝ Σ ‖score‖² (R − b)²)
    assert var(float(b)) < min(var(float(b) - 0.01), var(float(b) + 0.01))


def test_state_value_baseline():
    values = torch.tensor([[10.0, 20.0], [11.0, 21.0], [0.0, 0.0]])  # (H+1, S) with H = 2
    states = torch.tensor([[0, 1], [1, 1]])
    assert torch.equal(state_value_baseline(values, states), torch.tensor([[10.0, 21.0], [20.0, 21.0]]))
    assert torch.equal(state_value_baseline(values[0], states, time_dependent=False),
                       torch.tensor([[10.0, 20.0], [20.0, 20.0]]))


def test_baselines_on_device(dev):
    x = X.to(dev)
    assert batch_mean_baseline(x, leave_one_out=True).device.type == dev.type
    assert ema(x[:, 0]).device.type == dev.type
    torch.testing.assert_close(batch_mean_baseline(x, leave_one_out=True).cpu(), batch_mean_baseline(X, leave_one_out=True))
