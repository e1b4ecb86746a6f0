"""Plots shared by the notebooks and figures: learning curves over seeds, estimates against the truth."""
from __future__ import annotations

import warnings
from typing import Mapping, Sequence

import numpy as np


def new_figure(*args, **kwargs):
    """A matplotlib figure not managed by pyplot's global state (safe to build in a widget's redraw)."""
    from matplotlib.figure import Figure
    kwargs.setdefault("layout", "constrained")
    return Figure(*args, **kwargs)


def _axes(ax, **fig_kw):
    if ax is not None:
        return ax
    return new_figure(**({"figsize": (7, 4)} | fig_kw)).add_subplot()


def smoothed_curve(hist, x: str = "env_steps", window: int = 20, grid: np.ndarray | None = None):
    """A run's moving-average episode return (over ``window`` episodes) on ``grid`` (steps or seconds)."""
    r = np.asarray(hist.episode_returns, dtype=float)
    xs = np.asarray(hist.episode_end_steps if x == "env_steps" else hist.episode_end_times, dtype=float)
    if r.size == 0:
        return grid if grid is not None else xs, np.full_like(grid if grid is not None else xs, np.nan)
    csum = np.cumsum(np.insert(r, 0, 0.0))
    k = np.minimum(np.arange(1, r.size + 1), window)
    smooth = (csum[1:] - csum[np.arange(1, r.size + 1) - k]) / k
    if grid is None:
        return xs, smooth
    idx = np.searchsorted(xs, grid, side="right") - 1
    return grid, np.where(idx >= 0, smooth[np.clip(idx, 0, None)], np.nan)


def learning_curves(runs: Mapping[str, Sequence], ax=None, x: str = "env_steps", window: int = 20,
                    spread: str = "minmax", n_points: int = 200, title: str | None = None):
    """Mean over seeds of each run's moving-average episode return, with the spread shaded.

    ``runs`` maps a label to a list of :class:`pgcourse.train.History` (one per seed). ``x`` is
    ``"env_steps"`` or ``"wall_time"``; ``spread`` is ``"minmax"`` (over seeds) or ``"std"``.
    """
    if x not in ("env_steps", "wall_time"):
        raise ValueError(f"x must be 'env_steps' or 'wall_time', got {x!r}")
    if spread not in ("minmax", "std"):
        raise ValueError(f"spread must be 'minmax' or 'std', got {spread!r}")
    ax = _axes(ax)
    for label, hists in runs.items():
        if not hists:
            raise ValueError(f"runs[{label!r}] holds no History")
        ends = [h.env_steps[-1] if x == "env_steps" else h.wall_time[-1] for h in hists if h.env_steps]
        if not ends:
            raise ValueError(f"runs[{label!r}]: no History has recorded an update")
        end = max(ends)
        grid = np.linspace(0, end, n_points)
        ys = np.stack([smoothed_curve(h, x, window, grid)[1] for h in hists])
        with warnings.catch_warnings():  # grid points before any episode ended are NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(ys, 0)
            lo, hi = ((np.nanmin(ys, 0), np.nanmax(ys, 0)) if spread == "minmax"
                      else (mean - np.nanstd(ys, 0), mean + np.nanstd(ys, 0)))
        (line,) = ax.plot(grid, mean, label=f"{label} ({len(hists)} seeds)")
        ax.fill_between(grid, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xlabel("environment steps" if x == "env_steps" else "wall time (s)")
    ax.set_ylabel(f"episode return (mean of last {window})")
    if title:
        ax.set_title(title)
    ax.legend(loc="best")
    ax.grid(alpha=0.3)
    return ax


def estimates_vs_exact(mean: np.ndarray, se: np.ndarray, exact: np.ndarray, ax=None, labels=None,
                       title: str | None = None, n_se: float = 2.0):
    """Each coordinate's mean estimate ± ``n_se`` standard errors beside the exact value."""
    mean, se, exact = (np.asarray(a, dtype=float).ravel() for a in (mean, se, exact))
    ax = _axes(ax)
    i = np.arange(mean.size)
    ax.errorbar(i, mean, yerr=n_se * se, fmt="o", ms=4, capsize=2, label=f"mean estimate ± {n_se:g} SE")
    ax.scatter(i, exact, marker="_", s=200, color="k", zorder=3, label="exact gradient")
    ax.set_xlabel("coordinate of θ (state, action)")
    ax.set_ylabel("∂J/∂θ")
    if labels is not None:
        ax.set_xticks(i, labels, rotation=90, fontsize=7)
    if title:
        ax.set_title(title)
    ax.legend(loc="best")
    ax.grid(alpha=0.3)
    return ax
