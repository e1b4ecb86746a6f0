r"""The statistics behind every claim: standard errors, z-scores and χ² tests, tensors in, numbers out.

A claim of the course is a test whose threshold comes from a standard error, with a fixed seed, so its
verdict is deterministic and means something. Each test here says what its statistic is worth when
there is **no effect**:

* :func:`bias_test` — is the mean of n estimates equal to an exact vector? Per coordinate
  :math:`z_j = (\bar g_j - g_j)/\mathrm{SE}_j`, each :math:`\approx N(0, 1)` under no bias; and the
  joint :math:`\chi^2 = d^\top \hat\Sigma^{+} d` with :math:`d = \bar g - g`, :math:`\hat\Sigma` the
  covariance of the mean, which is :math:`\chi^2_k` (k its rank) under no bias, so its p-value is
  uniform on [0, 1].
* :func:`difference_test` — do two independent samples have the same mean? :math:`z = (\bar a - \bar b)
  / \sqrt{\mathrm{SE}_a^2 + \mathrm{SE}_b^2}`, :math:`\approx N(0, 1)` under no difference.
* :func:`ratio_test` — the ratio of two variances, with its delta-method standard error.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .validate import as_tensor

__all__ = ["BiasTest", "Difference", "bias_test", "chi2_sf", "difference_test", "mean_se", "normal_sf"]


def normal_sf(z: float) -> float:
    r"""P(Z > z) for a standard normal Z: :math:`\tfrac12\,\mathrm{erfc}(z/\sqrt 2)`."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def chi2_sf(x: float, dof: int) -> float:
    r"""P(X > x) for X ~ χ²(dof): the regularized upper incomplete gamma :math:`Q(k/2, x/2)`."""
    if dof < 1:
        raise ValueError(f"dof must be at least 1, got {dof}")
    if x <= 0:
        return 1.0
    return float(torch.special.gammaincc(torch.tensor(dof / 2, dtype=torch.float64),
                                         torch.tensor(x / 2, dtype=torch.float64)))


def mean_se(x, dim: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The mean along ``dim`` and its standard error :math:`s/\sqrt n` (Bessel's s)."""
    x = as_tensor(x, "x").to(torch.float64)
    n = x.shape[dim]
    if n < 2:
        raise ValueError(f"x needs at least 2 samples along dim {dim} for a standard error, got {n}")
    return x.mean(dim), x.std(dim, unbiased=True) / math.sqrt(n)


@dataclass
class BiasTest:
    """The mean of ``n`` estimates against an exact vector (see the module docstring)."""

    n: int
    max_abs_z: float
    frac_within_2se: float
    chi2: float
    dof: int
    p_value: float
    norm_diff: float        # ‖mean − exact‖: about √(Σ SE²) under no bias, not 0
    norm_se: float          # √(Σ SE²): what ‖mean − exact‖ is worth under no bias

    def unbiased(self, z_max: float = 4.0, p_min: float = 1e-3) -> bool:
        """No coordinate further than ``z_max`` SE, and the joint χ² not rejected at level ``p_min``."""
        return self.max_abs_z <= z_max and self.p_value >= p_min

    def biased(self, z_min: float = 6.0) -> bool:
        """Some coordinate at least ``z_min`` SE away: far beyond what chance gives in k coordinates."""
        return self.max_abs_z >= z_min

    def summary(self) -> str:
        return (f"max |z| = {self.max_abs_z:.2f} over {self.dof} independent directions, "
                f"{100 * self.frac_within_2se:.0f}% of coordinates within ±2 SE; "
                f"χ² = {self.chi2:.1f} on {self.dof} dof, p = {self.p_value:.3g} "
                f"(no bias: |z| ≲ 4, p uniform on [0, 1]); n = {self.n}")


def bias_test(samples, exact, rel_tol: float = 1e-9) -> BiasTest:
    r"""Test ``samples`` (n, ...) — n independent estimates — against ``exact`` (...).

    Coordinates whose estimates never vary and equal the exact value (e.g. an unreachable state's
    zero gradient) carry no information and are left out; a constant coordinate that differs from the
    exact value is an infinite z (certainly biased).
    """
    s = as_tensor(samples, "samples").to(torch.float64)
    e = as_tensor(exact, "exact").to(torch.float64)
    if s.dim() < 1 or s.shape[0] < 2:
        raise ValueError(f"samples must have shape (n, ...) with n >= 2, got {tuple(s.shape)}")
    if tuple(s.shape[1:]) != tuple(e.shape):
        raise ValueError(f"samples (n, ...) must match exact's shape {tuple(e.shape)}, got {tuple(s.shape)}")
    if not bool(torch.isfinite(s).all()) or not bool(torch.isfinite(e).all()):
        raise ValueError("samples and exact must be finite (a NaN or inf estimate says the estimator broke)")
    n = s.shape[0]
    x = s.reshape(n, -1)
    ex = e.reshape(-1)
    mean = x.mean(0)
    d = mean - ex
    se = x.std(0, unbiased=True) / math.sqrt(n)
    scale = ex.abs().max().clamp_min(1.0)
    const = se <= rel_tol * scale
    if bool((const & (d.abs() > 1e-7 * scale)).any()):
        return BiasTest(n, math.inf, 0.0, math.inf, int((~const).sum().clamp_min(1)), 0.0,
                        float(d.norm()), float(se.norm()))
    keep = ~const
    if not bool(keep.any()):
        return BiasTest(n, 0.0, 1.0, 0.0, 1, 1.0, float(d.norm()), 0.0)
    xk, dk, sek = x[:, keep], d[keep], se[keep]
    z = dk / sek
    cov = torch.cov(xk.T).reshape(xk.shape[1], xk.shape[1]) / n
    evals, evecs = torch.linalg.eigh(cov)
    tol = evals.max() * max(xk.shape) * torch.finfo(torch.float64).eps * 10
    good = evals > tol
    proj = evecs[:, good].T @ dk
    chi2 = float((proj ** 2 / evals[good]).sum())
    dof = int(good.sum())
    return BiasTest(n, float(z.abs().max()), float((z.abs() <= 2).double().mean()), chi2, dof,
                    chi2_sf(chi2, dof), float(d.norm()), float(se.norm()))


@dataclass
class Difference:
    """Two independent samples' means, the difference a − b, its SE, and z (≈ N(0, 1) under no difference)."""

    mean_a: float
    mean_b: float
    se_a: float
    se_b: float

    @property
    def diff(self) -> float:
        return self.mean_a - self.mean_b

    @property
    def se(self) -> float:
        return math.hypot(self.se_a, self.se_b)

    @property
    def z(self) -> float:
        return self.diff / self.se if self.se > 0 else (0.0 if self.diff == 0 else math.copysign(math.inf, self.diff))

    def summary(self, names: tuple[str, str] = ("a", "b"), fmt: str = ".3g") -> str:
        return (f"{names[0]} {self.mean_a:{fmt}} ± {self.se_a:{fmt}}, {names[1]} {self.mean_b:{fmt}} ± {self.se_b:{fmt}}"
                f" (±1 SE); difference {self.diff:{fmt}} ± {self.se:{fmt}}, z = {self.z:.2f} (no difference: z ~ N(0, 1))")


def difference_test(a, b) -> Difference:
    """Compare the means of two independent samples (1-D), e.g. per-seed results of two methods."""
    (ma, sa), (mb, sb) = mean_se(as_tensor(a, "a").reshape(-1)), mean_se(as_tensor(b, "b").reshape(-1))
    return Difference(float(ma), float(mb), float(sa), float(sb))
