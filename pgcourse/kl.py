r"""Which KL does a KL treatment follow? Exact expected gradients on categoricals.

The policy is a categorical :math:`\pi = \operatorname{softmax}(z)` over K outcomes (a token), the
reference :math:`\pi_{\text{ref}}` is fixed. There are two KL divergences, with gradients in the logits

.. math:: \nabla_z \mathrm{KL}(\pi\,\|\,\pi_{\text{ref}}) = \pi \odot \big(\log\pi - \log\pi_{\text{ref}}
          - \mathrm{KL}(\pi\,\|\,\pi_{\text{ref}})\big) \quad\text{(reverse)},\qquad
          \nabla_z \mathrm{KL}(\pi_{\text{ref}}\,\|\,\pi) = \pi - \pi_{\text{ref}} \quad\text{(forward)}.

A *treatment* is how a per-sample KL estimate :math:`k(x)`, :math:`x\sim\pi`, enters an update. Its
expected gradient is computed here exactly, by summing over the K outcomes (no sampling):

* ``"k1_reward"``: :math:`k_1 = \log\pi(x) - \log\pi_{\text{ref}}(x)` detached, a penalty on the reward, so
  it enters through the score function: :math:`\mathbb E_\pi[k_1(x)\,\nabla\log\pi(x)]
  = \nabla\mathrm{KL}(\pi\|\pi_{\text{ref}})` exactly (REVERSE KL; PPO-RLHF's KL-in-the-reward);
* ``"k3_loss"``: :math:`k_3 = e^{\log\pi_{\text{ref}}(x)-\log\pi(x)} - (\log\pi_{\text{ref}}(x)-\log\pi(x)) - 1`
  in the loss, differentiated through :math:`\log\pi(x)` with the sample held fixed (GRPO):
  :math:`\mathbb E_\pi[\nabla k_3(x)] = \sum_x (\pi(x) - \pi_{\text{ref}}(x))\nabla\log\pi(x)
  = \nabla\mathrm{KL}(\pi_{\text{ref}}\|\pi)` exactly (FORWARD KL), although
  :math:`\mathbb E_\pi[k_3]` is the reverse KL's value;
* ``"reverse_kl"``: the exact :math:`\mathrm{KL}(\pi\|\pi_{\text{ref}})`, differentiated by autograd.

And three more, for contrast: ``"k1_loss"`` (:math:`\mathbb E_\pi[\nabla k_1] = \mathbb E_\pi[\nabla\log\pi] = 0`:
no KL at all), ``"k2_loss"`` (:math:`\nabla\tfrac12(\log\pi - \log\pi_{\text{ref}})^2` has the REVERSE KL's
expected gradient) and ``"k3_reward"`` (:math:`\mathbb E_\pi[k_3\nabla\log\pi]`: neither KL).

Every function takes logits shaped (..., K) (any leading axes: a batch of token positions of a
language model) and works on their device; gradients are with respect to the policy's logits.
:func:`expected_surrogate` is differentiable upstream too, so the same identities hold for a model's
parameters (:math:`\nabla_\theta` = the chain rule through the logits).
"""
from __future__ import annotations

from typing import Callable, Union

import torch

from .device import generator as make_generator
from .ppo import kl_k3 as _k3
from .validate import float_tensor, one_of, positive_float, positive_int, same_shape

#: the three treatments of the lesson
TREATMENTS = ("k1_reward", "k3_loss", "reverse_kl")
#: three more, for contrast
CONTRASTS = ("k1_loss", "k2_loss", "k3_reward")
ALL_TREATMENTS = TREATMENTS + CONTRASTS
DIRECTIONS = ("reverse", "forward")
#: which KL each treatment's expected gradient equals, exactly (None: neither)
FOLLOWS = {"k1_reward": "reverse", "k3_loss": "forward", "reverse_kl": "reverse",
           "k1_loss": "zero", "k2_loss": "reverse", "k3_reward": None}


def _pair(logits, ref_logits) -> tuple[torch.Tensor, torch.Tensor]:
    logits = float_tensor(logits, "logits")
    ref_logits = float_tensor(ref_logits, "ref_logits")
    same_shape(ref_logits, "ref_logits", logits, "logits")
    if logits.shape[-1] < 2:
        raise ValueError(f"logits needs at least 2 outcomes on its last axis, got shape {tuple(logits.shape)}")
    if ref_logits.device != logits.device:
        raise ValueError(f"ref_logits is on {ref_logits.device} but logits on {logits.device}; they must match")
    return logits, ref_logits


def reverse_kl(logits: torch.Tensor, ref_logits: torch.Tensor) -> torch.Tensor:
    r""":math:`\mathrm{KL}(\pi\|\pi_{\text{ref}}) = \sum_x \pi(x)\log\frac{\pi(x)}{\pi_{\text{ref}}(x)}` per distribution, shaped (...)."""
    logits, ref_logits = _pair(logits, ref_logits)
    lp, lr = torch.log_softmax(logits, -1), torch.log_softmax(ref_logits, -1)
    return (lp.exp() * (lp - lr)).sum(-1)


def forward_kl(logits: torch.Tensor, ref_logits: torch.Tensor) -> torch.Tensor:
    r""":math:`\mathrm{KL}(\pi_{\text{ref}}\|\pi) = \sum_x \pi_{\text{ref}}(x)\log\frac{\pi_{\text{ref}}(x)}{\pi(x)}`, shaped (...)."""
    logits, ref_logits = _pair(logits, ref_logits)
    lp, lr = torch.log_softmax(logits, -1), torch.log_softmax(ref_logits, -1)
    return (lr.exp() * (lr - lp)).sum(-1)


def kl_gradient(logits: torch.Tensor, ref_logits: torch.Tensor, direction: str = "reverse") -> torch.Tensor:
    r"""The closed-form gradient in the logits, shaped (..., K): ``"reverse"``
    :math:`\pi\odot(\log\pi - \log\pi_{\text{ref}} - \mathrm{KL}(\pi\|\pi_{\text{ref}}))`, ``"forward"`` :math:`\pi - \pi_{\text{ref}}`."""
    logits, ref_logits = _pair(logits, ref_logits)
    direction = one_of(direction, "direction", DIRECTIONS)
    lp, lr = torch.log_softmax(logits, -1), torch.log_softmax(ref_logits, -1)
    p = lp.exp()
    if direction == "forward":
        return p - lr.exp()
    return p * (lp - lr - (p * (lp - lr)).sum(-1, keepdim=True))


Treatment = Union[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]


def _treatment(treatment) -> Treatment:
    """A treatment's name, or a callable ``penalty(logp, ref_logp)``: a per-token penalty put in the loss."""
    return treatment if callable(treatment) else one_of(treatment, "treatment", ALL_TREATMENTS)


def _per_sample(lp: torch.Tensor, lr: torch.Tensor, treatment) -> torch.Tensor:
    r"""The surrogate whose gradient is one sample's contribution, at the log-probs ``lp`` of the samples.

    With :math:`\log r = \log\pi_{\text{ref}} - \log\pi`: k1 = :math:`-\log r`, k2 = :math:`\tfrac12(\log r)^2`,
    k3 = :math:`r - 1 - \log r` (the estimators of :mod:`pgcourse.grpo`, here without their input checks)."""
    if callable(treatment):
        out = treatment(lp, lr)
        if not isinstance(out, torch.Tensor) or out.shape != lp.shape:
            raise ValueError(f"the penalty must return a tensor shaped like logp {tuple(lp.shape)}, one value per "
                             f"token, got {tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__}")
        return out
    log_r = lr - lp
    k = {"k1": -log_r, "k2": 0.5 * log_r ** 2, "k3": _k3(log_r)}[treatment[:2]]
    return k.detach() * lp if treatment.endswith("_reward") else k


def expected_surrogate(logits: torch.Tensor, ref_logits: torch.Tensor, treatment: Treatment) -> torch.Tensor:
    r"""A tensor shaped (...) whose gradient (with respect to ``logits`` and whatever they came from) is the
    treatment's exact expected gradient, :math:`\sum_x \operatorname{sg}(\pi(x))\,\nabla\ell(x)` with
    :math:`\ell(x)` the treatment's per-sample surrogate (``"reverse_kl"``: the exact KL itself). A callable
    ``penalty(logp, ref_logp)`` is a per-token penalty put in the loss, differentiated with the samples fixed.

    Only its gradient means something; its value is not a KL. ``ref_logits`` is treated as a constant.
    """
    logits, ref_logits = _pair(logits, ref_logits)
    treatment = _treatment(treatment)
    return _surrogate(logits, torch.log_softmax(ref_logits.detach(), -1), treatment)


def _surrogate(logits: torch.Tensor, lr: torch.Tensor, treatment: str) -> torch.Tensor:
    lp = torch.log_softmax(logits, -1)
    if treatment == "reverse_kl":
        return (lp.exp() * (lp - lr)).sum(-1)
    return (lp.exp().detach() * _per_sample(lp, lr, treatment)).sum(-1)


def _grad(z: torch.Tensor, lr: torch.Tensor, treatment: str) -> torch.Tensor:
    z = z.detach().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(_surrogate(z, lr, treatment).sum(), z)
    return grad


def expected_gradient(logits: torch.Tensor, ref_logits: torch.Tensor, treatment: Treatment) -> torch.Tensor:
    """The treatment's exact expected gradient in the logits, shaped like ``logits`` (autograd of
    :func:`expected_surrogate`; the caller's graph is left alone)."""
    logits, ref_logits = _pair(logits, ref_logits)
    treatment = _treatment(treatment)
    return _grad(logits, torch.log_softmax(ref_logits.detach(), -1), treatment)


def penalty_gradient(penalty: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Callable:
    r"""``grad(logits, ref_logits)``: the exact expected gradient, in the logits, of the per-token ``penalty(logp,
    ref_logp)`` put in the loss with the samples held fixed (:func:`expected_gradient` with it as the
    treatment). A learner's penalty goes in; which KL it follows comes out."""
    if not callable(penalty):
        raise TypeError(f"penalty must be a function penalty(logp, ref_logp), got {type(penalty).__name__}")

    def grad(logits: torch.Tensor, ref_logits: torch.Tensor) -> torch.Tensor:
        return expected_gradient(logits, ref_logits, penalty)
    grad.__name__ = f"expected_gradient_of_{getattr(penalty, '__name__', 'penalty')}"
    return grad


def sample_gradients(logits: torch.Tensor, ref_logits: torch.Tensor, treatment: Treatment, n: int,
                     seed: int | torch.Generator = 0) -> torch.Tensor:
    r"""``n`` single-sample gradient estimates, shaped (n, ..., K): draw :math:`x\sim\pi` and differentiate the
    treatment's per-sample surrogate :math:`\ell(x)`. Their mean tends to :func:`expected_gradient`."""
    logits, ref_logits = _pair(logits, ref_logits)
    treatment = _treatment(treatment)
    if treatment == "reverse_kl":
        raise ValueError("treatment 'reverse_kl' is exact: it has no samples (use expected_gradient)")
    n = positive_int(n, "n")
    g = make_generator(seed, logits.device)
    K = logits.shape[-1]
    z = logits.detach().expand(n, *logits.shape).clone().requires_grad_(True)   # one copy per sample
    lr_all = torch.log_softmax(ref_logits.detach(), -1).expand(n, *logits.shape)
    with torch.no_grad():
        p = torch.softmax(logits.detach(), -1).reshape(-1, K)
        x = torch.multinomial(p.expand(n, *p.shape).reshape(-1, K), 1, replacement=True, generator=g)
        x = x.view(n, *logits.shape[:-1], 1)
    with torch.enable_grad():
        lp = torch.log_softmax(z, -1).gather(-1, x)
        (grad,) = torch.autograd.grad(_per_sample(lp, lr_all.gather(-1, x), treatment).sum(), z)
    return grad


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """The cosine of the angle between two gradients (flattened); 0 when either is 0."""
    a, b = a.flatten().double(), b.flatten().double()
    den = float(a.norm() * b.norm())
    return float(a @ b) / den if den > 0 else 0.0


def which_kl(grad: torch.Tensor, logits: torch.Tensor, ref_logits: torch.Tensor,
             rtol: float | None = None) -> str | None:
    """``"reverse"``, ``"forward"``, ``"zero"`` or None: which exact gradient ``grad`` equals, to ``rtol`` of the
    gradients' size (default: 1e-9 in float64, 1e-4 in lower precision)."""
    grad = float_tensor(grad, "grad")
    same_shape(grad, "grad", logits, "logits")
    if rtol is None:
        rtol = 1e-9 if grad.dtype == torch.float64 else 1e-4
    scale = max(float(kl_gradient(logits, ref_logits, d).abs().max()) for d in DIRECTIONS)
    if scale == 0.0:
        raise ValueError("logits and ref_logits give the same distribution: every KL gradient is 0")
    if float(grad.abs().max()) <= rtol * scale:
        return "zero"
    for d in DIRECTIONS:
        if float((grad - kl_gradient(logits, ref_logits, d)).abs().max()) <= rtol * scale:
            return d
    return None


def gradient_table(logits: torch.Tensor, ref_logits: torch.Tensor,
                   treatments: tuple[str, ...] = ALL_TREATMENTS) -> list[dict]:
    """One row per treatment: its exact expected gradient (``grad``), the largest difference from the reverse
    and the forward KL's gradients (``err_reverse``, ``err_forward``), the cosines with them, and ``follows``."""
    logits, ref_logits = _pair(logits, ref_logits)
    exact = {d: kl_gradient(logits, ref_logits, d) for d in DIRECTIONS}
    rows = []
    for t in treatments:
        grad = expected_gradient(logits, ref_logits, t)
        follows = which_kl(grad, logits, ref_logits)
        cos = {d: 0.0 if follows == "zero" else cosine(grad, exact[d]) for d in DIRECTIONS}  # rounding noise has no angle
        rows.append({"treatment": t, "grad": grad,
                     "err_reverse": float((grad - exact["reverse"]).abs().max()),
                     "err_forward": float((grad - exact["forward"]).abs().max()),
                     "cos_reverse": cos["reverse"], "cos_forward": cos["forward"], "follows": follows})
    return rows


# ---- where a treatment leads: the optimum of E_pi[r] - beta * KL ----------------------------------

def regularized_optimum(reward: torch.Tensor, ref_logits: torch.Tensor, beta: float,
                        direction: str = "reverse") -> torch.Tensor:
    r"""The maximizer over :math:`\pi` of :math:`\mathbb E_\pi[r] - eta\,\mathrm{KL}`, as probabilities (..., K).

    ``"reverse"``: :math:`\pi^\star \propto \pi_{	ext{ref}}\,e^{r/eta}` (mode-seeking, the RLHF optimum);
    ``"forward"``: :math:`\pi^\star(x) = eta\,\pi_{	ext{ref}}(x)/(\lambda - r(x))` with :math:`\lambda > \max r`
    set by :math:`\sum_x\pi^\star(x) = 1` (found by bisection on :math:`(\max r, \max r + eta]`): it never
    drops an outcome the reference keeps.
    """
    reward, ref_logits = _pair(reward, ref_logits)
    beta = positive_float(beta, "beta")
    direction = one_of(direction, "direction", DIRECTIONS)
    lr = torch.log_softmax(ref_logits, -1)
    if direction == "reverse":
        return torch.softmax(lr + reward / beta, -1)
    ref = lr.exp().double()
    r = reward.double()
    top = r.max(-1, keepdim=True).values
    lo, hi = top, top + beta
    for _ in range(64):  # the total mass is decreasing in lambda: 1 at the root; 2^-64 of beta: exact in float64
        mid = 0.5 * (lo + hi)
        heavy = (beta * ref / (mid - r)).sum(-1, keepdim=True) > 1
        lo, hi = torch.where(heavy, mid, lo), torch.where(heavy, hi, mid)
    p = beta * ref / (hi - r)
    return (p / p.sum(-1, keepdim=True)).to(reward.dtype)


def ascend(reward: torch.Tensor, ref_logits: torch.Tensor, beta: float, treatment: str | None,
           steps: int = 3000, lr: float = 1.0, logits: torch.Tensor | None = None) -> torch.Tensor:
    r"""Exact gradient ascent on :math:`\mathbb E_\pi[r]` with the treatment's expected KL gradient times
    ``beta`` subtracted (``treatment=None``: no KL), from ``logits`` (default: the reference's). Returns the
    final logits; where the ascent stops is where the treatment leads."""
    reward, ref_logits = _pair(reward, ref_logits)
    beta = positive_float(beta, "beta", allow_zero=True)
    steps = positive_int(steps, "steps")
    lr = positive_float(lr, "lr")
    if treatment is not None:
        treatment = _treatment(treatment)
    z = (ref_logits if logits is None else _pair(logits, ref_logits)[0]).detach().clone()
    log_ref = torch.log_softmax(ref_logits.detach(), -1)
    for _ in range(steps):
        p = torch.softmax(z, -1)
        step = p * (reward - (p * reward).sum(-1, keepdim=True))   # the exact gradient of E_pi[r] in the logits
        if treatment is not None and beta > 0:
            step = step - beta * _grad(z, log_ref, treatment)
        z = z + lr * step
    return z
