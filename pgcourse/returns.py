r"""Returns of trajectories: the full return, the reward-to-go and GAE.

Tensors have time as their LAST axis: ``rewards[..., t]``. ``dones[..., t]`` is True where
step ``t`` is the last step of its episode, so one row may hold several episodes one after the
other. Every function runs on the device of its inputs and keeps their dtype.

All three are one backward linear recurrence, :func:`reverse_scan`:

.. math:: y_t = x_t + c_t\, y_{t+1}, \qquad y_T = 0 .
"""
from __future__ import annotations

import numpy as np
import torch

from .validate import bool_tensor, float_tensor, same_shape, unit_interval


def reverse_scan(x: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
    r"""Solve :math:`y_t = x_t + c_t y_{t+1}` backwards along the last axis (with :math:`y_T = 0`).

    On the CPU (float32/64, no autograd) a numpy loop over time, vectorized over the batch, is
    fastest; elsewhere (CUDA, autograd, half precision) a log-depth Hillis–Steele scan needs only
    :math:`\lceil\log_2 T\rceil` steps of whole-tensor operations. ``x`` is never modified.
    """
    same_shape(coef, "coef", x, "x")
    if (x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64) and coef.dtype == x.dtype
            and coef.device == x.device and not (x.requires_grad or coef.requires_grad)):
        return _scan_numpy(x, coef)
    return _scan_doubling(x, coef)


def _scan_numpy(x: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
    # Time-major copies, so each step works on one contiguous row; y overwrites the copy of x.
    y = np.array(np.moveaxis(x.numpy(), -1, 0), order="C", copy=True)
    c = np.ascontiguousarray(np.moveaxis(coef.numpy(), -1, 0))
    tmp = np.empty_like(y[0])
    for t in range(y.shape[0] - 2, -1, -1):
        np.multiply(c[t], y[t + 1], out=tmp)
        y[t] += tmp
    return torch.from_numpy(np.moveaxis(y, 0, -1))


def _scan_doubling(x: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
    # Invariant after the step with shift s: y_t = b_t + a_t * y_{t+2s}. Out-of-range terms are 0.
    b, a = x, coef
    T, shift = x.shape[-1], 1
    while shift < T:
        pad = x.new_zeros(x.shape[:-1] + (shift,))
        b = b + a * torch.cat([b[..., shift:], pad], dim=-1)
        a = a * torch.cat([a[..., shift:], pad], dim=-1)
        shift *= 2
    return b


def _episode_rows(rewards, dones, name="rewards"):
    rewards = float_tensor(rewards, name)
    if dones is None:
        dones = torch.zeros_like(rewards, dtype=torch.bool)
    else:
        dones = bool_tensor(dones, "dones", rewards, name)
    return rewards, dones


def reward_to_go(rewards: torch.Tensor, gamma: float = 1.0, dones: torch.Tensor | None = None) -> torch.Tensor:
    r"""The reward-to-go :math:`G_t = \sum_{k=t}^{T_{\text{end}}} \gamma^{k-t} r_k`, up to the end of ``t``'s episode.

    Recurrence: :math:`G_t = r_t + \gamma (1 - \text{done}_t) G_{t+1}`. Same shape and dtype as ``rewards``.
    """
    rewards, dones = _episode_rows(rewards, dones)
    gamma = unit_interval(gamma, "gamma")
    coef = (~dones).to(rewards.dtype) * gamma
    return reverse_scan(rewards, coef)


def episode_start_index(dones: torch.Tensor) -> torch.Tensor:
    """For each step, the index (along the last axis) of the first step of its episode."""
    dones = bool_tensor(dones, "dones", dones, "dones")
    T = dones.shape[-1]
    idx = torch.arange(T, device=dones.device).expand(dones.shape)
    starts = torch.zeros_like(dones)
    starts[..., 0] = True
    starts[..., 1:] = dones[..., :-1]
    return torch.where(starts, idx, torch.zeros_like(idx)).cummax(dim=-1).values


def steps_since_start(dones: torch.Tensor) -> torch.Tensor:
    """For each step, ``t`` counted from the first step of its episode (0, 1, 2, ...)."""
    dones = bool_tensor(dones, "dones", dones, "dones")
    T = dones.shape[-1]
    idx = torch.arange(T, device=dones.device).expand(dones.shape)
    return idx - episode_start_index(dones)


def discounted_return(rewards: torch.Tensor, gamma: float = 1.0, dones: torch.Tensor | None = None) -> torch.Tensor:
    r"""The return of the whole episode, :math:`R(\tau) = \sum_k \gamma^k r_k` from its first step, at every step.

    It is the reward-to-go of the episode's first step, copied to all of its steps.
    """
    rewards, dones = _episode_rows(rewards, dones)
    rtg = reward_to_go(rewards, gamma, dones)
    return rtg.gather(-1, episode_start_index(dones))


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    terminated: torch.Tensor,
    truncated: torch.Tensor | None = None,
    gamma: float = 0.99,
    lam: float = 0.95,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Generalized advantage estimation (Schulman et al., 2016).

    .. math::
        \delta_t = r_t + \gamma (1 - \text{terminated}_t) V(s_{t+1}) - V(s_t), \qquad
        A_t = \delta_t + \gamma\lambda (1 - \text{done}_t) A_{t+1},

    with done = terminated or truncated. ``next_values[..., t]`` is :math:`V(s_{t+1})`; for a
    truncated step it is the value of the final observation, so truncation bootstraps and
    termination does not. Returns ``(advantages, advantages + values)``.
    """
    rewards = float_tensor(rewards, "rewards")
    values = float_tensor(values, "values")
    next_values = float_tensor(next_values, "next_values")
    same_shape(values, "values", rewards, "rewards")
    same_shape(next_values, "next_values", rewards, "rewards")
    for name, v in (("values", values), ("next_values", next_values)):
        if v.dtype != rewards.dtype:
            raise TypeError(f"{name} has dtype {v.dtype} but rewards has {rewards.dtype}; they must match")
        if v.device != rewards.device:
            raise ValueError(f"{name} is on {v.device} but rewards is on {rewards.device}")
    terminated = bool_tensor(terminated, "terminated", rewards, "rewards")
    truncated = (torch.zeros_like(terminated) if truncated is None
                 else bool_tensor(truncated, "truncated", rewards, "rewards"))
    gamma = unit_interval(gamma, "gamma")
    lam = unit_interval(lam, "lam")
    deltas = rewards - values
    deltas.add_(next_values.masked_fill(terminated, 0.0), alpha=gamma)  # r + γ(1 − term)V(s') − V(s)
    coef = torch.full_like(rewards, gamma * lam).masked_fill_(terminated | truncated, 0.0)
    advantages = reverse_scan(deltas, coef)
    return advantages, advantages + values


def n_step_advantage(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    terminated: torch.Tensor,
    truncated: torch.Tensor | None = None,
    gamma: float = 0.99,
    n: int = 1,
) -> torch.Tensor:
    r"""The n-step advantage estimate: n rewards, then the value of the state reached.

    .. math::
        \hat A^{(n)}_t = \sum_{l=0}^{n-1} \gamma^l r_{t+l} + \gamma^n V(s_{t+n}) - V(s_t)
        \;=\; \sum_{l=0}^{n-1} \gamma^l \delta_{t+l}
        \quad\text{(when next\_values}_t = \text{values}_{t+1}\text{ inside an episode)}.

    The sum stops at the end of t's episode (or of the row): there it bootstraps from
    ``next_values`` unless the step is ``terminated``, so a truncated episode bootstraps and a
    terminated one does not, as in :func:`gae`. n = 1 is the TD residual :math:`\delta_t`; an n
    beyond the episode's end gives the (bootstrapped) reward-to-go minus :math:`V(s_t)`, GAE with λ = 1.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    rewards = float_tensor(rewards, "rewards")
    values = float_tensor(values, "values")
    next_values = float_tensor(next_values, "next_values")
    same_shape(values, "values", rewards, "rewards")
    same_shape(next_values, "next_values", rewards, "rewards")
    terminated = bool_tensor(terminated, "terminated", rewards, "rewards")
    dones = terminated if truncated is None else terminated | bool_tensor(truncated, "truncated", rewards, "rewards")
    gamma = unit_interval(gamma, "gamma")
    n, T = int(n), rewards.shape[-1]
    t = torch.arange(T, device=rewards.device).expand(rewards.shape)
    # last step of t's episode: the first done at or after t (or the row's last step)
    ends_here = torch.where(dones, t, torch.full_like(t, T - 1))
    end = ends_here.flip(-1).cummin(-1).values.flip(-1)
    last = torch.minimum(t + (n - 1), end)                                   # the step whose next value is used
    boot = next_values.gather(-1, last).masked_fill(terminated.gather(-1, last), 0.0)
    rtg = reward_to_go(rewards, gamma, dones)                                # G_t up to the episode's end
    later = torch.cat([rtg[..., n:], torch.zeros_like(rtg[..., :n])], -1) if n < T else torch.zeros_like(rtg)
    later = later.masked_fill(t + n > end, 0.0)                              # G_{t+n}, if still in t's episode
    k = (last - t + 1).to(rewards.dtype)                                     # rewards summed before the bootstrap
    return rtg - gamma ** n * later + torch.pow(torch.full_like(k, gamma), k) * boot - values
