"""``python -m pgcourse bench kernels``: reward-to-go, GAE and tabular gradient samples.

Budgets (2-core CPU): reward_to_go and gae on a (1024, 500) float32 batch with episode
boundaries ≤ 5 ms each; gradient_samples ≥ 10⁶ episode-steps per second, scores included.
A plain Python loop over the same numbers is printed for scale.
"""
from __future__ import annotations

import time

import torch

from ..device import device as default_device
from ..mdp import frozen_lake
from ..returns import gae, reward_to_go
from ..variance import gradient_samples
from ._timing import time_call


def _python_loop_rtg(rewards: list[list[float]], dones: list[list[bool]], gamma: float) -> list[list[float]]:
    out = []
    for row_r, row_d in zip(rewards, dones):
        g, row = 0.0, [0.0] * len(row_r)
        for t in range(len(row_r) - 1, -1, -1):
            g = row_r[t] + gamma * (0.0 if row_d[t] else g)
            row[t] = g
        out.append(row)
    return out


def run(quick: bool = False) -> dict:
    results: dict = {"torch_threads": torch.get_num_threads()}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    devices = [torch.device("cpu")] + ([default_device()] if default_device().type == "cuda" else [])
    B, T = (256, 500) if quick else (1024, 500)
    for dev in devices:
        g = torch.Generator().manual_seed(0)
        r = torch.randn(B, T, generator=g).to(dev)
        v = torch.randn(B, T, generator=g).to(dev)
        nv = torch.randn(B, T, generator=g).to(dev)
        term = (torch.rand(B, T, generator=g) < 0.01).to(dev)
        trunc = (torch.rand(B, T, generator=g) < 0.005).to(dev) & ~term
        dones = term | trunc
        rtg = time_call(lambda: reward_to_go(r, 0.99, dones), dev=dev)
        adv = time_call(lambda: gae(r, v, nv, term, trunc, 0.99, 0.95), dev=dev)
        key = dev.type
        for name, t in (("reward_to_go", rtg), ("gae", adv)):
            results[f"{name}_ms_{key}"] = round(t["median_ms"], 3)
            results[f"{name}_min_ms_{key}"] = round(t["min_ms"], 3)  # the least disturbed run on a busy machine
            print(f"[{key}] {name:<12} ({B}, {T}) float32: median {t['median_ms']:.2f} ms, "
                  f"min {t['min_ms']:.2f} ms (budget 5 ms on CPU)")
    rl, dl = r.cpu().tolist(), dones.cpu().tolist()
    t0 = time.perf_counter()
    _python_loop_rtg(rl, dl, 0.99)
    loop_ms = (time.perf_counter() - t0) * 1e3
    results["python_loop_ms"] = round(loop_ms, 1)
    print(f"[cpu] plain Python loop, same numbers: {loop_ms:.1f} ms")

    mdp = frozen_lake(horizon=30, gamma=0.99)
    for dev in devices:
        logits = torch.randn(16, 4, generator=torch.Generator().manual_seed(0)).to(dev)
        batch, n_batches = 32, (500 if quick else 4000)
        gradient_samples(mdp, logits, "reward_to_go", batch, 10, seed=1)  # warm up
        best = float("inf")
        for rep in range(1 if quick else 3):
            t0 = time.perf_counter()
            gradient_samples(mdp, logits, "reward_to_go", batch, n_batches, seed=rep)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - t0)
        steps = int(mdp.sample(logits, batch * n_batches, seed=0).mask.sum())  # same count as a run
        rate = steps / best
        results[f"gradient_samples_steps_per_s_{dev.type}"] = round(rate)
        print(f"[{dev.type}] gradient_samples FrozenLake (H=30), {batch * n_batches} episodes, {steps} episode-steps: "
              f"{best * 1e3:.0f} ms, {rate / 1e6:.2f} M episode-steps/s (budget ≥ 1 M/s on CPU)")
    return results
