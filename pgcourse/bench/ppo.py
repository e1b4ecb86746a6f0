"""``python -m pgcourse bench ppo``: PPO on CartPole-v1 until the last 20 episodes average ≥ 475.

Trains :func:`pgcourse.ppo.ppo` with its default :class:`~pgcourse.ppo.PPOConfig` for 5 seeds
(``--quick``: 1 seed and a small step cap, a smoke test), stopping each seed as soon as the mean
return of its last 20 episodes reaches 475, or at the config's ``total_steps`` (then reported as
a failure). Prints, per seed and as median/min/max over seeds, the wall seconds (the whole
``ppo`` call: environments, networks and training) and env steps to 475, and the steps per second.

Budget: median ≤ 20 s on a 2-core CPU. For scale: CleanRL's ``ppo.py`` (defaults, one thread)
reached 475 after about 113k steps and 26 s on such a machine (about 4,400 steps/s).
"""
from __future__ import annotations

import os
import statistics
import time

import torch

from ..ppo import PPOConfig, ppo

THRESHOLD = 475.0
WINDOW = 20


def _summary(xs: list[float]) -> dict:
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs)}


def run(quick: bool = False) -> dict:
    seeds = [0] if quick else [0, 1, 2, 3, 4]
    cfg = PPOConfig(stop_at_return=THRESHOLD)
    if quick:
        cfg = PPOConfig(stop_at_return=THRESHOLD, total_steps=4 * cfg.batch_size)
    # torch.optim imports torch._dynamo the first time an optimizer is built (seconds): do it before timing
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"PPO on {cfg.env_id}: {len(seeds)} seed(s), stop at mean return of last {WINDOW} episodes ≥ {THRESHOLD:g} "
          f"or {cfg.total_steps} steps; {os.cpu_count()} CPUs, load average {load:.1f}")
    print(f"config: n_envs={cfg.n_envs} n_steps={cfg.n_steps} n_epochs={cfg.n_epochs} n_minibatches={cfg.n_minibatches} "
          f"lr={cfg.lr:g} (annealed over {cfg.total_steps} steps) gamma={cfg.gamma} lam={cfg.lam} clip_eps={cfg.clip_eps} "
          f"entropy_coef={cfg.entropy_coef} value_coef={cfg.value_coef} max_grad_norm={cfg.max_grad_norm}")
    per_seed, total_steps, total_time = [], 0, 0.0
    for seed in seeds:
        t0 = time.perf_counter()
        hist = ppo(cfg, seed=seed, progress=False)
        wall = time.perf_counter() - t0
        steps = hist.steps_to(THRESHOLD, WINDOW)
        total_steps += hist.env_steps[-1]
        total_time += wall
        per_seed.append({"seed": seed, "solved": steps is not None, "seconds": wall, "steps": steps,
                         "env_steps": hist.env_steps[-1], "steps_per_second": hist.env_steps[-1] / wall})
        status = f"{steps} steps, {wall:.2f} s" if steps is not None else f"NOT solved in {hist.env_steps[-1]} steps ({wall:.2f} s)"
        print(f"  seed {seed}: {status}, {hist.env_steps[-1] / wall:,.0f} steps/s, "
              f"mean of last {WINDOW} returns {hist.mean_return_last(WINDOW):.1f}")
    solved = [r for r in per_seed if r["solved"]]
    result: dict = {"seeds": len(seeds), "solved": len(solved), "threshold": THRESHOLD,
                    "steps_per_second": round(total_steps / total_time), "load_average": round(load, 2),
                    "per_seed_seconds": [round(r["seconds"], 3) if r["solved"] else None for r in per_seed],
                    "per_seed_steps": [r["steps"] for r in per_seed]}
    if len(solved) == len(seeds):
        sec = _summary([r["seconds"] for r in per_seed])
        stp = _summary([float(r["steps"]) for r in per_seed])
        result.update(seconds_to_475=round(sec["median"], 3), seconds_to_475_min=round(sec["min"], 3),
                      seconds_to_475_max=round(sec["max"], 3), steps_to_475=round(stp["median"]),
                      steps_to_475_min=round(stp["min"]), steps_to_475_max=round(stp["max"]))
        print(f"seconds to {THRESHOLD:g}: median {sec['median']:.2f} (min {sec['min']:.2f}, max {sec['max']:.2f}); "
              f"budget 20 s median on a 2-core CPU")
        print(f"env steps to {THRESHOLD:g}: median {stp['median']:,.0f} (min {stp['min']:,.0f}, max {stp['max']:,.0f})")
    else:  # a failed seed has no time to 475: the median is undefined
        result.update(seconds_to_475=None, steps_to_475=None)
        print(f"{len(seeds) - len(solved)} of {len(seeds)} seeds did not reach {THRESHOLD:g}")
    print(f"steps per second: {result['steps_per_second']:,} (all seeds, whole runs)")
    return result
