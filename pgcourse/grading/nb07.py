"""Exercises of notebook 07 (GRPO: what goes wrong); expected outputs come from :mod:`pgcourse.kl`.

* ``07.k3_expected_gradient`` (predict): the exact expected gradient, in the policy's logits, of GRPO's
  k3 term put in the loss, :math:`\\pi - \\pi_{\\text{ref}}` (the forward KL's gradient).
* ``07.reverse_kl_penalty`` (debug): fix a per-token penalty so that, put in the loss, its expected
  gradient is the REVERSE KL's. The check cell passes ``pgcourse.kl.penalty_gradient(kl_penalty)``:
  the exact expected gradient of the learner's penalty.
"""
from __future__ import annotations

import torch

from ..kl import kl_gradient
from . import Case, derive, differ, exercise

_OTHER: dict[int, tuple[torch.Tensor, str]] = {}   # id(expected) -> (the other KL direction's gradient, its name)


def _pairs(gen: torch.Generator) -> list[tuple[torch.Tensor, torch.Tensor, str]]:
    """(logits, ref_logits, note): every random input drawn from ``gen``."""
    g = [derive(gen, k) for k in range(5)]
    return [
        (torch.tensor([0.0, 0.0]), torch.log(torch.tensor([0.25, 0.75])), "two outcomes: π = (1/2, 1/2), π_ref = (1/4, 3/4)"),
        (torch.randn(5, generator=g[0], dtype=torch.float64), torch.randn(5, generator=g[1], dtype=torch.float64),
         "one categorical of 5 outcomes, float64"),
        (torch.randn(3, 7, generator=g[2], dtype=torch.float64), torch.randn(3, 7, generator=g[3], dtype=torch.float64),
         "3 token distributions over a vocabulary of 7: one gradient per row"),
        (2.0 * torch.randn(2, 4, 6, generator=g[4]), torch.zeros(2, 4, 6), "shaped (B, T, V), float32, a uniform reference"),
        (torch.tensor([3.0, 0.0, -3.0], dtype=torch.float64), torch.tensor([3.0, 0.0, -3.0], dtype=torch.float64) + 0.7,
         "the reference's logits shifted by a constant: the same distribution, gradient 0"),
    ]


_HINTS = {"forward": "your penalty follows the FORWARD KL(π_ref‖π): its expected gradient is π − π_ref (k3's)",
          "reverse": "that is the REVERSE KL's gradient π ⊙ (log π − log π_ref − KL): the gradient of the value k3 "
                     "estimates, not the expected gradient of k3 differentiated in the loss"}


def _compare(got, expected) -> str | None:
    """The default comparison, plus a diagnosis: a zero gradient, or the other KL direction's gradient."""
    why = differ(got, expected, atol=1e-6, rtol=1e-5)
    if why is None or not isinstance(got, torch.Tensor) or got.shape != expected.shape:
        return why
    other, name = _OTHER.get(id(expected), (None, None))
    g = got.detach().double().cpu()
    scale = float(expected.abs().max()) or 1.0
    if float(g.abs().max()) <= 1e-6 * scale:
        return why + "; your expected gradient is 0 — like k1 = log π − log π_ref in the loss: E[∇ log π] = 0"
    if other is not None and torch.allclose(g, other.double().cpu(), atol=1e-6, rtol=1e-5):
        return why + "; " + _HINTS[name]
    return why


def _cases(gen: torch.Generator, direction: str, note: str = "") -> list[Case]:
    other = "reverse" if direction == "forward" else "forward"
    cases = []
    for z, r, what in _pairs(gen):
        want = kl_gradient(z, r, direction)
        _OTHER[id(want)] = (kl_gradient(z, r, other), other)
        cases.append(Case((z, r), expected=want, note=what + note))
    return cases


@exercise("07.k3_expected_gradient", points=2, kind="predict", compare=_compare)
def k3_expected_gradient_cases(gen: torch.Generator) -> list[Case]:
    return _cases(gen, "forward")


@exercise("07.reverse_kl_penalty", points=2, kind="debug", compare=_compare)
def reverse_kl_penalty_cases(gen: torch.Generator) -> list[Case]:
    return _cases(gen, "reverse", "; the reverse KL's gradient is π ⊙ (log π − log π_ref − KL)")
