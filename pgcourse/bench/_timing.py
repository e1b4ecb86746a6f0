"""Timing helpers for the benchmarks (never used by tests to assert speed)."""
from __future__ import annotations

import statistics
import time
from typing import Callable

import torch


def _sync(dev: torch.device | None) -> None:
    if dev is not None and dev.type == "cuda":
        torch.cuda.synchronize(dev)


def time_call(fn: Callable[[], object], repeat: int = 20, warmup: int = 3, dev: torch.device | None = None) -> dict:
    """Median and minimum wall time of ``fn()`` in milliseconds."""
    for _ in range(warmup):
        fn()
    _sync(dev)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        _sync(dev)
        times.append((time.perf_counter() - t0) * 1e3)
    return {"median_ms": statistics.median(times), "min_ms": min(times)}
