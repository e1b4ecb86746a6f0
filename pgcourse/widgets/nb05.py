r"""Widgets of notebook 05 (PPO).

``05.clip``: the clip range ε and a ratio ρ → PPO's clipped objective
:math:`\min(\rho A, \operatorname{clip}(\rho, 1-\epsilon, 1+\epsilon)A)` against ρ for A = +1 and A = −1
(:func:`pgcourse.lessons.nb05.plot_clip_objective`), with the point ρ marked on both curves and
its gradient :math:`\partial/\partial\rho` printed: 0 where the clip is active.
"""
from __future__ import annotations

import torch

from ..lessons.nb05 import plot_clip_objective
from ..ppo import clipped_objective
from . import new_figure, register


@register("05.clip", clip_eps=("float", 0.2, 0.05, 0.5, 0.05), ratio=("float", 1.3, 0.1, 1.9, 0.05))
def clip_widget(clip_eps: float = 0.2, ratio: float = 1.3):
    """The clipped objective for A = ±1 at clip range ``clip_eps``, with the sample ratio ``ratio`` marked."""
    # fixed margins instead of the constrained layout: half the redraw time
    fig = new_figure(figsize=(9, 3.6), layout=None)
    fig.subplots_adjust(left=0.075, right=0.985, bottom=0.15, top=0.91, wspace=0.25)
    axes = fig.subplots(1, 2)
    plot_clip_objective(axes, float(clip_eps), tex=False)
    for ax, A in zip(axes, (1.0, -1.0)):
        rho = torch.tensor(float(ratio), dtype=torch.float64, requires_grad=True)
        obj = clipped_objective(rho, torch.tensor(A, dtype=torch.float64), float(clip_eps))
        (grad,) = torch.autograd.grad(obj, rho)
        obj = obj.detach()
        ax.plot([float(ratio)], [float(obj)], "o", color="k", ms=8, zorder=6)
        ax.annotate(f"ρ = {float(ratio):.2f}: objective {float(obj):+.2f}, gradient {float(grad):+.2f}"
                    + ("  (clipped)" if float(grad) == 0 else ""),
                    xy=(0.98, 0.04 if A > 0 else 0.93), xycoords="axes fraction", fontsize=8, ha="right")
    return fig
