"""Notebook 03's figures: the parabola of the variance against a constant b (the key figure,
``03_baselines.png``, written by ``python -m pgcourse figures``) and the batch mean's shrinkage."""
from __future__ import annotations

import torch

from .experiments import ConstantScan, PerEpisode, Shrink, constant_baseline_scan

__all__ = ["FIGURES", "plot_constant_scan", "plot_parabola", "plot_shrink", "shrink_figure", "u_shape_figure"]


def plot_parabola(ax, theory: PerEpisode, batch_size: int, lo: float = -1.0, hi: float = 2.0,
                  b_current: float | None = None, tex: bool = True) -> None:
    """The parabola v(b)/B with b = 0, E[R], b* (and optionally the learner's b) marked; labelled axes.

    ``tex=False`` writes plain-text labels (a widget redraws faster without mathtext)."""
    B = batch_size
    bs = torch.linspace(lo, hi, 201, dtype=torch.float64)
    ax.plot(bs, theory.variance(bs, B), color="C0", lw=2,
            label=(f"$(a - 2bc + b^2 d)/B$" if tex else "(a - 2bc + b² d)/B") + f" from {theory.n} episodes")
    marks = [(0.0, "C3", "$b = 0$" if tex else "b = 0"),
             (theory.mean_return, "C2", r"$b = \mathbb{E}[R]$" if tex else "b = E[R]"),
             (theory.b_star, "C1", r"$b^* = \mathbb{E}[\|s\|^2R]/\mathbb{E}[\|s\|^2]$" if tex else "b* = E[‖s‖²R]/E[‖s‖²]")]
    for b, color, label in marks:
        v = theory.variance(b, B)
        ax.plot([b], [v], "D", color=color, ms=8, zorder=5, label=f"{label} = {b:.3f}: {v:.4f}")
        ax.axvline(b, color=color, lw=0.8, ls=":")
    if b_current is not None:
        v = theory.variance(b_current, B)
        ax.plot([b_current], [v], "*", color="C4", ms=16, zorder=6,
                label=f"your {'$b$' if tex else 'b'} = {b_current:.2f}: {v:.4f}")
    ax.set_xlabel("constant baseline $b$" if tex else "constant baseline b")
    ax.set_ylabel(r"total variance $\mathrm{tr}\,\mathrm{Cov}(\hat g)$" if tex else "total variance tr Cov(ĝ)")
    ax.set_title(f"Variance of $\\nabla\\log p(\\tau)\\,(R-b)$, batch size {B}" if tex
                 else f"Variance of ∇log p(τ) (R − b), batch size {B}")


def plot_constant_scan(scan: ConstantScan, ax) -> None:
    """The U: the parabola, and the variance measured directly at each grid point (±2 SE)."""
    plot_parabola(ax, scan.theory, scan.batch_size, min(scan.grid), max(scan.grid))
    ax.errorbar(scan.grid, scan.variance, yerr=[2 * s for s in scan.variance_se], fmt="o", color="k", ms=4,
                capsize=2, label=f"measured: {scan.n_batches} batches per $b$ (±2 SE)")
    ax.legend(fontsize=8, loc="upper center")


def u_shape_figure(scan: ConstantScan | None = None):
    """The key figure of notebook 03."""
    from ...plots import new_figure
    scan = constant_baseline_scan() if scan is None else scan
    fig = new_figure(figsize=(7, 4.2))
    plot_constant_scan(scan, fig.add_subplot())
    return fig


def plot_shrink(sh: Shrink, ax) -> None:
    """Measured shrink factor against N (±2 SE), with the predicted 1 − 1/N and the unbiased 1."""
    Ns = torch.linspace(min(sh.sizes), max(sh.sizes), 100)
    ax.plot(Ns, 1 - 1 / Ns, color="C0", lw=1.5, label=r"prediction $1 - 1/N$")
    ax.axhline(1.0, color="C2", lw=1.5, label="unbiased: 1")
    for name, color, dx in (("batch mean", "C0", -0.05), ("leave-one-out", "C2", 0.05)):
        ax.errorbar([n + dx for n in sh.sizes], sh.factor[name], yerr=[2 * s for s in sh.factor_se[name]], fmt="o",
                    color=color, capsize=3, label=f"measured, {name} (±2 SE)")
    ax.set_xlabel("batch size $N$")
    ax.set_ylabel(r"$\langle \mathbb{E}[\hat g], \nabla J\rangle / \|\nabla J\|^2$")
    ax.set_title("Batch-mean baseline shrinks the gradient by $1 - 1/N$")
    ax.legend(fontsize=8)


def shrink_figure(sh: Shrink):
    from ...plots import new_figure
    fig = new_figure(figsize=(6.5, 3.8))
    plot_shrink(sh, fig.add_subplot())
    return fig


FIGURES = {"03_baselines.png": u_shape_figure}
