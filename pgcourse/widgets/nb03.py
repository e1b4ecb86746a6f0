r"""Widgets of notebook 03 (baselines).

``03.variance``: slide a constant baseline b (and the batch size B) and see where it sits on the
parabola :math:`\operatorname{tr}\operatorname{Cov}\hat g(b) = (a - 2bc + b^2 d)/B`, next to a live
measurement of the variance at that b from fresh episodes.
"""
from __future__ import annotations

import functools

from ..device import torch_threads
from ..lessons import nb03 as lesson
from ..variance import gradient_samples, summarize
from . import new_figure, register

LIVE_EPISODES = 4096  # episodes behind each live measurement (split into batches of B)


@functools.lru_cache(maxsize=1)
def _lesson():
    mdp, logits = lesson.lesson_mdp()
    return mdp, logits, mdp.exact_gradient(logits), lesson.per_episode(mdp, logits)


@register("03.variance", b=("float", 0.0, -1.0, 2.0, 0.05), batch_size=("int", 16, 1, 64, 1))
@torch_threads(1)   # small tensors: one thread avoids OpenMP barriers
def variance_widget(b: float = 0.0, batch_size: int = 16):
    r"""The parabola of the variance against a constant b, with b, E[R] and b* marked and the variance at b measured."""
    mdp, logits, exact, theory = _lesson()
    n_batches = max(2, LIVE_EPISODES // batch_size)
    row = summarize(gradient_samples(mdp, logits, lesson.full_return_minus(b), batch_size, n_batches, seed=7), exact)
    fig = new_figure(figsize=(7, 4.2), layout=None)      # fixed margins: no layout pass on every redraw
    fig.subplots_adjust(left=0.1, right=0.98, bottom=0.12, top=0.93)
    ax = fig.add_subplot()
    lesson.plot_parabola(ax, theory, batch_size, b_current=b, tex=False)   # plain text: no mathtext per redraw
    ax.errorbar([b], [row.variance], yerr=[2 * row.variance_se], fmt="o", color="k", capsize=3,
                label=f"measured at b: {row.variance:.4f}, bar ±2 SE = ±{2 * row.variance_se:.2g} ({n_batches} batches)")
    ratio = theory.variance(b) / theory.variance(theory.b_star)
    ax.text(0.02, 0.03, f"Var(b) / Var(b*) = {ratio:.2f}\n‖ḡ − ∇J‖ = {row.bias:.3f}, noise {row.bias_se:.3f}"
            f"\n(ratio {row.distance_in_noise:.2f}; ≈ 1 if unbiased)",
            transform=ax.transAxes, ha="left", va="bottom", fontsize=8,
            bbox=dict(boxstyle="round", fc="white", ec="0.7"))
    ax.legend(fontsize=8, loc="upper center")
    return fig
