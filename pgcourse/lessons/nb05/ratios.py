r"""Importance ratios of whole trajectories: mean 1, variance :math:`(1+\chi^2)^H - 1`.

On :func:`pgcourse.mdp.coin_flips` (the states do not depend on the actions) with :math:`\pi_\text{old}` uniform and
:math:`\pi_\text{new}(a_1) = p` in both states, the steps are independent, so every moment of
:math:`\rho(\tau) = \prod_t\rho_t` is a product over the steps (:func:`ratio_moment`):
:math:`\mathbb E_\text{old}[\rho(\tau)^k] = \bigl(\sum_a \pi_\text{new}(a)^k/\pi_\text{old}(a)^{k-1}\bigr)^H`. With k = 2:
:math:`\operatorname{Var}\rho(\tau) = (1+\chi^2)^H - 1`, :math:`\chi^2 = \sum_a\pi_\text{new}(a)^2/\pi_\text{old}(a) - 1 = (2p-1)^2`;
with k = 3, 4 the standard error of a measured variance, :math:`\sqrt{(\mu_4 - \sigma^4)/n}`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from ...device import torch_threads
from ...mdp import coin_flips
from .stale import sample_old, log_ratios

__all__ = ["ratio_moment", "trajectory_ratio_variance", "RatioVariance", "ratio_variance"]


def ratio_moment(p_old: torch.Tensor, p_new: torch.Tensor, k: int, horizon: int = 1) -> torch.Tensor:
    r""":math:`\mathbb E_{a\sim p_\text{old}}[\rho^k]` over ``horizon`` independent steps: :math:`(\sum_a p_\text{new}^k / p_\text{old}^{k-1})^H`."""
    return ((p_new ** k / p_old ** (k - 1)).sum(-1)) ** horizon


def trajectory_ratio_variance(p_old: torch.Tensor, p_new: torch.Tensor, horizon: int = 1) -> torch.Tensor:
    r""":math:`\operatorname{Var}\rho(\tau) = (1 + \chi^2)^H - 1` for H independent steps with action distributions p_old → p_new."""
    return ratio_moment(p_old, p_new, 2, horizon) - 1


@dataclass
class RatioVariance:
    """Measured mean and variance of ρ(τ) (and its effective sample size) against the exact ones."""

    horizons: list[int]
    probs: list[float]                     # π_new(a1)
    n_episodes: int
    kl: list[float]                        # per-step KL(π_old ‖ π_new)
    chi2: list[float]                      # per-step χ²
    mean: dict[int, list[float]]           # per horizon, per p
    mean_se: dict[int, list[float]]
    var: dict[int, list[float]]
    exact_var: dict[int, list[float]]
    var_se: dict[int, list[float]]         # exact SE of the measured variance, √((μ4 − σ⁴)/n)
    ess: dict[int, list[float]]            # (Σρ)² / Σρ² / n: the fraction of the episodes that effectively count

    def var_z(self, H: int) -> list[float]:
        """(measured − exact variance) / its exact standard error, per p (0 where both are 0)."""
        return [(v - e) / s if s > 0 else 0.0 for v, e, s in zip(self.var[H], self.exact_var[H], self.var_se[H])]

    def table(self) -> str:
        lines = [f"{'H':>3} {'p':>5} {'KL/step':>8} {'mean of rho':>16} {'var measured':>13} {'var exact':>10} "
                 f"{'± SE (exact)':>12} {'z':>6} {'ESS/n':>7}"]
        for H in self.horizons:
            z = self.var_z(H)
            for i, p in enumerate(self.probs):
                lines.append(f"{H:>3} {p:>5.2f} {self.kl[i]:>8.4f} {self.mean[H][i]:>8.3f} ± {self.mean_se[H][i]:.3f} "
                             f"{self.var[H][i]:>13.4g} {self.exact_var[H][i]:>10.4g} {self.var_se[H][i]:>12.3g} "
                             f"{z[i]:>6.2f} {self.ess[H][i]:>7.3f}")
        return "\n".join(lines)


@torch_threads(1)
def ratio_variance(horizons: Sequence[int] = (5, 10, 20), probs: Sequence[float] = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8),
                   n_episodes: int = 20000, seed: int = 0) -> RatioVariance:
    """Sample coin-flip episodes from the uniform policy and weight them by ρ(τ) for π_new(a1) = p in both states."""
    out = RatioVariance(list(horizons), [float(p) for p in probs], n_episodes, [], [], {}, {}, {}, {}, {}, {})
    old_p = torch.tensor([0.5, 0.5], dtype=torch.float64)
    new_p = [torch.tensor([1 - p, p], dtype=torch.float64) for p in probs]
    for p, q in zip(probs, new_p):
        out.kl.append(float((old_p * (old_p / q).log()).sum()))
        out.chi2.append(float(trajectory_ratio_variance(old_p, q)))
    for H in horizons:
        mdp = coin_flips(horizon=H)
        old = sample_old(mdp, torch.zeros(2, 2, dtype=torch.float64), 1, n_episodes, seed + H)
        for key in ("mean", "mean_se", "var", "exact_var", "var_se", "ess"):
            getattr(out, key)[H] = []
        for p, q in zip(probs, new_p):
            theta = torch.tensor([[0.0, math.log(p / (1 - p))]] * 2, dtype=torch.float64)
            rho = log_ratios(old, theta)[1].exp()
            m2, m3, m4 = (float(ratio_moment(old_p, q, k, H)) for k in (2, 3, 4))
            var = m2 - 1
            mu4 = m4 - 4 * m3 + 6 * m2 - 3               # E[(ρ − 1)^4], as E[ρ] = 1
            out.mean[H].append(float(rho.mean()))
            out.mean_se[H].append(float(rho.std() / math.sqrt(n_episodes)))
            out.var[H].append(float(rho.var()))
            out.exact_var[H].append(var)
            out.var_se[H].append(math.sqrt(max(mu4 - var ** 2, 0.0) / n_episodes))
            out.ess[H].append(float(rho.sum() ** 2 / (rho ** 2).sum() / n_episodes))
    return out
