"""Input checks shared by every module: clear errors that name the argument.

Each helper returns the (possibly converted) tensor so callers can write
``rewards = float_tensor(rewards, "rewards")``.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch


def as_tensor(x: Any, name: str) -> torch.Tensor:
    """A tensor from a tensor, numpy array or nested list; anything else is a TypeError."""
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, (np.ndarray, list, tuple)):
        try:
            return torch.as_tensor(np.asarray(x))
        except (TypeError, ValueError) as err:  # ragged lists, objects
            raise TypeError(f"{name} must be a tensor or array of numbers: {err}") from None
    raise TypeError(f"{name} must be a torch.Tensor (or numpy array), got {type(x).__name__}")


def float_tensor(x: Any, name: str, *, finite: bool = True, min_dim: int = 1) -> torch.Tensor:
    """A floating-point tensor with at least ``min_dim`` axes, no empty axis, and (by default) no NaN/inf."""
    x = as_tensor(x, name)
    if not torch.is_floating_point(x):
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.dim() < min_dim:
        raise ValueError(f"{name} must have at least {min_dim} axis (time last), got shape {tuple(x.shape)}")
    if x.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)}): an empty batch has no gradient estimate")
    # A sum is finite iff every entry is (barring overflow, which the full check then settles).
    if finite and not bool(torch.isfinite(x.sum())) and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


def bool_tensor(x: Any, name: str, like: torch.Tensor, like_name: str) -> torch.Tensor:
    """A boolean tensor shaped like ``like``; 0/1 numbers are accepted, other values are a ValueError."""
    x = as_tensor(x, name)
    if x.dtype != torch.bool:
        if torch.is_complex(x):
            raise TypeError(f"{name} must be boolean, got dtype {x.dtype}")
        if not bool(((x == 0) | (x == 1)).all()):
            raise ValueError(f"{name} must hold only True/False (or 0/1)")
        x = x != 0
    same_shape(x, name, like, like_name)
    return x.to(like.device)


def same_shape(x: torch.Tensor, name: str, like: torch.Tensor, like_name: str) -> None:
    if tuple(x.shape) != tuple(like.shape):
        raise ValueError(
            f"{name} has shape {tuple(x.shape)} but {like_name} has shape {tuple(like.shape)}; they must match"
        )


def unit_interval(x: Any, name: str) -> float:
    """A number in [0, 1] (a discount γ, a GAE λ)."""
    if isinstance(x, torch.Tensor) and x.numel() == 1:
        x = x.item()
    if isinstance(x, bool) or not isinstance(x, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a number in [0, 1], got {type(x).__name__}")
    x = float(x)
    if math.isnan(x) or not 0.0 <= x <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {x}")
    return x


def positive_int(x: Any, name: str) -> int:
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(x).__name__}")
    if x < 1:
        raise ValueError(f"{name} must be at least 1, got {x}")
    return int(x)


def positive_float(x: Any, name: str, *, allow_zero: bool = False) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a number, got {type(x).__name__}")
    x = float(x)
    if math.isnan(x) or x < 0 or (x == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'non-negative' if allow_zero else 'positive'}, got {x}")
    return x


def one_of(x: Any, name: str, choices: tuple[str, ...]) -> str:
    if not isinstance(x, str):
        raise TypeError(f"{name} must be a string, one of {choices}, got {type(x).__name__}")
    if x not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {x!r}")
    return x
