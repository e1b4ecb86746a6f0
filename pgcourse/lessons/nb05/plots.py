"""Notebook 05's figures: the stale-sample bias, its order in the distance, trajectory-ratio variance, the clip.

``python -m pgcourse figures`` writes ``05_ppo_ratios.png``, ``05_bias_order.png`` and ``05_ppo_clip.png``.
"""
from __future__ import annotations

import torch

from ...ppo import clipped_objective
from .ratios import RatioVariance, ratio_variance
from .stale import COLORS, CORRECTIONS, LABELS, BiasOrder, StaleDrift, bias_order, stale_drift

__all__ = ["plot_stale_drift", "plot_bias_order", "plot_ratio_variance", "ratios_figure", "bias_order_figure",
           "plot_clip_objective", "clip_figure", "plot_update_stats", "FIGURES"]


def plot_stale_drift(d: StaleDrift, ax) -> None:
    """Along the reuse path: exact relative bias (lines), measured ‖ḡ − ∇J‖/‖∇J‖ (markers), and the no-bias level."""
    for c in CORRECTIONS:
        if c != "trajectory":
            ax.plot(d.steps, d.rel(c, "exact"), "-", color=COLORS[c], lw=2, label=f"{LABELS[c]}: exact bias")
        ax.plot(d.steps, d.rel(c), "o", color=COLORS[c], ms=4, label=f"{LABELS[c]}: measured distance")
    ax.plot(d.steps, d.rel("trajectory", "noise"), ":", color="0.4", lw=1.2,
            label="measured distance expected under no bias (noise)")
    top = ax.secondary_xaxis("top", functions=(lambda k: k, lambda k: k))
    top.set_xticks(d.steps[::2], [f"{d.kl[i]:.3f}" for i in range(0, len(d.steps), 2)], fontsize=7)
    top.set_xlabel(r"KL($\pi_\mathrm{old}\,\|\,\pi_k$) per state", fontsize=8)
    ax.set_xlabel("gradient steps $k$ on the same batch")
    ax.set_ylabel(r"$\|\mathbb{E}[\hat g] - \nabla J(\theta_k)\| \,/\, \|\nabla J(\theta_k)\|$")
    ax.set_title(f"Reused samples: bias of the estimate ({d.n_batches} batches of {d.batch_size})", fontsize=10)
    ax.legend(fontsize=7)


def plot_bias_order(o: BiasOrder, ax) -> None:
    """Log-log: the exact gradient biases (slope 1) and the surrogate's value error (slope 2) against the distance."""
    s = torch.tensor(o.distance, dtype=torch.float64)
    ax.loglog(o.distance, o.grad_bias["none"], "o-", color=COLORS["none"], label="stale estimate: gradient bias")
    ax.loglog(o.distance, o.grad_bias["per_step"], "o-", color=COLORS["per_step"], label="per-step ratio: gradient bias")
    ax.loglog(o.distance, o.value_error, "s-", color="C4", label=r"surrogate: $|J - J_\mathrm{old} - (L - L_\mathrm{old})|$")
    for order, y0, ls in ((1, o.grad_bias["per_step"][0], "--"), (2, o.value_error[0], ":")):
        ax.loglog(o.distance, (y0 * (s / s[0]) ** order).tolist(), ls, color="0.5", lw=1, label=f"slope {order}")
    ax.set_xlabel(r"distance $\|\theta - \theta_\mathrm{old}\|$ (along $\nabla J(\theta_\mathrm{old})$)")
    ax.set_ylabel("exact error")
    ax.set_title("Gradient bias is first order, the surrogate's value error second", fontsize=10)
    ax.legend(fontsize=7)


def plot_ratio_variance(rv: RatioVariance, ax) -> None:
    """Var ρ(τ) against the per-step KL: measured (markers, ±2 exact SE) and exact (lines), one colour per horizon."""
    for j, H in enumerate(rv.horizons):
        ax.plot(rv.kl[1:], rv.exact_var[H][1:], "-", color=f"C{j}", lw=1.5, label=f"$H={H}$: exact $(1+\\chi^2)^H - 1$")
        lo = [max(v - 2 * s, v * 1e-2) for v, s in zip(rv.var[H][1:], rv.var_se[H][1:])]
        hi = [v + 2 * s for v, s in zip(rv.var[H][1:], rv.var_se[H][1:])]
        ax.errorbar(rv.kl[1:], rv.var[H][1:], yerr=[[v - a for v, a in zip(rv.var[H][1:], lo)],
                                                     [b - v for v, b in zip(rv.var[H][1:], hi)]],
                    fmt="o", color=f"C{j}", ms=4, capsize=2, label=f"$H={H}$: measured, {rv.n_episodes} episodes (±2 SE)")
    ax.plot(rv.kl[1:], rv.chi2[1:], "k--", lw=1, label=r"one step: Var $\rho_t = \chi^2$")
    ax.set_yscale("log")
    ax.set_xlabel(r"KL($\pi_\mathrm{old}\,\|\,\pi_\mathrm{new}$) per step")
    ax.set_ylabel(r"Var$_{\pi_\mathrm{old}}[\rho(\tau)]$")
    ax.set_title("Trajectory importance ratios: mean 1, variance explodes", fontsize=10)
    ax.legend(fontsize=7, ncol=1, loc="upper left")


def ratios_figure(drift: StaleDrift | None = None, rv: RatioVariance | None = None):
    """Key figure: the bias of reused samples (left) and the variance of trajectory ratios (right)."""
    from ...plots import new_figure
    drift = stale_drift() if drift is None else drift
    rv = ratio_variance() if rv is None else rv
    fig = new_figure(figsize=(12, 4.4))
    a1, a2 = fig.subplots(1, 2)
    plot_stale_drift(drift, a1)
    plot_ratio_variance(rv, a2)
    return fig


def bias_order_figure(order: BiasOrder | None = None):
    """The order of the per-step ratio's bias in the distance (exact, no sampling)."""
    from ...plots import new_figure
    fig = new_figure(figsize=(6.5, 4.2))
    plot_bias_order(bias_order() if order is None else order, fig.subplots())
    return fig


# ---- the clipped surrogate -----------------------------------------------------------------------

def plot_clip_objective(axes, clip_eps: float = 0.2, advantage: float = 1.0, lo: float = 0.0, hi: float = 2.0,
                        tex: bool = True) -> None:
    """Two panels (A > 0, A < 0): the clipped objective and the unclipped ρA against ρ; shaded where its gradient is 0.

    One legend, in the first panel (the second has the same entries in its own colour). ``tex=False``: plain-text
    labels (a widget redraws faster without mathtext).
    """
    rho = torch.linspace(max(lo, 1e-3), hi, 121, dtype=torch.float64)
    if tex:
        unclipped, clipped_label = r"unclipped $\rho A$", r"$\min(\rho A,\ \mathrm{clip}(\rho, 1-\epsilon, 1+\epsilon)A)$"
        xlabel = r"ratio $\rho = \pi_\theta(a|s) / \pi_{\theta_\mathrm{old}}(a|s)$"
    else:
        unclipped, clipped_label = "unclipped ρA", "min(ρA, clip(ρ, 1-ε, 1+ε) A)"
        xlabel = "ratio ρ = π(a|s) / π_old(a|s)"
    for ax, A in zip(axes, (abs(advantage), -abs(advantage))):
        clipped = clipped_objective(rho, torch.tensor(A, dtype=rho.dtype), clip_eps)
        ax.plot(rho, rho * A, color="0.55", ls="--", lw=1.5, label=unclipped)
        ax.plot(rho, clipped, color="C0" if A > 0 else "C3", lw=2.5, label=clipped_label)
        flat = (rho > 1 + clip_eps) if A > 0 else (rho < 1 - clip_eps)
        if bool(flat.any()):
            x = rho[flat]
            ax.axvspan(float(x.min()), float(x.max()), color="0.9", zorder=0, label="clipped: gradient 0")
        for x in (1 - clip_eps, 1 + clip_eps):
            ax.axvline(x, color="k", lw=0.8, ls=":")
        ax.axvline(1.0, color="k", lw=0.6)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("objective (to maximize)")
        ax.set_xlim(lo, hi)
        ax.set_xticks([x / 2 for x in range(int(lo * 2), int(hi * 2) + 1)])
        ax.set_title(f"$A = {A:+g}$, $\\epsilon = {clip_eps:g}$" if tex else f"A = {A:+g}, ε = {clip_eps:g}", fontsize=10)
        if ax is axes[0]:
            ax.legend(fontsize=7, loc="upper left")


def clip_figure(clip_eps: float = 0.2):
    """Key figure: PPO's clipped objective against the ratio, for A > 0 and A < 0."""
    from ...plots import new_figure
    fig = new_figure(figsize=(9, 3.6))
    plot_clip_objective(fig.subplots(1, 2), clip_eps)
    return fig


# ---- CartPole summaries -------------------------------------------------------------------------------

def plot_update_stats(hists: dict, key: str, ax, ylabel: str, log: bool = False) -> None:
    """One training statistic per update (``History.extra[key]``) against env steps: one colour per method, one line per seed.

    ``hists`` maps a label to a History or a list of Histories (seeds).
    """
    for i, (label, hs) in enumerate(hists.items()):
        for j, h in enumerate(hs if isinstance(hs, (list, tuple)) else [hs]):
            ax.plot(h.env_steps, h.extra[key], color=f"C{i}", lw=1.0, alpha=0.8, label=label if j == 0 else None)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("env steps")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)


FIGURES = {"05_ppo_clip.png": clip_figure, "05_ppo_ratios.png": ratios_figure, "05_bias_order.png": bias_order_figure}
