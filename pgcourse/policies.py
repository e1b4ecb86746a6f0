r"""Policies: the tabular softmax (with its score in closed form) and an MLP for gymnasium.

Tabular softmax: :math:`\pi_\theta(a\mid s) = e^{\theta_{sa}} / \sum_b e^{\theta_{sb}}`, with the score

.. math:: \frac{\partial \log \pi_\theta(a\mid s)}{\partial \theta_{s'b}} = [s'=s]\,([b=a] - \pi_\theta(b\mid s)).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .validate import as_tensor, float_tensor, positive_int


def _table_logits(logits) -> torch.Tensor:
    logits = float_tensor(logits, "logits", min_dim=2)
    if logits.dim() != 2:
        raise ValueError(f"logits must be shaped (S, A), got {tuple(logits.shape)}")
    return logits


def softmax_probs(logits: torch.Tensor) -> torch.Tensor:
    """π(a|s) for every state, shaped like ``logits`` (S, A)."""
    return torch.softmax(_table_logits(logits), dim=-1)


def softmax_log_prob(logits: torch.Tensor, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """log π(a_t|s_t) for index tensors ``states`` and ``actions`` of one shape; differentiable in ``logits``."""
    logp = torch.log_softmax(_table_logits(logits), dim=-1)
    states, actions = as_tensor(states, "states"), as_tensor(actions, "actions")
    for name, idx, n in (("states", states, logp.shape[0]), ("actions", actions, logp.shape[1])):
        if idx.dtype.is_floating_point or idx.dtype.is_complex or idx.dtype == torch.bool:
            raise TypeError(f"{name} must be an integer tensor, got dtype {idx.dtype}")
        if idx.numel() and not bool(((idx >= 0) & (idx < n)).all()):
            raise ValueError(f"{name} must lie in [0, {n})")
    if states.shape != actions.shape:
        raise ValueError(f"states has shape {tuple(states.shape)} but actions has shape {tuple(actions.shape)}; "
                         "they must match")
    return logp[states.to(logp.device), actions.to(logp.device)]


def softmax_score(logits: torch.Tensor, state: int, action: int) -> torch.Tensor:
    r"""∇_θ log π(a|s) for one (s, a): zero except row s, which is :math:`e_a - \pi(\cdot\mid s)`."""
    probs = softmax_probs(logits)
    S, A = probs.shape
    if not 0 <= int(state) < S:
        raise ValueError(f"state must be in [0, {S}), got {state}")
    if not 0 <= int(action) < A:
        raise ValueError(f"action must be in [0, {A}), got {action}")
    score = torch.zeros_like(probs)
    score[state] = -probs[state]
    score[state, action] += 1.0
    return score


def softmax_score_sum(
    logits: torch.Tensor, states: torch.Tensor, actions: torch.Tensor, weights: torch.Tensor,
    group: torch.Tensor, n_groups: int,
) -> torch.Tensor:
    r"""Σ over steps of ``weights`` × score, summed per group: shape (n_groups, S, A).

    For each step i with group g_i: :math:`out[g_i] \mathrel{+}= w_i (e_{s_i} \otimes (e_{a_i} - \pi(\cdot\mid s_i)))`.
    Computed with two scatter-adds, no loop; ``states``, ``actions``, ``weights`` and ``group`` are flat.
    """
    probs = torch.softmax(logits, dim=-1)
    S, A = probs.shape
    w = weights.to(probs.dtype)
    out = torch.zeros(n_groups * S * A, dtype=probs.dtype, device=probs.device)
    out.index_add_(0, (group * S + states) * A + actions, w)
    per_state = torch.zeros(n_groups * S, dtype=probs.dtype, device=probs.device)
    per_state.index_add_(0, group * S + states, w)
    out = out.view(n_groups, S, A)
    return out - per_state.view(n_groups, S, 1) * probs


class MLPCategorical(nn.Module):
    """A categorical policy π(a|o) = softmax(MLP(o)) for vector observations and discrete actions."""

    def __init__(self, obs_dim: int, n_actions: int, hidden: Sequence[int] = (64, 64), activation=nn.Tanh):
        super().__init__()
        obs_dim = positive_int(obs_dim, "obs_dim")
        n_actions = positive_int(n_actions, "n_actions")
        layers: list[nn.Module] = []
        last = obs_dim
        for h in hidden:
            layers += [nn.Linear(last, positive_int(h, "hidden")), activation()]
            last = h
        layers.append(nn.Linear(last, n_actions))
        self.net = nn.Sequential(*layers)
        self.obs_dim, self.n_actions = obs_dim, n_actions

    def forward(self, obs: torch.Tensor) -> torch.distributions.Categorical:
        obs = as_tensor(obs, "obs")
        if obs.shape[-1] != self.obs_dim:
            raise ValueError(f"obs must end in an axis of size {self.obs_dim}, got shape {tuple(obs.shape)}")
        return torch.distributions.Categorical(logits=self.net(obs.to(torch.get_default_dtype())))

    @torch.no_grad()
    def act(self, obs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Sample actions for a batch of observations (reproducible with a generator)."""
        probs = self(obs).probs
        return torch.multinomial(probs.reshape(-1, self.n_actions), 1, generator=generator).view(probs.shape[:-1])
