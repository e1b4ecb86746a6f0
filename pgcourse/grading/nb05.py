"""Exercise checks of notebook 05 (PPO).

Every expected value is computed by the package's reference code in :mod:`pgcourse.ppo`:
``05.clipped_surrogate`` by :func:`~pgcourse.ppo.clip_loss` (its value and, by autograd, its
gradient with respect to ``logp``), ``05.approx_kl`` by the ``approx_kl`` statistic of
:func:`~pgcourse.ppo.clip_loss`, ``05.minibatch_epochs`` by :func:`~pgcourse.ppo.minibatch_epochs`.
"""
from __future__ import annotations

import copy
from typing import Any

import torch

from ..ppo import clip_loss, minibatch_epochs
from . import Case, derive, exercise
from .losses import LossAndGrad, compare_loss_and_grad, expected_loss_and_grad




# ---- 05.clipped_surrogate ----------------------------------------------------------------------

def _clip_loss_value(logp, old_logp, adv, clip_eps):
    return clip_loss(logp, old_logp, adv, clip_eps)[0]


def compare_clip(got: Any, expected: LossAndGrad) -> str | None:
    """The value must match clip_loss, and so must d loss / d logp (zero where the clip is active)."""
    return compare_loss_and_grad(got, expected, " (it must be 0 where the clip is active)")


@exercise("05.clipped_surrogate", compare=compare_clip)
def clipped_surrogate_cases(gen: torch.Generator) -> list[Case]:
    """L = −mean(min(ρA, clip(ρ, 1−ε, 1+ε)A)), ρ = exp(logp − old_logp); compared in value and in dL/dlogp."""
    def case(ratio, adv, clip_eps=0.2, note="", old=None):
        ratio = torch.as_tensor(ratio, dtype=torch.float64)
        old = torch.full_like(ratio, -0.7) if old is None else old
        logp = (old + ratio.log()).detach().requires_grad_(True)
        adv = torch.as_tensor(adv, dtype=torch.float64)
        return Case((logp, old, adv), {"clip_eps": clip_eps}, expected_loss_and_grad(_clip_loss_value, logp, old, adv, clip_eps), note)

    g = derive(gen, 5)
    old = -torch.rand(64, generator=g, dtype=torch.float64) * 2 - 0.05
    return [
        case([1.0, 1.0, 1.0], [1.0, -2.0, 0.5], 0.2, "ratios all 1 (first minibatch): the loss is -mean(A)"),
        case([1.5, 0.5], [1.0, 1.0], 0.2, "A > 0: the clip bites above 1+eps (gradient 0) but not below 1-eps"),
        case([1.5, 0.5], [-1.0, -1.0], 0.2, "A < 0: the clip bites below 1-eps (gradient 0) but not above 1+eps"),
        case([1.1, 0.95, 1.19], [2.0, -1.0, 0.3], 0.2, "every ratio inside [1-eps, 1+eps]: no clipping"),
        case([1.3, 0.6, 1.05, 2.0], [1.0, -1.0, 1.0, -0.5], 0.1, "clip_eps = 0.1"),
        case(torch.exp(torch.randn(64, generator=g, dtype=torch.float64) * 0.3), torch.randn(64, generator=g,
             dtype=torch.float64), 0.2, "64 random ratios and advantages", old),
    ]


# ---- 05.approx_kl -------------------------------------------------------------------------------

@exercise("05.approx_kl")
def approx_kl_cases(gen: torch.Generator) -> list[Case]:
    """mean((ρ − 1) − log ρ): the k3 estimator of KL(π_old ‖ π_θ) from actions sampled by π_old."""
    def case(logp, old_logp, note=""):
        logp, old_logp = torch.as_tensor(logp, dtype=torch.float64), torch.as_tensor(old_logp, dtype=torch.float64)
        kl = clip_loss(logp, old_logp, torch.ones_like(logp))[1]["approx_kl"]
        return Case((logp, old_logp), {}, float(kl), note)

    g = derive(gen, 6)
    x = -torch.rand(8, generator=g, dtype=torch.float64) * 3
    return [
        case([-0.7, -1.2, -0.1], [-0.7, -1.2, -0.1], "the same policy: 0"),
        case([0.0], [-0.6931471805599453], "one sample, ratio 2: (2 - 1) - log 2"),
        case([-2.0, -0.1], [-0.1, -2.0], "ratios below and above 1: each term is >= 0"),
        case(x + 0.05 * torch.randn(8, generator=g, dtype=torch.float64), x, "nearby policies: small and positive"),
        case(torch.log_softmax(torch.randn(500, 3, generator=g, dtype=torch.float64), -1)[:, 0],
             torch.log_softmax(torch.randn(500, 3, generator=g, dtype=torch.float64), -1)[:, 0], "500 samples"),
    ]


# ---- 05.minibatch_epochs ------------------------------------------------------------------------

class FakeStep:
    """A stand-in for one gradient step: ``step(idx)`` returns ``{"approx_kl": kl}`` and changes nothing."""

    def __init__(self, kl: float):
        self.kl = kl

    def __call__(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        if not isinstance(idx, torch.Tensor) or idx.dtype != torch.long:
            raise TypeError(f"step(idx) expects a tensor of int64 indices, got {idx!r}")
        return {"approx_kl": torch.tensor(self.kl)}

    def __repr__(self) -> str:
        return f"<step(idx) -> {{'approx_kl': {self.kl}}}>"


@exercise("05.minibatch_epochs")
def minibatch_epochs_cases(gen: torch.Generator) -> list[Case]:
    """The index tensors visited, in order: per epoch a torch.randperm(n, generator=...) split by tensor_split."""
    def case(n, n_epochs, n_minibatches, seed, kl=0.0, target_kl=None, note=""):
        g = derive(gen, seed)
        expected = minibatch_epochs(FakeStep(kl), n, n_epochs, n_minibatches, copy.deepcopy(g), target_kl)
        return Case((FakeStep(kl), n, n_epochs, n_minibatches, g), {"target_kl": target_kl}, expected, note)

    return [
        case(8, 1, 2, 0, note="one epoch of two minibatches of 4"),
        case(10, 3, 4, 1, note="three epochs, each a fresh permutation; 10 samples in 4 minibatches: 3, 3, 2, 2"),
        case(5, 2, 5, 2, note="minibatches of one sample"),
        case(12, 1, 1, 3, note="one minibatch: the whole permuted batch"),
        case(16, 4, 2, 4, kl=0.05, target_kl=0.02, note="approx_kl 0.05 > target_kl 0.02: stop after the first epoch"),
        case(16, 4, 2, 5, kl=0.01, target_kl=0.02, note="approx_kl 0.01 <= target_kl 0.02: all four epochs"),
    ]
