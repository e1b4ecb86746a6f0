"""pgcourse.plots: the smoothed curve by hand, learning curves over seeds, estimates against the truth."""
from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure

from pgcourse.plots import estimates_vs_exact, learning_curves, smoothed_curve
from pgcourse.train import History


def _hist(returns, end_steps, times=None) -> History:
    h = History(episode_returns=list(map(float, returns)), episode_end_steps=list(end_steps),
                episode_lengths=[1] * len(returns))
    h.episode_end_times = list(times) if times is not None else [s / 100 for s in end_steps]
    h.env_steps = [end_steps[-1]] if end_steps else [10]
    h.wall_time = [h.episode_end_times[-1]] if end_steps else [0.1]
    return h


def test_smoothed_curve_by_hand():
    h = _hist([1, 3, 5, 7], [10, 20, 30, 40])
    xs, ys = smoothed_curve(h, window=2)
    assert xs.tolist() == [10, 20, 30, 40]
    assert ys.tolist() == [1.0, 2.0, 4.0, 6.0]  # the first point averages what there is
    grid, ys = smoothed_curve(h, window=2, grid=np.array([0.0, 10.0, 25.0, 45.0]))
    assert np.isnan(ys[0]) and ys[1:].tolist() == [1.0, 2.0, 6.0]  # a step function of the last episode ended
    _, yt = smoothed_curve(h, x="wall_time", window=3, grid=np.array([0.35]))
    assert yt.tolist() == [3.0]


def test_smoothed_curve_without_episodes_is_nan():
    grid, ys = smoothed_curve(_hist([], []), grid=np.linspace(0, 1, 5))
    assert ys.shape == (5,) and np.isnan(ys).all()


def test_learning_curves_mean_and_spread():
    a, b = _hist([0, 10], [50, 100]), _hist([20, 30], [50, 100])
    ax = learning_curves({"two seeds": [a, b], "one": [a]}, window=1, n_points=5)
    assert isinstance(ax.figure, Figure)
    lines = ax.get_lines()
    assert [ln.get_label() for ln in lines] == ["two seeds (2 seeds)", "one (1 seeds)"]
    x, y = lines[0].get_data()
    assert x.tolist() == [0.0, 25.0, 50.0, 75.0, 100.0]
    assert np.isnan(y[0]) and y[2:].tolist() == [10.0, 10.0, 20.0]  # mean over seeds
    poly = ax.collections[0].get_paths()[0].vertices
    assert poly[:, 1].max() == 30.0 and poly[:, 1].min() == 0.0  # min-max over seeds shaded
    assert ax.get_xlabel() == "environment steps" and "return" in ax.get_ylabel()
    ax2 = learning_curves({"s": [a, b]}, x="wall_time", spread="std", window=1)
    assert "wall time" in ax2.get_xlabel()


@pytest.mark.parametrize("kwargs, match", [(dict(x="episodes"), "x"), (dict(spread="iqr"), "spread")])
def test_learning_curves_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        learning_curves({"a": [_hist([1], [1])]}, **kwargs)
    with pytest.raises(ValueError, match="runs"):
        learning_curves({"empty": []})
    with pytest.raises(ValueError, match="runs"):
        learning_curves({"no updates": [History()]})


def test_estimates_vs_exact():
    ax = estimates_vs_exact(np.array([1.0, 2.0]), np.array([0.1, 0.2]), np.array([1.05, 1.5]), labels=["a", "b"],
                            title="t")
    assert ax.get_title() == "t" and [t.get_text() for t in ax.get_xticklabels()] == ["a", "b"]
