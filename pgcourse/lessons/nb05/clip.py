"""The debug exercise's starting point: a clipped surrogate with a silent bug (notebook 05, exercise 2)."""
from __future__ import annotations

import torch


def clipped_surrogate_with_a_bug(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor,
                                 clip_eps: float = 0.2) -> torch.Tensor:
    """PPO's clipped loss, -mean(min(rho A, clip(rho, 1 - eps, 1 + eps) A)), as it is often first written."""
    ratio = torch.exp(logp - old_logp.detach())
    clipped_ratio = torch.min(ratio, ratio.clamp(1 - clip_eps, 1 + clip_eps))
    return -(clipped_ratio * advantages.detach()).mean()
