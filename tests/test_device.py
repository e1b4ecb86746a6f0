"""pgcourse.device: the device choice (PGCOURSE_DEVICE), seeding and generators."""
import random

import numpy as np
import pytest
import torch

import pgcourse
from pgcourse.device import device, generator, seed_everything


def test_device_default(monkeypatch):
    monkeypatch.delenv("PGCOURSE_DEVICE", raising=False)
    assert device().type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert pgcourse.device is device


def test_device_env_override(monkeypatch):
    monkeypatch.setenv("PGCOURSE_DEVICE", "cpu")
    assert device() == torch.device("cpu")
    monkeypatch.setenv("PGCOURSE_DEVICE", "  ")
    assert device().type in ("cpu", "cuda")


def test_device_env_bad(monkeypatch):
    monkeypatch.setenv("PGCOURSE_DEVICE", "not-a-device")
    with pytest.raises(ValueError, match="PGCOURSE_DEVICE"):
        device()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message when CUDA is missing")
def test_device_env_cuda_without_cuda(monkeypatch):
    monkeypatch.setenv("PGCOURSE_DEVICE", "cuda")
    with pytest.raises(ValueError, match="CUDA"):
        device()


def test_seed_everything_repeats_every_generator():
    g1 = seed_everything(123)
    a = (random.random(), np.random.rand(), torch.rand(1).item(), torch.rand(1, generator=g1).item())
    g2 = seed_everything(123)
    b = (random.random(), np.random.rand(), torch.rand(1).item(), torch.rand(1, generator=g2).item())
    assert a == b
    assert isinstance(g1, torch.Generator)
    seed_everything(2**40)  # a large seed is fine (numpy gets it modulo 2³²)


def test_generator(dev):
    g = generator(5, dev)
    assert g.device.type == dev.type
    x = torch.rand(3, generator=g, device=dev)
    y = torch.rand(3, generator=generator(5, dev), device=dev)
    assert torch.equal(x, y)
    assert generator(g) is g  # a generator passes through
    assert generator(np.int64(5)).initial_seed() == 5


def test_torch_threads_restores_the_count():
    from pgcourse.device import torch_threads
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError):
        with torch_threads(1):
            raise RuntimeError("inside")
    assert torch.get_num_threads() == before
