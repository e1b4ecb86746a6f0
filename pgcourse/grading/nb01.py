"""Exercise checks of notebook 01 (full return, REINFORCE).

Every expected value is computed by the package's reference code:
``01.discounted_return`` by :func:`pgcourse.returns.discounted_return`, ``01.surrogate_loss`` by
:func:`pgcourse.estimators.pg_loss` (its value and, by autograd, its gradient with respect to
``logp``), ``01.softmax_score`` by :func:`pgcourse.policies.softmax_score`.
"""
from __future__ import annotations

from typing import Any

import torch

from ..estimators import pg_loss
from ..policies import softmax_score
from ..returns import discounted_return
from . import Case, differ, exercise


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---- 01.discounted_return ----------------------------------------------------------------------

@exercise("01.discounted_return")
def discounted_return_cases() -> list[Case]:
    """R(τ) = Σ_k γ^k r_k of each step's whole episode, with several episodes per row."""
    def case(rewards, gamma, dones=None, note=""):
        kwargs = {"gamma": gamma, "dones": dones}
        return Case((rewards,), kwargs, discounted_return(rewards, gamma, dones), note)

    g = _gen(1)
    r_batch = torch.randn(4, 12, generator=g)
    d_batch = torch.rand(4, 12, generator=g) < 0.25
    r3 = torch.randint(0, 3, (2, 3, 6), generator=g).float()
    d3 = torch.rand(2, 3, 6, generator=g) < 0.3
    return [
        case(torch.tensor([1.0, 2.0, 3.0]), 0.5, None, "one episode, no dones: 1 + 0.5*2 + 0.25*3 at every step"),
        case(torch.tensor([[1.0, 0.0, 2.0, 1.0], [0.0, 0.0, 0.0, 5.0]]), 1.0, None, "two rows, gamma = 1"),
        case(torch.ones(1, 5), 0.9, torch.tensor([[False, True, False, False, True]]),
             "two episodes in one row: the discount restarts at each episode's first step"),
        case(torch.tensor([[3.0, 1.0, 4.0, 1.0, 5.0, 9.0]]), 0.0, torch.tensor([[False, False, True, False, True, False]]),
             "gamma = 0: each step gets the first reward of its episode"),
        case(torch.tensor([[1.0, 1.0, 1.0, 1.0]]), 0.5, torch.tensor([[True, True, True, True]]),
             "every step is an episode of its own"),
        case(r_batch, 0.99, d_batch, "a (4, 12) batch with random episode boundaries"),
        case(r3.double(), 0.8, d3, "time is the LAST axis of a (2, 3, 6) float64 batch"),
    ]


# ---- 01.surrogate_loss -------------------------------------------------------------------------

class _LossAndGrad(dict):
    """What a surrogate-loss case expects: the loss and d loss / d logp (shown as a dict in messages)."""

    logp: torch.Tensor   # the input logp, to find it among the leaves of the learner's graph
    weights: torch.Tensor


def _expected_surrogate(logp: torch.Tensor, weights: torch.Tensor, mask: torch.Tensor | None) -> _LossAndGrad:
    lp = logp.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        loss = pg_loss(lp, weights, mask)
        (grad,) = torch.autograd.grad(loss, lp)
    out = _LossAndGrad(loss=loss.detach(), dloss_dlogp=grad)
    out.logp, out.weights = logp.detach(), weights.detach()
    return out


def _leaves(t: torch.Tensor) -> list[torch.Tensor]:
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


def compare_surrogate(got: Any, expected: _LossAndGrad) -> str | None:
    """The value must match pg_loss, d/d logp must match its autograd gradient, and no gradient may reach weights."""
    if not isinstance(got, torch.Tensor):
        return f"expected a torch.Tensor (a scalar loss), got {type(got).__name__}"
    if got.dim() != 0:
        return f"the loss must be a scalar (0-dim tensor), got shape {tuple(got.shape)}"
    why = differ(got.detach(), expected["loss"])
    if why:
        return f"loss value: {why}"
    if got.grad_fn is None:
        return "the loss carries no gradient: keep logp in the autograd graph (don't detach it or convert to float)"
    leaves = _leaves(got)
    logp = [x for x in leaves if _same(x, expected.logp)]
    if not logp:
        return "the loss does not depend on logp through autograd"
    weights = [x for x in leaves if x is not logp[0] and x.requires_grad and _same(x, expected.weights)]
    grads = torch.autograd.grad(got, [logp[0], *weights], allow_unused=True, retain_graph=True)
    g = grads[0] if grads[0] is not None else torch.zeros_like(logp[0])
    why = differ(g, expected["dloss_dlogp"])
    if why:
        return f"gradient with respect to logp: {why}"
    for gw in grads[1:]:
        if gw is not None and bool((gw != 0).any()):
            return "gradient reaches the weights: treat them as constants (weights.detach())"
    return None


@exercise("01.surrogate_loss", compare=compare_surrogate)
def surrogate_loss_cases() -> list[Case]:
    """L = −(1/N) Σ_i Σ_t m_t log π(a_t|s_t) · stopgrad(Ψ_t), compared in value and in d L / d logp."""
    def case(logp, weights, mask=None, note=""):
        logp = logp.detach().requires_grad_(True)
        return Case((logp, weights), {"mask": mask}, _expected_surrogate(logp, weights, mask), note)

    g = _gen(2)
    lp = -torch.rand(8, 20, generator=g, dtype=torch.float64) * 2
    w = torch.randn(8, 20, generator=g, dtype=torch.float64) * 10
    lengths = torch.randint(1, 21, (8, 1), generator=g)
    m = torch.arange(20) < lengths
    pad_lp = torch.tensor([[-0.1, -0.7, float("-inf")], [-1.2, float("-inf"), float("-inf")]])
    return [
        case(torch.tensor([[-0.5, -1.0, -0.2], [-2.0, -0.1, -0.3]]), torch.tensor([[3.0, 3.0, 3.0], [1.0, 1.0, 1.0]]),
             None, "two episodes (rows), no mask: divide by the number of rows, 2"),
        case(torch.tensor([-0.5, -1.0, -0.2, -0.7]), torch.tensor([2.0, 2.0, 2.0, 2.0]), None,
             "one episode shaped (T,): N = 1"),
        case(torch.tensor([[-0.5, -1.0, 0.0], [-2.0, 0.0, 0.0]]), torch.tensor([[1.0, 1.0, 9.0], [4.0, 9.0, 9.0]]),
             torch.tensor([[True, True, False], [True, False, False]]), "padded steps (mask False) count for nothing"),
        case(pad_lp, torch.tensor([[2.0, 2.0, 0.0], [-1.0, 0.0, 0.0]]), torch.tensor([[True, True, False], [True, False, False]]),
             "padded steps hold log 0 = -inf: select with torch.where, since -inf * 0 is nan"),
        case(torch.tensor([[-0.3, -0.6], [-0.9, -0.4]]), torch.tensor([[1.5, -0.5], [2.0, 1.0]], requires_grad=True),
             None, "weights that require grad (say, from a critic) must get no gradient: detach them"),
        case(lp, w, m, "an (8, 20) float64 batch with random episode lengths"),
    ]


# ---- 01.softmax_score --------------------------------------------------------------------------

@exercise("01.softmax_score")
def softmax_score_cases() -> list[Case]:
    """∇_θ log π(a|s) of the tabular softmax: row s is e_a − π(·|s), every other row is 0."""
    def case(logits, state, action, note=""):
        return Case((logits, state, action), {}, softmax_score(logits, state, action), note)

    g = _gen(3)
    return [
        case(torch.zeros(2, 2, dtype=torch.float64), 0, 1, "uniform policy: row 0 is (-1/2, 1/2)"),
        case(torch.randn(3, 4, generator=g, dtype=torch.float64), 2, 0, "3 states, 4 actions: rows 0 and 1 are 0"),
        case(torch.randn(5, 3, generator=g, dtype=torch.float64), 0, 2, "5 states, 3 actions"),
        case(torch.tensor([[1000.0, 999.0, 0.0], [0.0, 1.0, 2.0]], dtype=torch.float64), 0, 1,
             "large logits: exp(1000) overflows, use torch.softmax (or subtract the max)"),
        case(torch.randn(4, 2, generator=g), 3, 1, "float32 logits: return float32"),
    ]
