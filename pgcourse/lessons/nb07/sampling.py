r"""Notebook 07: zero-variance groups and dynamic sampling; entropy and pass@k over training.

A group whose G rewards are all equal has advantages :math:`r_i - \bar r = 0`: its G completions were
sampled, scored and back-propagated for nothing. Dynamic sampling (DAPO) drops such groups, and may
draw new prompts to refill the batch. Dropping alone changes the gradient's size, not its direction
(the dropped rows contribute 0 to the sum and only count in the normalization).

RL sharpens: pass@1 :math:`= \frac1N\sum_x p_x` and pass@k :math:`= \frac1N\sum_x 1-(1-p_x)^k`, with
:math:`p_x = \pi(y^\star\mid x)` computed exactly; training raises the probability of answers the policy
already finds, and the entropy of its next-token distributions falls.
"""
from __future__ import annotations

import copy
from typing import Sequence

import torch

from ...device import generator as make_generator
from ...grpo import answer_probability, microbatch_step, rollout
from ...plots import new_figure
from ...stats import mean_se
from .runs import RUN, SEEDS, Run, eval_prompts, lesson_task, over_seeds, start_policy, train_runs, window

#: the training runs compared (dropping alone is shown exactly on one batch by :func:`drop_rows`)
DYNAMIC = {"no dynamic sampling": {}, "drop and refill (DAPO)": dict(dynamic_sampling=True, max_refills=4)}
KS = (1, 2, 4, 8, 16, 32, 64)


def dynamic_runs(seeds: Sequence[int] = SEEDS, run=RUN, reuse: dict | None = None) -> dict[str, list[Run]]:
    """One run per seed of each dynamic-sampling choice (``reuse``: runs already made, by name)."""
    reuse = reuse or {}
    return {name: reuse.get(name) or train_runs(name, run.replace(**ch), seeds) for name, ch in DYNAMIC.items()}


def zero_variance_table(runs: dict[str, list[Run]], width: int = 5) -> list[dict]:
    """Per choice (mean ± SE over seeds): the fraction of zero-variance groups in the first draw of each step
    (the first and the last ``width`` steps), completions drawn per step, and pass@1 before and after."""
    rows = []
    for name, rs in runs.items():
        rows.append({"config": name, "zero_start": over_seeds(rs, lambda r: window(r.history.zero_variance, "start", width)),
                     "zero_end": over_seeds(rs, lambda r: window(r.history.zero_variance, "end", width)),
                     "samples": over_seeds(rs, lambda r: sum(r.history.samples) / len(r.history.samples)),
                     "pass1_start": over_seeds(rs, lambda r: r.history.eval_accuracy[0]),
                     "pass1_end": over_seeds(rs, lambda r: r.history.eval_accuracy[-1])})
    return rows


def format_zero_variance(rows: Sequence[dict]) -> str:
    pm = lambda v, f=".3f": f"{v[0]:{f}} ± {v[1]:{f}}"  # noqa: E731
    head = (f"{'dynamic sampling':<27} {'zero-var: start':>16} {'zero-var: end':>16} {'samples/step':>15}"
            f" {'pass@1 start':>15} {'pass@1 end':>15}")
    return "\n".join([head, "-" * len(head)] + [
        f"{r['config']:<27} {pm(r['zero_start']):>16} {pm(r['zero_end']):>16} {pm(r['samples'], '.1f'):>15}"
        f" {pm(r['pass1_start']):>15} {pm(r['pass1_end']):>15}" for r in rows])


def drop_rows(seeds: Sequence[int] = SEEDS, n_prompts: int = 8, loss_types: Sequence[str] = ("grpo", "bnpo", "dr_grpo")
              ) -> list[dict]:
    """On one sampled batch per seed: the gradient with every group against the gradient with the zero-variance
    groups dropped, per loss type: their cosine, and the ratio of their norms against what the
    normalization predicts (rows, or tokens for bnpo, before over after)."""
    task = lesson_task()
    policy = start_policy(task)
    ref = copy.deepcopy(policy)
    rows = []
    for s in seeds:
        batch = rollout(policy, ref, task, RUN.replace(prompts_per_step=n_prompts), make_generator(int(s)))
        G = batch.group_size
        r = batch.rewards.view(-1, G)
        keep = (r != r[:, :1]).any(1).repeat_interleave(G)
        kept = batch.rows(keep.nonzero().squeeze(1))
        for lt in loss_types:
            grads = []
            for b in (batch, kept):
                policy.zero_grad()
                microbatch_step(policy, b, None, loss_type=lt, beta=0.0)
                grads.append(torch.cat([p.grad.flatten() for p in policy.parameters()]).double())
            full, dropped = grads
            predicted = (float(batch.mask.sum()) / float(kept.mask.sum()) if lt == "bnpo" else len(batch) / len(kept))
            cos = float(full @ dropped / (full.norm() * dropped.norm()))
            rows.append({"seed": int(s), "loss_type": lt, "kept_groups": int(keep.sum()) // G, "groups": len(batch) // G,
                         "cos": cos, "norm_ratio": float(dropped.norm() / full.norm()), "predicted": predicted})
    return rows


# ---- entropy and pass@k ------------------------------------------------------------------------------------

def pass_at_k(p: torch.Tensor, ks: Sequence[int] = KS) -> torch.Tensor:
    r"""Per prompt and k, :math:`1 - (1 - p_x)^k`, shaped (len(ks), N), from exact :math:`p_x`."""
    p = p.double()
    return torch.stack([1 - (1 - p) ** k for k in ks])


def sharpening(runs: Sequence[Run], ks: Sequence[int] = KS) -> dict:
    """Before and after training, exact pass@k on the evaluation prompts (``before``; ``after`` the mean of the
    seeds, ``after_per_seed``); and per seed the changes of pass@1, pass@8, their gap pass@8 − pass@1 and the
    entropy (last five steps − first five), each as (mean, SE) over seeds and as the per-seed values."""
    ks = tuple(ks)
    task, ev = lesson_task(), eval_prompts()
    before = pass_at_k(answer_probability(start_policy(task), task, ev), ks).mean(1)
    after = torch.stack([pass_at_k(answer_probability(r.policy, task, ev), ks).mean(1) for r in runs])  # (seeds, ks)
    change = after - before
    per_seed = {"pass1": change[:, ks.index(1)], "pass8": change[:, ks.index(8)],
                "gap": change[:, ks.index(8)] - change[:, ks.index(1)],
                "entropy": torch.tensor([window(r.history.entropy, "end") - window(r.history.entropy, "start")
                                         for r in runs], dtype=torch.float64)}
    out = {"ks": ks, "before": before, "after": after.mean(0), "after_per_seed": after, "per_seed": per_seed}
    for name, v in per_seed.items():
        m, se = mean_se(v)
        out[f"{name}_change"] = (float(m), float(se))
    return out


def plot_pass_at_k(ax, result: dict) -> None:
    """pass@k against k, before and after training (each seed thin, their mean thick)."""
    ks = list(result["ks"])
    ax.plot(ks, result["before"].tolist(), "o-", color="tab:gray", lw=2, label="before RL (SFT)")
    for row in result["after_per_seed"]:
        ax.plot(ks, row.tolist(), "-", color="tab:green", lw=0.8, alpha=0.6)
    ax.plot(ks, result["after"].tolist(), "o-", color="tab:green", lw=2, label="after RL (mean of seeds)")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("k (samples per prompt)")
    ax.set_ylabel("pass@k (exact)")
    ax.legend(fontsize=8)


def plot_entropy(ax, runs: Sequence[Run]) -> None:
    """The mean next-token entropy of the sampled completions at each step, one line per seed."""
    for r in runs:
        ax.plot(range(1, len(r.history.entropy) + 1), r.history.entropy, lw=1.2, label=f"seed {r.seed}")
    ax.set_xlabel("GRPO step")
    ax.set_ylabel("entropy per token (nats)")
    ax.legend(fontsize=8)


def sharpening_figure(runs: Sequence[Run] | None = None, result: dict | None = None):
    """``07_pass_at_k.png``: pass@k before and after GRPO, and the entropy over training."""
    runs = train_runs("GRPO", RUN) if runs is None else runs
    result = sharpening(runs) if result is None else result
    fig = new_figure(figsize=(10, 3.6))
    a, b = fig.subplots(1, 2)
    plot_pass_at_k(a, result)
    a.set_title("RL sharpens: pass@1 vs pass@k", fontsize=10)
    plot_entropy(b, runs)
    b.set_title("entropy of the sampling policy", fontsize=10)
    return fig
