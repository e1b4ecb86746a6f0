import os

import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")


def cuda_devices():
    return [torch.device("cuda")] if torch.cuda.is_available() else []


requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(params=["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
def dev(request):
    """Every test using this fixture runs on the CPU and, where there is one, on CUDA."""
    return torch.device(request.param)


@pytest.fixture
def one_thread():
    """Run a test on one torch thread (small-tensor work: faster, and independent of the core count).

    Use it in a module with ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    """
    from pgcourse.device import torch_threads
    with torch_threads(1):
        yield
