"""Exercises of notebook 07 (GRPO: what goes wrong); expected outputs come from :mod:`pgcourse.kl`.

* ``07.k3_expected_gradient`` (predict): the exact expected gradient, in the policy's logits, of GRPO's
  k3 term put in the loss, :math:`\\pi - \\pi_{\\text{ref}}` (the forward KL's gradient).
* ``07.reverse_kl_penalty`` (debug): fix a per-token penalty ``kl_penalty(logp, ref_logp)`` so that, put in
  the loss, its expected gradient is the REVERSE KL's. Each case calls it on the log-probabilities of EVERY
  outcome (``logp`` a leaf that requires grad); the comparison differentiates what it returns, weighted
  by the (detached) probabilities, and maps the result through the log-softmax to the logits: the exact
  expected gradient of the penalty (what :func:`pgcourse.kl.expected_gradient` computes for a callable).
"""
from __future__ import annotations

import torch

from ..kl import kl_gradient
from . import Case, derive, differ, exercise
from .losses import leaves

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


def _leaf(t: torch.Tensor) -> torch.Tensor | None:
    """The leaf tensor a result was computed from (the case's ``logp``), found in its autograd graph."""
    found = leaves(t)
    return found[0] if found else None


def penalty_expected_gradient(penalty_values) -> torch.Tensor | str:
    r"""From the penalties :math:`\ell_x` a learner's function returned for every outcome x (computed from the
    leaf ``logp``): :math:`\nabla_z \sum_x \operatorname{sg}(\pi_x)\,\ell_x`, with :math:`u = \partial/\partial\log\pi` and
    :math:`\partial\log\pi_x/\partial z_k = \delta_{xk} - \pi_k`: :math:`u - \pi \sum_x u_x`. A string says why not."""
    if not isinstance(penalty_values, torch.Tensor):
        return f"kl_penalty must return a tensor (one penalty per token), got {type(penalty_values).__name__}"
    lp = _leaf(penalty_values) if penalty_values.requires_grad else None
    if lp is None:
        return "zero"
    if penalty_values.shape != lp.shape:
        return f"kl_penalty must return one value per token, shaped like logp {tuple(lp.shape)}, got {tuple(penalty_values.shape)}"
    pi = lp.detach().exp()
    (u,) = torch.autograd.grad((pi * penalty_values).sum(), lp, allow_unused=True)
    u = torch.zeros_like(pi) if u is None else u
    return u - pi * u.sum(-1, keepdim=True)


def _compare_penalty(got, expected) -> str | None:
    """Compare the expected gradient of the learner's penalties (``got``: the penalties) with ``expected``."""
    g = penalty_expected_gradient(got)
    if isinstance(g, str) and g != "zero":
        return g
    g = torch.zeros_like(expected) if isinstance(g, str) else g
    why = _compare(g, expected)
    if why is None:
        return None
    with torch.no_grad():
        shown = repr(g.detach().cpu()) if g.numel() <= 16 else f"a tensor of shape {tuple(g.shape)}"
    return f"{why} (\"expected\" is a gradient in the logits; \"got\" shows your penalties, whose expected gradient is {shown})"


@exercise("07.reverse_kl_penalty", points=2, kind="debug", compare=_compare_penalty)
def reverse_kl_penalty_cases(gen: torch.Generator) -> list[Case]:
    cases = []
    for case in _cases(gen, "reverse", "; its expected gradient must be the reverse KL's, π ⊙ (log π − log π_ref − KL)"):
        z, r = case.args
        logp = torch.log_softmax(z, -1).detach().requires_grad_(True)
        cases.append(Case((logp, torch.log_softmax(r, -1)), expected=case.expected, note=case.note))
    return cases
