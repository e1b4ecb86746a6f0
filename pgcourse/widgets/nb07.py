r"""Widgets of notebook 07 (GRPO: what goes wrong).

``07.kl_direction``: a policy moved ``shift`` along a reward away from its reference,
:math:`\pi \propto \pi_{\text{ref}}\,e^{\text{shift}\cdot r}`: the exact expected gradients of k1 as a reward, k3 in
the loss and the exact reverse KL (with both KLs' gradients marked); and for the KL weight ``beta``
the two optima of :math:`\mathbb E_\pi[r] - \beta\,\mathrm{KL}` — where the reverse KL (k1 as a reward)
leads and where the forward KL (k3 in the loss) leads.
"""
from __future__ import annotations

from ..device import torch_threads
from ..lessons.nb07 import kl_direction as lesson
from . import new_figure, register


@register("07.kl_direction", shift=("float", 1.5, 0.0, 4.0, 0.25), beta=("log", 0.3, -1.3, 0.5, 0.1))
@torch_threads(1)
def kl_direction_widget(shift: float = 1.5, beta: float = 0.3):
    """Left: the treatments' expected gradients at the moved policy; right: the two regularized optima at ``beta``."""
    reward, ref = lesson.bandit()
    logits = ref + shift * reward
    fig = new_figure(figsize=(10, 3.4), layout=None)   # a fixed layout: half the drawing time of a constrained one
    a, b = fig.subplots(1, 2)
    fig.subplots_adjust(left=0.08, right=0.99, bottom=0.2, top=0.9, wspace=0.22)
    lesson.plot_gradients(a, logits, ref)
    a.set_title(f"π ∝ π_ref·exp({shift:g}·r): k1-as-reward = ∇KL(π‖ref), k3-in-loss = ∇KL(ref‖π)", fontsize=9)
    lesson.plot_optima(b, beta, reward, ref)
    return fig
