"""Checking a learner's loss function: its value, and its gradient with respect to ``logp`` by autograd.

A loss exercise (the surrogate of notebook 01, PPO's clipped surrogate of notebook 05) is right
only if the learner's loss has the reference value AND back-propagates the reference gradient
into ``logp`` — and, where some inputs are constants (weights, advantages), no gradient into them.
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from . import differ


class LossAndGrad(dict):
    """What a loss case expects: ``loss`` and ``dloss_dlogp`` (shown as a dict in messages).

    ``logp`` is the input whose gradient is checked; ``constants`` are inputs that must get none.
    """

    logp: torch.Tensor
    constants: dict[str, torch.Tensor]


def expected_loss_and_grad(loss_fn: Callable[..., torch.Tensor], logp: torch.Tensor, *args: Any,
                           constants: dict[str, torch.Tensor] | None = None, **kwargs: Any) -> LossAndGrad:
    """The reference loss ``loss_fn(logp, *args, **kwargs)`` and its gradient with respect to ``logp``."""
    lp = logp.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        loss = loss_fn(lp, *args, **kwargs)
        (grad,) = torch.autograd.grad(loss, lp)
    out = LossAndGrad(loss=loss.detach(), dloss_dlogp=grad)
    out.logp = logp.detach()
    out.constants = {k: v.detach() for k, v in (constants or {}).items()}
    return out


def leaves(t: torch.Tensor) -> list[torch.Tensor]:
    """The leaf tensors that ``t``'s autograd graph reaches."""
    seen, stack, out = set(), [t.grad_fn], []
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        if hasattr(fn, "variable"):
            out.append(fn.variable)
        stack.extend(nxt for nxt, _ in fn.next_functions)
    return out


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and bool(torch.equal(a.detach().cpu().double().nan_to_num(),
                                                   b.detach().cpu().double().nan_to_num()))


def compare_loss_and_grad(got: Any, expected: LossAndGrad, grad_hint: str = "") -> str | None:
    """None when ``got`` matches the value and the logp-gradient of ``expected`` and no constant gets a gradient."""
    if not isinstance(got, torch.Tensor):
        return f"expected a torch.Tensor (a scalar loss), got {type(got).__name__}"
    if got.dim() != 0:
        return f"the loss must be a scalar (0-dim tensor), got shape {tuple(got.shape)}"
    why = differ(got.detach(), expected["loss"])
    if why:
        return f"loss value: {why}"
    if got.grad_fn is None:
        return "the loss carries no gradient: keep logp in the autograd graph (don't detach it or convert to float)"
    found = leaves(got)
    logp = [x for x in found if _same(x, expected.logp)]
    if not logp:
        return "the loss does not depend on logp through autograd"
    consts = [(name, x) for name, c in expected.constants.items()
              for x in found if x is not logp[0] and x.requires_grad and _same(x, c)]
    grads = torch.autograd.grad(got, [logp[0], *(x for _, x in consts)], allow_unused=True, retain_graph=True)
    g = grads[0] if grads[0] is not None else torch.zeros_like(logp[0])
    why = differ(g, expected["dloss_dlogp"])
    if why:
        return f"gradient with respect to logp{grad_hint}: {why}"
    for (name, _), gc in zip(consts, grads[1:]):
        if gc is not None and bool((gc != 0).any()):
            return f"gradient reaches the {name}: treat them as constants ({name}.detach())"
    return None
