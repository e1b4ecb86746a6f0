"""Exercise checks of notebook 05 (PPO).

Every expected value comes from reference code: ``05.ratio_variance`` by enumerating every trajectory (not by the
closed form the learner predicts); ``05.clipped_surrogate`` and ``05.approx_kl`` by :func:`~pgcourse.ppo.clip_loss`;
``05.minibatch_epochs`` by :func:`~pgcourse.ppo.minibatch_epochs`. The build exercises ``05.ppo_loss`` and
``05.ppo_update`` are in :mod:`pgcourse.grading.nb05_build`.
"""
from __future__ import annotations

import copy
import itertools
import math
from typing import Any

import torch

from ..ppo import clip_loss, minibatch_epochs
from . import Case, derive, exercise
from .losses import LossAndGrad, compare_loss_and_grad, expected_loss_and_grad


# ---- 05.ratio_variance (predict) ------------------------------------------------------------------

def enumerated_ratio_variance(p_old: torch.Tensor, p_new: torch.Tensor, horizon: int) -> float:
    """Var of ρ(τ) = Π_t p_new(a_t)/p_old(a_t), a_t ~ p_old i.i.d., by summing over all A^H action sequences."""
    m1 = m2 = 0.0
    po, pn = p_old.tolist(), p_new.tolist()
    for seq in itertools.product(range(len(po)), repeat=horizon):
        p = math.prod(po[a] for a in seq)
        rho = math.prod(pn[a] / po[a] for a in seq)
        m1 += p * rho
        m2 += p * rho * rho
    return m2 - m1 * m1


@exercise("05.ratio_variance", points=2, kind="predict", atol=1e-9, rtol=1e-6)
def ratio_variance_cases(gen: torch.Generator) -> list[Case]:
    """Var_old[ρ(τ)] for H independent steps, compared with the exact value by enumerating every trajectory."""
    def probs(n, g, temp=1.0):
        return torch.softmax(torch.randn(n, generator=g, dtype=torch.float64) * temp, -1)

    def case(p_old, p_new, H, note, weight=1.0):
        p_old, p_new = torch.as_tensor(p_old, dtype=torch.float64), torch.as_tensor(p_new, dtype=torch.float64)
        return Case((p_old, p_new, H), {}, enumerated_ratio_variance(p_old, p_new, H), note, weight)

    g = derive(gen, 11)
    same = probs(3, g)
    one = float(0.15 + 0.7 * torch.rand(1, generator=g, dtype=torch.float64))
    q3 = probs(3, g, 0.7)
    p3, pn3 = probs(3, g, 0.5), probs(3, g, 0.5)
    zero = probs(3, g, 0.5)
    zero_new = torch.cat([torch.zeros(1, dtype=torch.float64), probs(2, g, 0.5)])
    return [
        case(same, same.clone(), 4, "p_new = p_old: every ratio is 1, so the variance is 0"),
        case([0.5, 0.5], [1 - one, one], 1, "one step: Var rho_t = chi^2 = sum_a p_new(a)^2 / p_old(a) - 1"),
        case(q3, probs(3, derive(gen, 12), 0.7), 1, "one step, three actions"),
        case([0.5, 0.5], [1 - one, one], 3, "H = 3 independent steps: E[rho(tau)^2] is a product over the steps, "
             "so Var rho(tau) = (1 + chi^2)^H - 1, not H chi^2", weight=2.0),
        case(p3, pn3, 5, "H = 5 steps, three actions: the variance grows exponentially in H", weight=2.0),
        case(zero, zero_new, 2, "p_new gives an action probability 0 (its ratio is 0): the formula still holds"),
    ]


# ---- 05.clipped_surrogate (debug) ----------------------------------------------------------------------

def _clip_loss_value(logp, old_logp, adv, clip_eps):
    return clip_loss(logp, old_logp, adv, clip_eps)[0]


def compare_clip(got: Any, expected: LossAndGrad) -> str | None:
    """The value must match clip_loss, and so must d loss / d logp (zero exactly where the clip is active)."""
    return compare_loss_and_grad(got, expected, " (it must be 0 exactly where the clip is active)")


@exercise("05.clipped_surrogate", points=2, kind="debug", compare=compare_clip)
def clipped_surrogate_cases(gen: torch.Generator) -> list[Case]:
    """L = −mean(min(ρA, clip(ρ, 1−ε, 1+ε)A)), ρ = exp(logp − old_logp); compared in value and in dL/dlogp."""
    def case(ratio, adv, clip_eps=0.2, note="", old=None, weight=1.0):
        ratio = torch.as_tensor(ratio, dtype=torch.float64)
        old = torch.full_like(ratio, -0.7) if old is None else old
        logp = (old + ratio.log()).detach().requires_grad_(True)
        adv = torch.as_tensor(adv, dtype=torch.float64)
        return Case((logp, old, adv), {"clip_eps": clip_eps},
                    expected_loss_and_grad(_clip_loss_value, logp, old, adv, clip_eps), note, weight)

    g = derive(gen, 5)
    old = -torch.rand(64, generator=g, dtype=torch.float64) * 2 - 0.05
    up = float(1.3 + 0.4 * torch.rand(1, generator=g, dtype=torch.float64))     # a ratio above 1 + eps
    down = float(0.4 + 0.35 * torch.rand(1, generator=g, dtype=torch.float64))  # a ratio below 1 - eps
    return [
        case([1.0, 1.0, 1.0], [1.0, -2.0, 0.5], 0.2, "ratios all 1 (the first minibatch): the loss is -mean(A)"),
        case([up, down], [1.0, 1.0], 0.2, "A > 0: flat above 1 + eps (gradient 0), the full rho*A below 1 - eps"),
        case([up], [-1.0], 0.2, "A < 0 and rho > 1 + eps: the update made a bad action MORE likely; the pessimistic "
             "min keeps the unclipped rho*A, whose gradient pulls it back (not 0)", weight=2.0),
        case([down], [-1.0], 0.2, "A < 0 and rho < 1 - eps: the bad action is already much less likely; the objective "
             "is flat at (1 - eps)*A there (gradient 0)", weight=2.0),
        case([1.1, 0.95, 1.19], [2.0, -1.0, 0.3], 0.2, "every ratio inside [1 - eps, 1 + eps]: no clipping"),
        case([1.3, 0.6, 1.05, 2.0], [1.0, -1.0, 1.0, -0.5], 0.1, "clip_eps = 0.1, both signs of A"),
        case(torch.exp(torch.randn(64, generator=g, dtype=torch.float64) * 0.3), torch.randn(64, generator=g,
             dtype=torch.float64), 0.2, "64 random ratios and advantages", old),
    ]


# ---- 05.approx_kl (transcribe) -------------------------------------------------------------------------

@exercise("05.approx_kl", points=1)
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


# ---- 05.minibatch_epochs (transcribe) ------------------------------------------------------------------

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


@exercise("05.minibatch_epochs", points=2)
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
