r"""Notebook 02's widget: the full return against the reward-to-go, as the horizon and γ change.

``02.variance`` samples ``N_BATCHES`` batch estimates :math:`\hat g` with each weight (the same
episodes, sampled once; uniform policy; fewer batches, at least 64, when batch size × horizon is
large, so that every slider position redraws fast) and draws the histogram of one coordinate of
:math:`\hat g` next to the total variance :math:`\operatorname{tr}\operatorname{Var}[\hat g]` of both, with standard errors and their ratio.
"""
from __future__ import annotations

from functools import lru_cache

import torch

from ..device import torch_threads
from ..lessons.nb02 import coin_flips_prediction
from ..mdp import TabularMDP, coin_flips, early_rewards, frozen_lake
from ..variance import gradient_samples_shared, summarize
from . import new_figure, register

N_BATCHES = 400
MAX_STEPS = 1 << 17      # episodes × horizon sampled per redraw, at most (but at least 64 batches)
MDPS = {"coin_flips": coin_flips, "early_rewards": early_rewards, "frozen_lake": frozen_lake}


@lru_cache(maxsize=64)
def _mdp(name: str, horizon: int, gamma: float) -> TabularMDP:
    if name not in MDPS:
        raise ValueError(f"mdp must be one of {sorted(MDPS)}, got {name!r}")
    return MDPS[name](horizon=horizon, gamma=gamma)


@register("02.variance", horizon=("int", 10, 1, 40, 1), gamma=("float", 1.0, 0.0, 1.0, 0.01),
          mdp=("choice", "coin_flips", list(MDPS)), batch_size=("int", 16, 1, 64, 1))
def variance_widget(horizon: int = 10, gamma: float = 1.0, mdp: str = "coin_flips", batch_size: int = 16,
                    n_batches: int = N_BATCHES, seed: int = 0):
    """Histogram of one coordinate of ĝ and the total variance of both estimators (± 1 SE), ratio in the title."""
    m = _mdp(mdp, int(horizon), float(gamma))
    logits = torch.zeros(m.n_states, m.n_actions, dtype=torch.float64)
    with torch_threads(1):   # small tensors: a second thread only adds OpenMP barriers (4 s against 0.15 s, busy CPU)
        exact = m.exact_gradient(logits)
        n_batches = int(min(n_batches, max(64, MAX_STEPS // (int(batch_size) * m.horizon))))
        psis = ("full_return", "reward_to_go")
        samples = dict(zip(psis, gradient_samples_shared(m, logits, psis, batch_size, n_batches, seed)))
        rows = {p: summarize(s, exact, p) for p, s in samples.items()}
    v_full, v_rtg = rows["full_return"].variance, rows["reward_to_go"].variance
    if v_rtg > 0:
        verdict = f"variance ratio = {v_full / v_rtg:.3g}"
    elif v_full > 0:
        verdict = "variance ratio: infinite (the reward-to-go estimate is exactly 0)"
    else:   # e.g. FrozenLake with H ≤ 5 (the goal is 6 steps away) or γ = 0 (the goal pays nothing at t = 0)
        verdict = "no variance: every estimate is exactly 0 (no reward reaches any weight)"

    # A fixed layout: constrained layout's text measurements would double the redraw time.
    fig = new_figure(figsize=(9.5, 3.6), layout=None)
    fig.subplots_adjust(left=0.07, right=0.99, bottom=0.14, top=0.92, wspace=0.22)
    ax1, ax2 = fig.subplots(1, 2, width_ratios=(1.6, 1))
    k = int(exact.abs().argmax())
    s, a = divmod(k, m.n_actions)
    x = {p: v.reshape(n_batches, -1)[:, k].numpy() for p, v in samples.items()}
    lo = min(float(v.min()) for v in x.values())
    hi = max(float(v.max()) for v in x.values())
    bins = torch.linspace(lo, hi + 1e-9, 41).numpy()
    labels = {"full_return": "full return R(τ)", "reward_to_go": "reward-to-go γᵗ Gₜ"}
    colors = {"full_return": "C3", "reward_to_go": "C0"}
    for p in samples:
        ax1.hist(x[p], bins=bins, alpha=0.5, color=colors[p], label=labels[p], histtype="stepfilled")
    ax1.axvline(float(exact.reshape(-1)[k]), color="k", lw=1.5, label="exact ∇J")
    ax1.set(xlabel=f"ĝ, coordinate θ[s={s}, a={a}]", ylabel=f"count (of {n_batches} batches)",
            title=f"{m.name}: H = {m.horizon}, γ = {m.gamma:g}, batch of {batch_size}")
    ax1.legend(fontsize=8)

    names = list(rows)
    var = [rows[p].variance for p in names]
    se = [rows[p].variance_se for p in names]
    ax2.bar([0, 1], var, yerr=se, capsize=4, color=[colors[p] for p in names], alpha=0.7)
    if mdp == "coin_flips":
        pred = [v / batch_size for v in coin_flips_prediction(m.horizon, m.gamma)]
        ax2.hlines(pred, [-0.4, 0.6], [0.4, 1.4], colors="k", linestyles="--", label="prediction (section 5)")
        ax2.legend(fontsize=8, loc="upper right")
    ax2.set_xticks([0, 1], ["full return", "reward-to-go"])
    ax2.set(ylabel="tr Var[ĝ] (± 1 SE)", title=verdict)
    return fig
