r"""Widgets of notebook 04 (value functions and advantage).

``04.variance``: λ, the batch size and the critic → bias², variance and their sum of the
gradient estimate with :math:`\Psi_t = \gamma^t \hat A^{\text{GAE}(\gamma,\lambda)}_t` against the exact
gradient, over the λ grid of :func:`pgcourse.lessons.nb04.lambda_sweep` (measured once per critic
and cached; the slider's λ is marked). The variance of a batch of B independent episodes is the
measured one rescaled by 16/B.
"""
from __future__ import annotations

import math

from ..device import torch_threads
from ..lessons import nb04 as lesson
from . import new_figure, register

_LOG2 = math.log10(2.0)
CRITICS = {"learned from 20 episodes": "learned", "exact V": "exact"}


@register("04.variance", lam=("float", 0.95, 0.0, 1.0, 0.05), batch_size=("log", 64, 0.0, 10 * _LOG2, _LOG2),
          critic=("choice", "learned from 20 episodes", list(CRITICS)))
def gae_bias_variance(lam: float = 0.95, batch_size: float = 64, critic: str = "learned from 20 episodes"):
    """Bias², variance and bias² + variance of ĝ with GAE(λ) weights, against λ; the slider's λ marked."""
    with torch_threads(1):
        sweep = lesson.lambda_sweep(CRITICS[critic])
    B = max(1, int(round(float(batch_size))))
    return lesson.lambda_figure(sweep, float(lam), B, fig=new_figure(figsize=(7.4, 4.0)))

