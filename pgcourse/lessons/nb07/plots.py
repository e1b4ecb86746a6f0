"""Notebook 07's figures built from its runs (each takes the runs the notebook made, or makes its own)."""
from __future__ import annotations

from typing import Sequence

from ...plots import new_figure
from . import format_bonus as fb
from . import hacking, length, sampling
from .runs import Run, start_policy, train_runs


def _mean_curve(runs: Sequence[Run], field: str) -> list[float]:
    series = [getattr(r.history, field) for r in runs]
    out = []
    for vals in zip(*series):
        xs = [v for v in vals if v == v]
        out.append(sum(xs) / len(xs) if xs else float("nan"))
    return out


def plot_curves(ax, runs: dict[str, list[Run]], field: str, ylabel: str, styles: dict | None = None) -> None:
    """The mean over seeds of a per-step history field, one line per config."""
    for name, rs in runs.items():
        ys = _mean_curve(rs, field)
        ax.plot(range(1, len(ys) + 1), ys, label=name, **(styles or {}).get(name, {}))
    ax.set_xlabel("GRPO step")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7)


def plot_drift(ax, rows: Sequence[dict], kinds: Sequence[str] = ("wrong", "correct")) -> None:
    """Bars with ±1 SE: the derivative of the expected length along each update direction."""
    w = 0.8 / len(kinds)
    for j, kind in enumerate(kinds):
        xs = [i + (j - (len(kinds) - 1) / 2) * w for i in range(len(rows))]
        ax.bar(xs, [r[kind][0] for r in rows], w, yerr=[r[kind][1] for r in rows], capsize=3,
               label=f"d E[|y| | {kind}]" if kind != "all" else "d E[|y|]")
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xticks(range(len(rows)), [r["direction"] for r in rows], rotation=25, ha="right", fontsize=7)
    ax.set_ylabel("d length / d step (unit step)")
    ax.legend(fontsize=7)


def length_figure(runs: dict | None = None, drift: Sequence[dict] | None = None):
    """``07_length_bias.png``: wrong answers' length over training per loss type, and the paired per-update drift."""
    runs = length.length_runs() if runs is None else runs
    drift = length.drift_rows(start_policy())[0] if drift is None else drift
    fig = new_figure(figsize=(11, 3.8))
    a, b = fig.subplots(1, 2)
    plot_curves(a, {length.config_name(*c): rs for c, rs in runs.items()}, "length_wrong",
                "mean length of wrong answers (tokens)")
    a.set_title("over training (mean of seeds)", fontsize=10)
    plot_drift(b, drift)
    b.set_title("per update, paired on the same samples", fontsize=10)
    return fig


def bonus_figure(runs: dict | None = None):
    """``07_format_bonus.png``: with a +1 format bonus, the mean sampled length and the verifier's accuracy."""
    runs = fb.bonus_runs() if runs is None else runs
    fig = new_figure(figsize=(11, 3.6))
    a, b = fig.subplots(1, 2)
    plot_curves(a, runs, "length", "mean sampled length (tokens, EOS included)")
    a.axhline(1, color="k", ls=":", lw=0.8)
    a.set_title("the empty answer '.' is 1 token", fontsize=10)
    plot_curves(b, runs, "accuracy", "fraction of sampled answers right (verifier)")
    return fig


def hacking_figure(runs: dict | None = None):
    """``07_reward_hacking.png``: the training reward and the real verifier's accuracy, with and without the loophole."""
    runs = {"loophole": hacking.hacking_runs(), "verifier": train_runs("verifier")} if runs is None else runs
    fig = new_figure(figsize=(7, 3.8))
    ax = fig.subplots()
    colors = {"loophole": "tab:red", "verifier": "tab:blue"}
    for name, rs in runs.items():
        c = colors.get(name, None)
        ys = _mean_curve(rs, "reward")
        ax.plot(range(1, len(ys) + 1), ys, color=c, lw=2, label=f"{name}: training reward")
        ys = _mean_curve(rs, "accuracy")
        ax.plot(range(1, len(ys) + 1), ys, color=c, lw=2, ls="--", label=f"{name}: really right (verifier)")
    ax.set_xlabel("GRPO step")
    ax.set_ylabel("fraction of sampled answers")
    ax.legend(fontsize=7)
    return fig


def zero_variance_figure(runs: dict | None = None):
    """``07_zero_variance.png``: the fraction of zero-variance groups and the samples drawn per step."""
    runs = sampling.dynamic_runs() if runs is None else runs
    fig = new_figure(figsize=(11, 3.6))
    a, b = fig.subplots(1, 2)
    plot_curves(a, runs, "zero_variance", "groups with all-equal rewards (first draw)")
    plot_curves(b, runs, "samples", "completions drawn per step")
    return fig
