"""Notebook 06's figures: ``python -m pgcourse figures`` writes each entry of :data:`FIGURES`."""
from __future__ import annotations

from typing import Sequence

from ...plots import new_figure
from .kl import kl_figure
from .runs import BETA, BetaRun, Run, beta_runs, main_run


def training_figure(run: Run | None = None):
    """The main run: accuracy (pass@1, pass@8, greedy) on the evaluation prompts; the clip fraction and the KL
    to the sampling policy in the later epochs; the KL to the reference and the entropy."""
    run = main_run() if run is None else run
    h, steps = run.hist, range(1, len(run.hist.reward) + 1)
    fig = new_figure(figsize=(13, 3.6))
    axes = fig.subplots(1, 3)
    ax = axes[0]
    ax.plot(h.eval_steps, h.eval_accuracy, marker=".", label="pass@1 (a sampled answer)")
    ax.plot(h.eval_steps, h.eval_pass_at_k, marker=".", label=f"pass@{run.config.eval_k}")
    ax.plot(h.eval_steps, h.eval_greedy_accuracy, marker=".", label="greedy answer")
    ax.set_xlabel("step")
    ax.set_ylabel("accuracy on 512 evaluation prompts")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8)
    ax = axes[1]
    ax.plot(steps, h.clip_fraction, lw=0.9, label="clip fraction (epoch 2)")
    ax.plot(steps, [10 * k for k in h.kl_old], lw=0.9, label="10 × KL(π_old ‖ π_θ) (epoch 2)")
    ax.set_xlabel("step")
    ax.set_ylabel("fraction of tokens / nats per token")
    ax.set_title("epoch 1: ρ = 1 exactly, nothing clipped", fontsize=10)
    ax.legend(fontsize=8)
    ax = axes[2]
    ax.plot(steps, h.kl_ref, lw=0.9, label="KL to the reference (k3, per token)")
    ax.plot(steps, h.entropy, lw=0.9, label="entropy of π_θ (per token)")
    ax.set_xlabel("step")
    ax.set_ylabel("nats per token")
    ax.legend(fontsize=8)
    return fig


def beta_figure(runs: Sequence[BetaRun] | None = None):
    """Per β: the KL to the reference along training (mean over seeds, each seed thin) and the final accuracy."""
    runs = beta_runs() if runs is None else runs
    betas = sorted({r.beta for r in runs})
    fig = new_figure(figsize=(11, 3.6))
    axes = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.6, 1]})
    colors = dict(zip(betas, ["tab:red", "tab:blue", "tab:green", "tab:purple"]))
    for beta in betas:
        mine = [r for r in runs if r.beta == beta]
        for r in mine:
            axes[0].plot(range(1, len(r.hist.kl_ref) + 1), r.hist.kl_ref, color=colors[beta], lw=0.5, alpha=0.4)
        mean = [sum(v) / len(mine) for v in zip(*(r.hist.kl_ref for r in mine))]
        axes[0].plot(range(1, len(mean) + 1), mean, color=colors[beta], lw=2, label=f"β = {beta:g}")
        axes[1].scatter([beta] * len(mine), [r.accuracy for r in mine], color=colors[beta], s=18)
    axes[0].set_xlabel(f"step ({BETA.prompts_per_step} prompts × {BETA.group_size} completions)")
    axes[0].set_ylabel("KL to the reference (k3, per token)")
    axes[0].legend(fontsize=8)
    axes[0].set_title(f"thin: each of {len({r.seed for r in runs})} seeds; thick: their mean", fontsize=10)
    axes[1].scatter([], [], color="0.5", s=18, label="one seed")
    axes[1].axhline(runs[0].hist.eval_accuracy[0], color="k", lw=0.8, ls="--", label="SFT (start)")
    axes[1].set_xlabel("β")
    axes[1].set_ylabel("pass@1 at the end")
    axes[1].legend(fontsize=8)
    return fig


FIGURES = {"06_kl_estimators.png": kl_figure, "06_grpo_training.png": training_figure,
           "06_kl_penalty.png": beta_figure}
