"""Where tensors live and how randomness is seeded."""
from __future__ import annotations

import os
from contextlib import contextmanager
import random

import numpy as np
import torch


def device() -> torch.device:
    """CUDA where there is one, else the CPU; ``PGCOURSE_DEVICE`` (e.g. ``cpu``, ``cuda:1``) overrides."""
    name = os.environ.get("PGCOURSE_DEVICE", "").strip()
    if name:
        try:
            dev = torch.device(name)
        except RuntimeError as err:
            raise ValueError(f"PGCOURSE_DEVICE={name!r} is not a device: {err}") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"PGCOURSE_DEVICE={name!r} but CUDA is not available here")
        return dev
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, numpy and torch; return a CPU ``torch.Generator`` seeded the same."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return generator(seed)


def generator(seed: int | torch.Generator, dev: torch.device | str = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``dev`` seeded with ``seed`` (a generator passes through)."""
    if isinstance(seed, torch.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int or a torch.Generator, got {type(seed).__name__}")
    g = torch.Generator(device=torch.device(dev))
    g.manual_seed(int(seed))
    return g


@contextmanager
def torch_threads(n: int = 1):
    """Run a block with ``n`` intra-op threads (restored afterwards).

    Training small networks on a CPU is latency-bound: every op on a tiny tensor that enters an
    OpenMP parallel region pays a barrier, which costs milliseconds on a busy machine. One thread
    is faster there, and its results do not depend on the machine's core count.
    """
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
