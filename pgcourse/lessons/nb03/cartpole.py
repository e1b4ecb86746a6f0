r"""Notebook 03 on CartPole: REINFORCE with and without a baseline over several seeds, and whether a
difference between two methods exceeds the spread over seeds.

A comparison is worth a claim only when the 95% confidence interval of the difference of the seed means,
:math:`\bar a - \bar b \pm t_{0.975,\,n-1}\sqrt{s_a^2/n_a + s_b^2/n_b}` (Student's t with the smaller
sample's n − 1 degrees of freedom, the conservative choice), leaves out 0.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

from ...stats import Difference, difference_test
from ...train import History, reinforce

__all__ = ["CONFIGS", "METRICS", "SeedDifference", "seed_difference", "train_seeds"]

CONFIGS = {
    "no baseline": dict(psi="reward_to_go"),
    "batch mean": dict(psi="reward_to_go_minus_baseline", baseline="batch_mean"),
    "learned V(s)": dict(psi="reward_to_go_minus_baseline", baseline="value"),
}

METRICS: dict[str, tuple[str, Callable[[History], float]]] = {
    "final": ("mean return of the last 20 episodes", lambda h: h.mean_return_last(20)),
    "overall": ("mean return over all episodes of the run (how fast it learned)",
                lambda h: sum(h.episode_returns) / max(len(h.episode_returns), 1)),
}

# Student's t, 97.5% quantile, by degrees of freedom (a 95% two-sided interval).
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
        12: 2.179, 15: 2.131, 20: 2.086, 30: 2.042}


def _t975(dof: int) -> float:
    return T975[max(k for k in T975 if k <= dof)] if dof >= 1 else float("inf")


def train_seeds(configs: Mapping[str, dict] = CONFIGS, seeds: Sequence[int] = (0, 1, 2, 3, 4),
                total_steps: int = 30_000, **kwargs) -> dict[str, list[History]]:
    """One :func:`pgcourse.train.reinforce` run per seed for each configuration, without progress bars."""
    return {name: [reinforce(total_steps=total_steps, seed=s, progress=False, **kw, **kwargs) for s in seeds]
            for name, kw in configs.items()}


@dataclass
class SeedDifference:
    """Per-seed numbers of two methods, the difference of their means and its 95% confidence interval."""

    a: list[float]
    b: list[float]
    test: Difference

    @property
    def dof(self) -> int:
        return min(len(self.a), len(self.b)) - 1

    @property
    def half_width(self) -> float:
        """Half the width of the 95% confidence interval of the difference."""
        return _t975(self.dof) * self.test.se

    @property
    def exceeds_spread(self) -> bool:
        """The interval leaves out 0: the difference is more than the spread over seeds explains."""
        return abs(self.test.diff) > self.half_width

    def summary(self, names: tuple[str, str] = ("a", "b")) -> str:
        t = self.test
        return (f"{names[0]} {t.mean_a:.1f} ± {t.se_a:.1f}, {names[1]} {t.mean_b:.1f} ± {t.se_b:.1f} (mean ± SE over seeds); "
                f"difference {t.diff:+.1f}, 95% CI ± {self.half_width:.1f} (t, {self.dof} dof), z = {t.z:.2f}")


def seed_difference(a: Sequence[float], b: Sequence[float]) -> SeedDifference:
    """Compare two methods' per-seed numbers (independent seeds; no effect: the interval holds 0 in 95% of cases)."""
    return SeedDifference([float(x) for x in a], [float(x) for x in b], difference_test(list(a), list(b)))
