r"""Notebook 06 (GRPO): the measurements behind its claims, and its figures.

Every function here is seeded and deterministic on the CPU. The notebook calls them, prints their
numbers and shows their figures; ``python -m pgcourse figures`` writes ``06_kl_estimators.png``
(bias and spread of the k1, k2, k3 estimators of a KL), ``06_grpo_vs_reinforce.png`` (GRPO against
REINFORCE without a baseline and with a learned value baseline) and ``06_loss_types.png`` (what the
three loss normalizations do to long and short answers).

The lesson: a :class:`pgcourse.tinylm.TinyLM` sorts 1–5 digits (:class:`pgcourse.digitsort.DigitSort`);
it is first trained by SFT on 2,000 demonstrations for 100 steps (partly right), then by GRPO.
"""
from __future__ import annotations

import copy
import functools
import math
from dataclasses import dataclass
from typing import Sequence

import torch

from ..device import torch_threads
from ..digitsort import DigitSort
from ..grpo import LOSS_TYPES, GRPOConfig, GRPOHistory, group_advantages, grpo_loss, kl_estimators, train
from ..tinylm import TinyLM, sample, supervised_finetune

SFT_STEPS = 100
DEMOS = 2000
ESTIMATORS = ("k1", "k2", "k3")
#: the budget of the side-by-side runs (smaller than the main run: 150 steps of 32 prompts × 8)
COMPARE = GRPOConfig(steps=150, prompts_per_step=32, group_size=8, eval_every=10)
METHODS = {"group": "GRPO (group-normalized)", "none": "REINFORCE, no baseline",
           "value": "REINFORCE, learned V(x) baseline"}
FORMAT_BONUS = 1.0


# ---- the lesson's task and models -------------------------------------------------------------

def lesson_task() -> DigitSort:
    """Sort 1 to 5 digits."""
    return DigitSort(min_len=1, max_len=5)


def eval_prompts(task: DigitSort | None = None) -> torch.Tensor:
    """The 512 fixed evaluation prompts (seed 2)."""
    return (task or lesson_task()).sample_prompts(512, seed=2)


def demonstrations(task: DigitSort | None = None) -> torch.Tensor:
    """The 2,000 SFT prompts (seed 1); their answers are ``task.answers(prompts)``."""
    return (task or lesson_task()).sample_prompts(DEMOS, seed=1)


@functools.lru_cache(maxsize=4)
def _sft_state(steps: int, seed: int) -> dict:
    task = lesson_task()
    torch.manual_seed(seed)
    policy = TinyLM(task.vocab_size)
    demos = demonstrations(task)
    supervised_finetune(policy, demos, task.answers(demos), task.eos, steps=steps, seed=3)
    return copy.deepcopy(policy.state_dict())


def sft_policy(steps: int = SFT_STEPS, seed: int = 0) -> TinyLM:
    """A fresh copy of the SFT model (trained once per process, then cached): what the notebook trains."""
    policy = TinyLM(lesson_task().vocab_size)
    policy.load_state_dict(_sft_state(steps, seed))
    return policy


def format_reward(task: DigitSort):
    """The verifier plus a format bonus of +1 for every completion that stops (emits EOS)."""
    def reward(prompts: torch.Tensor, completions: torch.Tensor) -> torch.Tensor:
        return task.reward(prompts, completions) + FORMAT_BONUS * task.stops(completions)
    return reward


# ---- group advantages --------------------------------------------------------------------------

def advantage_table(group_size: int = 8, eps: float = 1e-4) -> list[tuple[int, float, float, float]]:
    """For a 0/1-reward group of ``group_size`` with k correct (k = 0..G): (k, A of a correct one, A of a
    wrong one, Σ|A| over the group), from :func:`pgcourse.grpo.group_advantages`."""
    rows = []
    for k in range(group_size + 1):
        r = torch.zeros(1, group_size, dtype=torch.float64)
        r[0, :k] = 1.0
        a = group_advantages(r, eps=eps)[0]
        rows.append((k, float(a[0]) if k > 0 else math.nan, float(a[-1]) if k < group_size else math.nan,
                     float(a.abs().sum())))
    return rows


# ---- KL estimators -----------------------------------------------------------------------------

def two_categoricals(distance: float, k: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    r"""A policy :math:`q` and a reference :math:`p` over ``k`` outcomes; ``distance`` scales their log-odds gap
    (0: the same distribution). Float64."""
    base = torch.linspace(1.0, -1.0, k, dtype=torch.float64)
    direction = torch.tensor([(-1.0) ** j * (1 + j % 3) for j in range(k)], dtype=torch.float64)
    direction = direction / direction.norm()
    q = torch.softmax(base, 0)
    p = torch.softmax(base + distance * direction, 0)
    return q, p


def exact_kl(q: torch.Tensor, p: torch.Tensor) -> float:
    r""":math:`\mathrm{KL}(q\,\|\,p) = \sum_x q(x)\log\frac{q(x)}{p(x)}`."""
    return float((q * (q.log() - p.log())).sum())


def estimator_moments(q: torch.Tensor, p: torch.Tensor) -> dict[str, tuple[float, float]]:
    """Exact (mean, std) of a single-sample k1, k2, k3 with :math:`x\\sim q`, by summing over the outcomes."""
    est = kl_estimators(q.log(), p.log())
    out = {}
    for name, v in est.items():
        mean = float((q * v).sum())
        out[name] = (mean, math.sqrt(max(float((q * v * v).sum()) - mean ** 2, 0.0)))
    return out


def estimator_draws(q: torch.Tensor, p: torch.Tensor, n: int, n_batches: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """``n_batches`` estimates of KL(q‖p), each the mean of one estimator over ``n`` samples x ~ q (the same samples
    for k1, k2, k3)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.multinomial(q, n * n_batches, replacement=True, generator=g)
    est = kl_estimators(q.log()[x], p.log()[x])
    return {k: v.view(n_batches, n).mean(1) for k, v in est.items()}


@dataclass
class KLRow:
    distance: float
    kl: float
    mean: dict      # estimator -> measured mean of single-sample estimates
    se: dict        # estimator -> its standard error
    std: dict       # estimator -> measured std of a single-sample estimate
    exact: dict     # estimator -> exact (mean, std)


def kl_estimator_table(distances: Sequence[float] = (0.25, 0.5, 1.0, 2.0, 3.0), n_samples: int = 100_000,
                       seed: int = 0) -> list[KLRow]:
    """Measured bias and spread of k1, k2, k3 (``n_samples`` single-sample estimates) at each distance."""
    rows = []
    for i, d in enumerate(distances):
        q, p = two_categoricals(d)
        draws = estimator_draws(q, p, 1, n_samples, seed=seed + i)
        mean = {k: float(v.mean()) for k, v in draws.items()}
        std = {k: float(v.std()) for k, v in draws.items()}
        rows.append(KLRow(d, exact_kl(q, p), mean, {k: std[k] / math.sqrt(n_samples) for k in std}, std,
                          estimator_moments(q, p)))
    return rows


COLORS = {"k1": "tab:blue", "k2": "tab:orange", "k3": "tab:green"}


def plot_kl_moments(axes, distances: Sequence[float] | None = None) -> None:
    """Left: the mean of each estimator against the exact KL; right: the std of a single-sample estimate."""
    distances = distances if distances is not None else [0.05 * j for j in range(61)]
    kl, means, stds = [], {k: [] for k in ESTIMATORS}, {k: [] for k in ESTIMATORS}
    for d in distances:
        q, p = two_categoricals(d)
        kl.append(exact_kl(q, p))
        for k, (m, s) in estimator_moments(q, p).items():
            means[k].append(m)
            stds[k].append(s)
    ax = axes[0]
    ax.plot(distances, kl, color="k", lw=3, alpha=0.3, label="exact KL(q‖p)")
    for k in ESTIMATORS:
        ax.plot(distances, means[k], color=COLORS[k], ls="--" if k != "k2" else "-", label=f"E[{k}]")
    ax.set_xlabel("distance between policy and reference (log-odds scale)")
    ax.set_ylabel("expected value of the estimator")
    ax.set_title("bias: E[k1] = E[k3] = KL, E[k2] is not", fontsize=10)
    ax.legend(fontsize=8)
    ax = axes[1]
    for k in ESTIMATORS:
        ax.plot(distances, stds[k], color=COLORS[k], label=k)
    ax.plot(distances, kl, color="k", lw=3, alpha=0.3, label="KL (for scale)")
    ax.set_xlabel("distance between policy and reference (log-odds scale)")
    ax.set_ylabel("std of a one-sample estimate")
    ax.set_title("spread of a single-sample estimate", fontsize=10)
    ax.legend(fontsize=8)


def kl_figure():
    """The key figure of section 5: bias and std of k1, k2, k3 against how far apart the distributions are."""
    from ..plots import new_figure
    fig = new_figure(figsize=(11, 3.8))
    plot_kl_moments(fig.subplots(1, 2))
    return fig


# ---- GRPO against REINFORCE --------------------------------------------------------------------

@torch_threads(1)
def compare_advantages(config: GRPOConfig = COMPARE, methods: Sequence[str] = tuple(METHODS),
                       bonuses: Sequence[float] = (0.0, FORMAT_BONUS), seed: int = 0) -> dict[tuple[str, float], GRPOHistory]:
    """Train the SFT model with each advantage in ``methods`` (same budget, same seed), with the 0/1 verifier
    reward and with it plus a format bonus; keys (method, bonus)."""
    task = lesson_task()
    prompts = eval_prompts(task)
    runs = {}
    for bonus in bonuses:
        for m in methods:
            reward_fn = format_reward(task) if bonus else None
            runs[(m, bonus)] = train(sft_policy(), task, config.replace(advantage=m), eval_prompts=prompts,
                                     reward_fn=reward_fn, seed=seed, progress=False)
    return runs


def comparison_figure(runs: dict[tuple[str, float], GRPOHistory] | None = None):
    """Accuracy against training step for each method; one panel per reward."""
    from ..plots import new_figure
    runs = compare_advantages() if runs is None else runs
    bonuses = sorted({b for _, b in runs})
    fig = new_figure(figsize=(11, 3.8))
    axes = fig.subplots(1, len(bonuses), sharey=True, squeeze=False)[0]
    for ax, bonus in zip(axes, bonuses):
        for (m, b), h in runs.items():
            if b == bonus:
                ax.plot(h.eval_steps, h.accuracy, marker=".", label=METHODS.get(m, m))
        ax.set_xlabel("training step (32 prompts × 8 completions each)")
        ax.set_title("reward: correct (0/1)" if bonus == 0 else f"reward: correct (0/1) + {bonus:g} if it stops",
                     fontsize=10)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy (P[sampled answer is correct])")
    axes[0].legend(fontsize=8)
    return fig


# ---- loss types and answer length ----------------------------------------------------------------

@dataclass
class TokenWeights:
    """Per completion length L (digits written): the mean per-token weight |∂loss/∂log π(y_t)| / |A| and the
    total weight Σ_t |∂loss/∂log π(y_t)| / |A| of a completion, for each loss type, relative to the shortest L."""

    lengths: list[int]
    per_token: dict     # loss_type -> list over lengths
    per_sequence: dict  # loss_type -> list over lengths
    n: list[int]        # completions of each length (with A ≠ 0)


@torch_threads(1)
def token_weights(policy: TinyLM | None = None, n_prompts: int = 256, group_size: int = 8, seed: int = 0) -> TokenWeights:
    """Sample a GRPO batch from ``policy`` (default the SFT model) and measure, with autograd on
    :func:`pgcourse.grpo.grpo_loss`, how strongly each token is pushed under each loss type."""
    task = lesson_task()
    policy = sft_policy() if policy is None else policy
    prompts = task.sample_prompts(n_prompts, seed=seed).repeat_interleave(group_size, 0)
    roll = sample(policy, prompts, task.completion_len, task.eos, task.pad, seed=seed)
    adv = group_advantages(task.reward(prompts, roll.tokens).view(n_prompts, group_size)).view(-1)
    digits = roll.lengths - task.stops(roll.tokens).long()           # digits written (EOS not counted)
    keep = (adv.abs() > 1e-6) & (task.stops(roll.tokens) > 0)          # completions that carry a signal and stop
    lengths = sorted(int(k) for k in torch.unique(digits[keep]) if int(k) >= 1)
    per_token, per_seq = {}, {}
    for lt in LOSS_TYPES:
        logp = roll.logp.clone().requires_grad_(True)
        loss, _ = grpo_loss(logp, roll.logp, roll.logp, adv, roll.mask, loss_type=lt)
        loss.backward()
        w = logp.grad.abs() / adv.abs().clamp_min(1e-12)[:, None]
        tok = (w * roll.mask).sum(1) / roll.mask.sum(1)
        seq = (w * roll.mask).sum(1)
        t = [float(tok[keep & (digits == L)].mean()) for L in lengths]
        s = [float(seq[keep & (digits == L)].mean()) for L in lengths]
        per_token[lt] = [x / t[0] for x in t]
        per_seq[lt] = [x / s[0] for x in s]
    n = [int((keep & (digits == L)).sum()) for L in lengths]
    return TokenWeights(lengths, per_token, per_seq, n)


@torch_threads(1)
def loss_type_runs(config: GRPOConfig = COMPARE, seed: int = 0,
                   done: dict[str, GRPOHistory] | None = None) -> dict[str, GRPOHistory]:
    """Train the SFT model under each loss type (same budget and seed); ``done`` holds runs already made."""
    task = lesson_task()
    prompts = eval_prompts(task)
    runs = dict(done or {})
    for lt in LOSS_TYPES:
        if lt not in runs:
            runs[lt] = train(sft_policy(), task, config.replace(loss_type=lt), eval_prompts=prompts, seed=seed,
                             progress=False)
    return {lt: runs[lt] for lt in LOSS_TYPES}


def loss_types_figure(runs: dict[str, GRPOHistory] | None = None):
    """Accuracy by answer length before and after training with each loss type."""
    from ..plots import new_figure
    runs = loss_type_runs() if runs is None else runs
    first = next(iter(runs.values()))
    lengths = sorted(first.accuracy_by_length[0])
    fig = new_figure(figsize=(8, 3.8))
    ax = fig.subplots()
    width = 0.8 / (len(runs) + 1)
    xs = torch.arange(len(lengths), dtype=torch.float64)
    ax.bar(xs - 0.4 + width / 2, [first.accuracy_by_length[0][L] for L in lengths], width, color="0.7",
           label="after SFT (start)")
    for j, (lt, h) in enumerate(runs.items(), 1):
        ax.bar(xs - 0.4 + width * (j + 0.5), [h.accuracy_by_length[-1][L] for L in lengths], width,
               label=f'after GRPO, loss_type="{lt}"')
    ax.set_xticks(xs.tolist(), [f"{L} digit{'s' if L > 1 else ''}" for L in lengths])
    ax.set_xlabel("answer length")
    ax.set_ylabel("accuracy (P[sampled answer is correct])")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8)
    ax.set_title(f"same budget ({first.eval_steps[-1]} steps), same seed: long answers learn slower with \"grpo\"",
                 fontsize=10)
    return fig


FIGURES = {"06_kl_estimators.png": kl_figure, "06_grpo_vs_reinforce.png": comparison_figure,
           "06_loss_types.png": loss_types_figure}
