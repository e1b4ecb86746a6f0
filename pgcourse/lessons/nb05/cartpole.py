r"""PPO on CartPole: what the clip does to each update, and PPO against vanilla policy gradient (VPG).

**VPG** here is the same code as PPO (:func:`pgcourse.ppo.ppo`) with one gradient step on each whole batch
(``n_epochs=1, n_minibatches=1``): the ratio is exactly 1 at that step, so the clipped loss is the plain policy
gradient with GAE advantages. The two methods differ only in how often they reuse a batch.

**Equal tuning.** Each method gets the same tuning budget: the grid :data:`LRS` × :data:`N_ENVS` (learning
rate × environments, i.e. a batch of 256 or 1024 steps; PPO keeps minibatches of 128 samples), each point
trained on the :data:`TUNING_SEEDS` for :data:`BUDGET` steps, the best point chosen by the mean return of the last 20 episodes (ties within one return: by the
mean return of all episodes); the comparison then runs on other seeds, :data:`EVAL_SEEDS`. The sweep costs
minutes, so it is stored in :mod:`.lr_sweep`; ``python -m pgcourse.lessons.nb05`` reruns and
rewrites it, and a test reruns one of its points.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ...ppo import ppo
from ...stats import difference_test
from ...train import History

__all__ = ["METHODS", "LRS", "N_ENVS", "MINIBATCH", "TUNING_SEEDS", "EVAL_SEEDS", "BUDGET", "SMALL", "train", "lr_sweep",
           "load_sweep", "Sweep", "compare", "SeedSummary", "summarize_runs", "separated", "clip_experiment",
           "clip_summary"]

METHODS = {"PPO": {}, "VPG": {"n_epochs": 1, "n_minibatches": 1}}
LRS = (1e-3, 2.5e-3, 5e-3, 1e-2, 2e-2)
N_ENVS = (8, 32)
MINIBATCH = 128          # PPO's minibatch size in the sweep (the default: 32 × 32 steps in 8 minibatches)
TUNING_SEEDS = (100, 101, 102)
EVAL_SEEDS = (0, 1, 2, 3, 4)
BUDGET = 50_000
SMALL = dict(n_envs=8, n_steps=64, n_minibatches=4, n_epochs=10)   # section 4: small batches, 10 epochs


def train(method: str, seed: int, total_steps: int = BUDGET, **overrides) -> History:
    """One run of ``method`` ("PPO" or "VPG") with the package's defaults, ``overrides`` on top.

    PPO with another ``n_envs`` (and no ``n_minibatches`` given) keeps minibatches of :data:`MINIBATCH` samples.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {tuple(METHODS)}, got {method!r}")
    cfg = {**METHODS[method], **overrides}
    if method == "PPO" and "n_envs" in cfg and "n_minibatches" not in cfg:
        cfg["n_minibatches"] = max(1, cfg["n_envs"] * cfg.get("n_steps", 32) // MINIBATCH)
    h = ppo(**cfg, total_steps=total_steps, seed=seed, progress=False)
    h.label = method
    return h


# ---- the equal tuning budget -------------------------------------------------------------------------

@dataclass
class Sweep:
    """The stored sweep: per method, per (lr, n_envs), the last-20 and all-episode mean return of each tuning seed."""

    results: dict   # {method: [{"lr", "n_envs", "last20": [...], "mean": [...]}, ...]}
    seeds: tuple
    budget: int

    def score(self, r: dict) -> tuple[float, float]:
        return round(float(np.mean(r["last20"]))), float(np.mean(r["mean"]))

    def best(self, method: str) -> dict:
        """The chosen point of ``method``: ``{"lr": ..., "n_envs": ...}``."""
        r = max(self.results[method], key=self.score)
        return {"lr": r["lr"], "n_envs": r["n_envs"]}

    def table(self) -> str:
        lines = [f"tuning seeds {list(self.seeds)}, {self.budget} steps each; score: mean return of the last 20 episodes "
                 f"(tie-break: of all episodes)",
                 f"{'method':>6} {'n_envs':>6} {'lr':>7}  {'last-20 return per seed':>26} {'mean':>6}  {'all-episode mean':>16}"]
        for method, rows in self.results.items():
            best = self.best(method)
            for r in rows:
                mark = "  <- chosen" if (r["lr"], r["n_envs"]) == (best["lr"], best["n_envs"]) else ""
                per = ", ".join(f"{x:.0f}" for x in r["last20"])
                lines.append(f"{method:>6} {r['n_envs']:>6} {r['lr']:>7g}  {per:>26} {np.mean(r['last20']):>6.0f}  "
                             f"{np.mean(r['mean']):>16.1f}{mark}")
        return "\n".join(lines)


def lr_sweep(lrs: Sequence[float] = LRS, n_envs: Sequence[int] = N_ENVS, seeds: Sequence[int] = TUNING_SEEDS,
             budget: int = BUDGET, methods: Sequence[str] = tuple(METHODS), verbose: bool = False) -> Sweep:
    """Run the grid for every method (the same grid, the same seeds, the same budget)."""
    results: dict = {m: [] for m in methods}
    for m in methods:
        for n in n_envs:
            for lr in lrs:
                hs = [train(m, s, budget, lr=lr, n_envs=n) for s in seeds]
                results[m].append({"lr": lr, "n_envs": n, "last20": [h.mean_return_last(20) for h in hs],
                                   "mean": [float(np.mean(h.episode_returns)) for h in hs]})
                if verbose:
                    print(m, n, lr, results[m][-1]["last20"], flush=True)
    return Sweep(results, tuple(seeds), budget)


def load_sweep() -> Sweep:
    """The stored sweep (:mod:`.lr_sweep`, written by ``python -m pgcourse.lessons.nb05``)."""
    from .lr_sweep import SWEEP
    return Sweep(SWEEP["results"], tuple(SWEEP["seeds"]), SWEEP["budget"])


def write_sweep(sweep: Sweep) -> None:
    import pprint
    from pathlib import Path
    text = ('"""The stored learning-rate sweep of notebook 05 (written by ``python -m pgcourse.lessons.nb05``;'
            ' do not edit)."""\n\nSWEEP = ' + pprint.pformat({"seeds": list(sweep.seeds), "budget": sweep.budget,
                                                            "results": sweep.results}, width=110, sort_dicts=False) + "\n")
    (Path(__file__).parent / "lr_sweep.py").write_text(text)


# ---- comparing methods over seeds --------------------------------------------------------------------

def compare(configs: dict[str, dict], seeds: Sequence[int] = EVAL_SEEDS, budget: int = BUDGET) -> dict[str, list[History]]:
    """``{label: [History per seed]}`` for ``configs`` = ``{label: {"method": ..., **overrides}}``."""
    out = {}
    for label, cfg in configs.items():
        cfg = dict(cfg)
        method = cfg.pop("method")
        out[label] = [train(method, s, budget, **cfg) for s in seeds]
    return out


@dataclass
class SeedSummary:
    """One number per seed, with its mean and standard error."""

    values: list[float]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def se(self) -> float:
        return statistics.stdev(self.values) / math.sqrt(len(self.values)) if len(self.values) > 1 else math.nan

    def __str__(self) -> str:
        return f"[{', '.join(f'{v:.0f}' for v in self.values)}] mean {self.mean:.0f} ± {self.se:.0f}"


def summarize_runs(runs: dict[str, list[History]], threshold: float = 475.0) -> dict[str, dict[str, SeedSummary]]:
    """Per label: the last-20 return, the all-episode mean return and the steps to ``threshold`` (budget if never)."""
    out = {}
    for label, hs in runs.items():
        out[label] = {"last20": SeedSummary([h.mean_return_last(20) for h in hs]),
                      "mean": SeedSummary([float(np.mean(h.episode_returns)) for h in hs]),
                      "steps_to": SeedSummary([float(h.steps_to(threshold) or h.env_steps[-1]) for h in hs])}
    return out


def separated(a: Sequence[float], b: Sequence[float]) -> tuple[bool, float, str]:
    """Whether every value of ``a`` exceeds every value of ``b``, its probability under no difference, and a summary.

    Under no difference (exchangeable seeds) all of ``a`` above all of ``b`` has probability 1 / C(n_a + n_b, n_a):
    a permutation test that needs no normal approximation; ``difference_test`` adds z.
    """
    p = 1.0 / math.comb(len(a) + len(b), len(a))
    d = difference_test(list(a), list(b))
    ok = min(a) > max(b)
    return ok, p, (f"min {min(a):.4g} vs max {max(b):.4g}: {'every' if ok else 'not every'} seed above "
                   f"(chance under no difference {p:.4f}); difference of means {d.diff:.4g} ± {d.se:.2g}, "
                   f"z = {d.z:.1f} (no difference: z ~ N(0, 1))")


# ---- the clip limits the update ------------------------------------------------------------------------

def clip_experiment(seeds: Sequence[int] = EVAL_SEEDS, total_steps: int = 8192, **overrides) -> dict[str, list[History]]:
    """PPO and the same updates without the clip (``clip=False``), :data:`SMALL` batches and 10 epochs, per seed."""
    cfg = {**SMALL, **overrides}
    return {"PPO (clip 0.2)": [ppo(**cfg, total_steps=total_steps, seed=s, progress=False) for s in seeds],
            "same updates, no clip": [ppo(**cfg, total_steps=total_steps, seed=s, progress=False, clip=False)
                                      for s in seeds]}


def clip_summary(runs: dict[str, list[History]]) -> str:
    """Per run and seed: the exact KL per update (mean, max, updates above 0.1), mean clip fraction, mean return."""
    lines = [f"{'':24s} {'seed':>4} {'mean KL/update':>14} {'max KL':>8} {'KL > 0.1':>9} {'clip fraction':>13} "
             f"{'mean return':>11}"]
    for label, hs in runs.items():
        for s, h in enumerate(hs):
            kl = np.asarray(h.extra["policy_kl"])
            lines.append(f"{label:24s} {s:>4} {kl.mean():>14.4f} {kl.max():>8.3f} {f'{(kl > 0.1).sum()}/{kl.size}':>9} "
                         f"{np.mean(h.extra['clip_fraction']):>13.3f} {np.mean(h.episode_returns):>11.1f}")
    return "\n".join(lines)

