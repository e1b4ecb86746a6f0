r"""Widgets of notebook 06 (GRPO).

``06.kl_estimators``: slide how far apart a policy q and a reference p are (and how many samples
each estimate averages) and see the distributions of the k1, k2, k3 estimates of KL(q‖p) against
the exact value, with their measured bias and standard deviation.

``06.group_advantages``: a group of G completions with k correct; the advantages GRPO gives them
(with or without the division by the group std).

``06.temperature``: the SFT model's distribution of the answer's first token at temperature τ, and the
exact probability that a sampled answer is right.
"""
from __future__ import annotations

import torch

from ..device import torch_threads
from .. import grpo as G
from ..grpo import group_advantages
from ..lessons import nb06 as lesson
from . import new_figure, register

DRAWS = 2000  # estimates behind each histogram


@register("06.kl_estimators", distance=("float", 1.0, 0.0, 3.0, 0.1), n=("int", 4, 1, 64, 1))
@torch_threads(1)
def kl_widget(distance: float = 1.0, n: int = 4):
    r"""Histograms of 2000 estimates of KL(q‖p) (each the mean over ``n`` samples x ~ q) by k1, k2, k3."""
    q, p = lesson.two_categoricals(distance)
    kl = lesson.exact_kl(q, p)
    draws = lesson.estimator_draws(q, p, n, DRAWS, seed=0)
    fig = new_figure(figsize=(9.5, 3.2))
    axes = fig.subplots(1, 2, gridspec_kw={"width_ratios": [0.6, 1.4]})
    xs = torch.arange(len(q))
    axes[0].bar((xs - 0.2).tolist(), q.tolist(), 0.4, label=r"policy $q=\pi_\theta$")
    axes[0].bar((xs + 0.2).tolist(), p.tolist(), 0.4, label=r"reference $p=\pi_\mathrm{ref}$")
    axes[0].set_xlabel("outcome x")
    axes[0].set_ylabel("probability")
    axes[0].set_title(f"KL(q‖p) = {kl:.4f}", fontsize=10)
    axes[0].legend(fontsize=7)
    ax = axes[1]
    allv = torch.cat(list(draws.values()))
    lo, hi = float(allv.min()), float(allv.max())
    if hi - lo < 1e-9:
        lo, hi = lo - 0.05, hi + 0.05
    edges = torch.linspace(lo, hi, 61)
    for name, v in draws.items():
        mean, std = float(v.mean()), float(v.std())
        counts = torch.histc(v, bins=60, min=lo, max=hi)
        ax.stairs(counts.tolist(), edges.tolist(), color=lesson.COLORS[name], lw=1.8,
                  label=f"{name}: bias {mean - kl:+.4f} ± {std / DRAWS ** 0.5:.4f}, std {std:.4f}")
    ax.axvline(kl, color="k", lw=2, label=f"exact KL = {kl:.4f}")
    ax.set_xlabel(f"estimate of KL (mean of {n} sample{'s' if n > 1 else ''} x ~ q)")
    ax.set_ylabel(f"count (of {DRAWS} estimates)")
    ax.legend(fontsize=8)
    return fig


@register("06.group_advantages", group_size=("int", 8, 2, 32, 1), correct=("int", 2, 0, 32, 1),
          scale=("choice", "mean and std", ["mean and std", "mean only"]))
def group_advantages_widget(group_size: int = 8, correct: int = 2, scale: str = "mean and std"):
    """The advantages of a 0/1-reward group with ``correct`` of ``group_size`` completions right."""
    correct = min(correct, group_size)
    r = torch.zeros(1, group_size, dtype=torch.float64)
    r[0, :correct] = 1.0
    a = group_advantages(r, scale=(scale == "mean and std"))[0]
    fig = new_figure(figsize=(7, 3.3))
    ax = fig.subplots()
    colors = ["tab:green" if x > 0.5 else "tab:red" for x in r[0].tolist()]
    ax.bar(range(1, group_size + 1), a.tolist(), color=colors)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xlabel("completion i of the group (green: correct, red: wrong)")
    ax.set_ylabel(r"advantage $\hat A_i$")
    ax.set_title(f"{correct} of {group_size} correct ({scale}): Σ|A| = {float(a.abs().sum()):.2f}", fontsize=10)
    return fig


@register("06.temperature", temperature=("float", 1.0, 0.1, 3.0, 0.1),
          prompt=("choice", "31415", ["31415", "2718", "907", "55"]))
@torch_threads(1)
def temperature_widget(temperature: float = 1.0, prompt: str = "31415"):
    r"""The SFT model's next-token distribution :math:`\pi_\tau(\cdot\mid x)` at the first answer position, at
    temperature τ, and the exact probability that a sampled answer to ``prompt`` is the correct one."""
    policy = _sft()
    task = lesson.lesson_task()
    x = task.encode([prompt])
    with torch.no_grad():
        probs = torch.softmax(policy(x)[0, -1] / temperature, -1)
        p_right = float(G.answer_probability(policy, task, x, temperature)[0])
    ent = float(-(probs * probs.clamp_min(1e-30).log()).sum())
    fig = new_figure(figsize=(8, 3.2))
    ax = fig.subplots()
    symbols = list(task.tokenizer.symbols)
    right = task.answers(x)[0, 0]
    ax.bar(range(len(symbols)), probs.tolist(), color=["tab:green" if i == right else "tab:blue" for i in range(len(symbols))])
    ax.set_xticks(range(len(symbols)), symbols)
    ax.set_ylim(0, 1)
    ax.set_xlabel(f"first token of the answer to {prompt}= (green: the right one)")
    ax.set_ylabel(r"$\pi_\tau(y_1 \mid x)$")
    ax.set_title(f"τ = {temperature:.1f}: entropy {ent:.2f} nats; P[a sampled answer is right] = {p_right:.3f}",
                 fontsize=10)
    return fig


_SFT = []


def _sft():
    if not _SFT:
        _SFT.append(lesson.sft_policy())
    return _SFT[0]
