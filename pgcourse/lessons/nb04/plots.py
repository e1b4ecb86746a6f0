"""Notebook 04's figures: the advantage map, the six Ψₜ forms, the critic's error, bias and GAE(λ)."""
from __future__ import annotations

import math

import numpy as np
import torch

from ...mdp import TabularMDP
from ...plots import new_figure
from ...variance import VarianceTable
from .experiments import (ACTIONS, FORM_LABELS, BiasScan, CriticScan, Sweep, holes_and_goal, lambda_sweep,
                          learned_critic_forms, lesson_mdp, six_forms)

# ---- figures --------------------------------------------------------------------------------------------

_ARROWS = {0: (-1, 0), 1: (0, 1), 2: (1, 0), 3: (0, -1)}   # left, down, right, up in image coordinates


def advantage_map(mdp: TabularMDP, logits: torch.Tensor, t: int = 0, fig=None):
    r"""The lake: each cell coloured by :math:`V_t(s)`, an arrow per action, green where
    :math:`A_t(s,a) > 0`, red where it is negative.

    Arrow length grows with :math:`|A_t(s,a)|` (from a minimum, so that every action shows); the
    number in a cell is :math:`V_t(s)`.
    """
    from matplotlib.colors import TwoSlopeNorm
    from matplotlib.patches import Rectangle
    V, Q = mdp.values(logits)
    A = (Q - V[:-1, :, None])[t]
    v = V[t]
    side = int(round(math.sqrt(mdp.n_states)))
    holes, goal = holes_and_goal(mdp)
    fig = fig or new_figure(figsize=(5.6, 5.0))
    ax = fig.add_subplot()
    grid = v.reshape(side, side).numpy().copy()
    grid[holes.reshape(side, side).numpy() | goal.reshape(side, side).numpy()] = np.nan
    norm = TwoSlopeNorm(vcenter=0.0, vmin=min(-1e-3, float(np.nanmin(grid))), vmax=max(1e-3, float(np.nanmax(grid))))
    im = ax.imshow(grid, cmap="coolwarm_r", norm=norm)
    scale = 0.30 / float(A[~mdp.terminal].abs().max())
    arrows = []                                                   # x, y, dx, dy, positive
    for s in range(mdp.n_states):
        r, c = divmod(s, side)
        if holes[s] or goal[s]:
            ax.add_patch(Rectangle((c - 0.5, r - 0.5), 1, 1, color="0.85" if holes[s] else "gold", zorder=0))
            ax.text(c, r, "hole" if holes[s] else "GOAL", ha="center", va="center", fontsize=9, weight="bold")
            continue
        ax.text(c, r + 0.38, f"{float(v[s]):.2f}", ha="center", va="center", fontsize=7)
        for a, (dx, dy) in _ARROWS.items():
            length = 0.12 + float(A[s, a].abs()) * scale
            arrows.append((c, r, dx * length, dy * length, bool(A[s, a] > 0)))
    xs, ys, dxs, dys, pos = (np.array(col) for col in zip(*arrows))
    for sel, color in ((pos, "tab:green"), (~pos, "tab:red")):
        ax.quiver(xs[sel], ys[sel], dxs[sel], dys[sel], color=color, angles="xy", scale_units="xy", scale=1,
                  width=0.012, headwidth=3.5, headlength=3.5, headaxislength=3.2)
    ax.set_xticks(range(side))
    ax.set_yticks(range(side))
    ax.set_xlabel("column")
    ax.set_ylabel("row")
    ax.set_title(f"$V_{{{t}}}(s)$ (colour, number) and the sign of $A_{{{t}}}(s,a)$\n"
                 "(green arrow: better than the policy's average, red: worse)", fontsize=10)
    fig.colorbar(im, ax=ax, shrink=0.8, label=f"$V_{{{t}}}(s)$")
    return fig


def six_forms_figure(table: VarianceTable, critic: VarianceTable | None = None, fig=None):
    """Bar chart of the total variance of each Ψ (± 2 SE), log scale; on each bar ‖ḡ − ∇J‖ / noise (≈ 1 with no bias)."""
    fig = fig or new_figure(figsize=(8.0, 4.2))
    ax = fig.add_subplot()
    rows = table.rows
    x = np.arange(len(rows))
    width = 0.38 if critic is not None else 0.6
    var = np.array([r.variance for r in rows])
    se = np.array([r.variance_se for r in rows])
    bars = ax.bar(x - (width / 2 if critic else 0), var, width, yerr=2 * se, capsize=3, color="tab:blue",
                  label="exact V, Q: variance ± 2 SE")
    for b, r in zip(bars, rows):
        ax.annotate(f"{r.distance_in_noise:.1f}", (b.get_x() + b.get_width() / 2, b.get_height()),
                    xytext=(0, 9), textcoords="offset points", ha="center", fontsize=8)
    if critic is not None:
        pos = {r.psi: i for i, r in enumerate(rows)}
        for r in critic.rows:
            i = pos[r.psi]
            b = ax.bar(i + width / 2, r.variance, width, yerr=2 * r.variance_se, capsize=3, color="tab:orange",
                       label="learned critic" if r is critic.rows[0] else None)[0]
            ax.annotate(f"{r.distance_in_noise:.1f}", (b.get_x() + b.get_width() / 2, b.get_height()),
                        xytext=(0, 9), textcoords="offset points", ha="center", fontsize=8,
                        color="tab:red" if r.distance_in_noise > 4 else "k")
    ax.set_yscale("log")
    ax.set_xticks(x, [FORM_LABELS.get(r.psi, r.psi) for r in rows])
    ax.set_xlabel(r"weight $\Psi_t$ (each times $\gamma^t$)")
    ax.set_ylabel(r"total variance tr Cov$(\hat g)$, batch of 16")
    worst = max(r.distance_in_noise for r in rows)
    ax.set_title("Six forms of the policy gradient on the lake (on a bar: ‖ḡ − ∇J‖ / noise, ≈ 1 with no bias)\n"
                 f"exact V, Q: every ratio ≤ {worst:.1f}; variances {var.min():.2g} to {var.max():.2g}",
                 fontsize=10)
    ax.set_ylim(top=ax.get_ylim()[1] * 3)
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    return fig


def critic_error_figure(scan: CriticScan, fig=None):
    """RMS error of the learned critic against the number of episodes, with the time-blind floor."""
    fig = fig or new_figure(figsize=(6.4, 3.6))
    ax = fig.add_subplot()
    n = np.array(scan.episodes)
    mean = scan.errors.mean(1)
    ax.fill_between(n, scan.errors.min(1), scan.errors.max(1), alpha=0.2,
                    label=f"min-max over {scan.errors.shape[1]} seeds")
    ax.plot(n, mean, "o-", label="mean RMS error")
    ax.axhline(scan.floor, color="k", ls="--", label=f"floor: best time-blind critic, {scan.floor:.3f}")
    ax.set_xscale("log")
    ax.set_xlabel("episodes the critic was fitted on")
    ax.set_ylabel(r"RMS error of $\hat V$ against $V_t(s)$")
    ax.set_title("A critic fitted on returns: noise falls with data, a time-blind table keeps a floor", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def bias_figure(scan: BiasScan, fig=None):
    """Bias norm of ĝ against the critic's RMS error, one line per λ, and the noise level of that norm."""
    fig = fig or new_figure(figsize=(6.8, 4.0))
    ax = fig.add_subplot()
    x = np.array(scan.rmse)
    for label in scan.bias:
        ax.plot(x, scan.bias[label], "o-", label=label)
    last = list(scan.bias)[-1]
    ax.plot(x, scan.bias_se[last], "k:", lw=1.2,
            label=r"noise level: $\sqrt{\mathrm{tr}\,\Sigma/n}$, what an unbiased $\hat g$ shows")
    ax.set_xlabel(r"RMS error of the critic $\hat V_\varepsilon = V + \varepsilon(\hat V - V)$")
    ax.set_ylabel(r"measured $\|\,\bar g - \nabla J\,\|$ (the bias, plus noise)")
    ax.set_title("Where bias comes from: the critic's error, unless λ = 1", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def lambda_figure(sweep: Sweep, lam: float, batch_size: float, fig=None, n_step: Sweep | None = None):
    """Bias², variance and their sum against λ at ``batch_size``; the slider's λ marked, the minimum starred."""
    fig = fig or new_figure(figsize=(7.4, 4.0))
    ax = fig.add_subplot()
    lams = np.array(sweep.xs)
    b2, var, tot = sweep.at(batch_size)
    ax.plot(lams, b2, "o-", ms=3, color="tab:red", label="bias²")
    ax.plot(lams, var, "o-", ms=3, color="tab:blue", label="variance")
    ax.plot(lams, tot, "o-", ms=3, color="k", label="bias² + variance (MSE)")
    k = int(np.argmin(np.abs(lams - lam)))
    best, best_val = sweep.best(batch_size)
    ax.axvline(lams[k], color="0.5", lw=1, ls="--")
    for y, c in ((b2[k], "tab:red"), (var[k], "tab:blue"), (tot[k], "k")):
        ax.plot([lams[k]], [y], "o", ms=8, mfc="none", mec=c, mew=2)
    ax.plot([best], [best_val], "*", ms=14, color="gold", mec="k", label=f"minimum: λ = {best:.2f}")
    ax.set_xlabel("λ")
    ax.set_ylabel(f"squared error of ĝ (batch of {batch_size:g})")
    ax.set_ylim(bottom=min(0.0, float(b2.min())) * 1.1, top=float(tot.max()) * 1.08)
    ax.set_title(f"{sweep.label}, batch of {batch_size:g} episodes\n"
                 f"λ = {lams[k]:.2f}: bias² = {b2[k]:.3g}, variance = {var[k]:.3g}, sum = {tot[k]:.3g}", fontsize=10)
    ax.legend(fontsize=8, loc="upper center")
    ax.grid(alpha=0.3)
    return fig


def make_advantage_map():
    mdp, logits = lesson_mdp()
    return advantage_map(mdp, logits)


def make_six_forms():
    """The key figure: the six forms with the exact V and Q, and the critic-based ones with the learned critic."""
    return six_forms_figure(six_forms(), learned_critic_forms())


def make_lambda(lam: float = 0.95, batch_size: int = 64):
    """Bias², variance and their sum against λ, learned critic, batch of 64; the common default λ = 0.95 marked."""
    return lambda_figure(lambda_sweep("learned"), lam, batch_size)


FIGURES = {
    "04_six_psi_forms.png": make_six_forms,
    "04_advantage_map.png": make_advantage_map,
    "04_gae_lambda.png": make_lambda,
}
