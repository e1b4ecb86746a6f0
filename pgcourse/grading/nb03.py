"""Exercises of notebook 03 (baselines); expected outputs come from :mod:`pgcourse.baselines` and the lesson.

Three transcriptions (batch mean, leave-one-out, moving average) and three concept exercises: predict b*
of a softmax bandit in closed form, measure the batch mean's 1 − 1/N shrinkage, and debug a value
baseline whose silent bug only the exact gradient reveals.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .. import estimators as est
from ..baselines import batch_mean_baseline, ema
from ..lessons import nb03 as lesson
from ..mdp import Episodes, TabularMDP, delayed_reward
from ..stats import bias_test
from . import Case, derive, exercise


def _returns(gen: torch.Generator, seed: int, *shape: int, dtype=torch.float64) -> torch.Tensor:
    return (torch.randn(*shape, generator=derive(gen, seed), dtype=torch.float64) * 3 + 5).round(decimals=2).to(dtype)


def _seed(gen: torch.Generator, k: int) -> int:
    return int(torch.randint(0, 10_000, (1,), generator=derive(gen, k)))


def _corridor(gen: torch.Generator, k: int, length: int, gamma: float = 1.0) -> tuple[TabularMDP, torch.Tensor]:
    """A corridor and a policy that mostly goes right (θ_right − θ_left between 0.6 and 1.4), drawn from ``gen``."""
    mdp = delayed_reward(length, gamma=gamma)
    logits = torch.zeros(mdp.n_states, 2, dtype=torch.float64)
    logits[:, 1] = 0.6 + 0.8 * torch.rand(mdp.n_states, generator=derive(gen, k), dtype=torch.float64)
    return mdp, logits


# ---- transcriptions, easy to harder ----------------------------------------------------------------

@exercise("03.batch_mean_baseline", points=1, kind="transcribe")
def batch_mean_cases(gen: torch.Generator) -> list[Case]:
    cases = [
        (torch.tensor([1.0, 2.0, 6.0]), "three returns: every episode gets their mean, 3.0"),
        (_returns(gen, 0, 8), "a batch of 8 episode returns"),
        (torch.tensor([4.5]), "a batch of one episode: the baseline is its own return"),
        (_returns(gen, 1, 5, 4), "returns shaped (N, T): the mean over episodes (axis 0) at each time step"),
        (_returns(gen, 2, 6, dtype=torch.float32), "float32 returns"),
    ]
    return [Case((x,), expected=batch_mean_baseline(x), note=note) for x, note in cases]


@exercise("03.leave_one_out_baseline", points=1, kind="transcribe")
def leave_one_out_cases(gen: torch.Generator) -> list[Case]:
    cases = [
        (torch.tensor([1.0, 2.0, 6.0]), "three returns: episode 0 gets (2 + 6) / 2 = 4"),
        (torch.tensor([3.0, 7.0]), "two episodes: each gets the other's return"),
        (_returns(gen, 3, 8), "a batch of 8 episode returns"),
        (_returns(gen, 4, 5, 4), "returns shaped (N, T): leave episode i out at each time step"),
        (torch.full((4,), 2.5), "equal returns: the baseline equals them"),
    ]
    return [Case((x,), expected=batch_mean_baseline(x, leave_one_out=True), note=note) for x, note in cases]


@exercise("03.moving_average", points=1, kind="transcribe")
def moving_average_cases(gen: torch.Generator) -> list[Case]:
    x = _returns(gen, 5, 7)
    cases = [
        (torch.tensor([1.0, 1.0, 1.0]), 0.5, 0.0, "entry k uses items before k only: [0, 0.5, 0.75]"),
        (x, 0.9, 0.0, "decay 0.9, starting from 0"),
        (x, 0.0, 0.0, "decay 0: the previous item (the first entry is init)"),
        (x, 1.0, 3.0, "decay 1: never moves from init"),
        (x, 0.5, 4.0, "init 4.0"),
        (torch.tensor([10.0]), 0.9, 2.0, "one item: its baseline is init"),
    ]
    return [Case((s,), {"decay": d, "init": i}, expected=ema(s, d, i), note=note) for s, d, i, note in cases]


# ---- predict: b* of a softmax bandit in closed form ------------------------------------------------

@exercise("03.predict_b_star", points=2, kind="predict", atol=1e-6, rtol=1e-6)
def predict_b_star_cases(gen: torch.Generator) -> list[Case]:
    f64 = dict(dtype=torch.float64)
    g3, g5 = derive(gen, 10), derive(gen, 11)
    th3, r3 = torch.randn(3, generator=g3, **f64), torch.randn(3, generator=g3, **f64).round(decimals=2)
    th5, r5 = 1.5 * torch.randn(5, generator=g5, **f64), (2 * torch.randn(5, generator=g5, **f64)).round(decimals=2)
    cases = [
        (torch.zeros(2, **f64), torch.tensor([1.0, 0.0], **f64),
         "two equally likely actions: b* = E[R] = 0.5"),
        (torch.tensor([2.0, 0.0], **f64), torch.tensor([1.0, 0.0], **f64),
         "two actions, pi = (0.88, 0.12): b* weights each reward by the OTHER action's probability, not E[R]"),
        (th3, r3, "three actions"),
        (th5, r5, "five actions"),
        (th3, r3 + 10.0, "rewards shifted by 10: b* shifts by 10"),
        (torch.tensor([3.0, 0.0, 0.0, 0.0], **f64), torch.tensor([1.0, 0.0, 0.0, 2.0], **f64),
         "one likely action: its tiny score norm gives it little weight"),
    ]
    return [Case((th, r), expected=lesson.bandit_b_star(th, r), note=note) for th, r, note in cases]


# ---- measure: the batch mean's shrinkage ------------------------------------------------------------

@dataclass
class Measurement:
    """A reference measurement of the projection factor and its SE, on episodes fixed by the case's seed."""

    factor: float
    se: float
    batch_size: int

    def __repr__(self) -> str:
        return (f"(factor, se) = ({self.factor:.4f}, {self.se:.4f}) measured with gradient_samples at this seed "
                f"(the prediction 1 - 1/N = {1 - 1 / self.batch_size:.4f})")


def _same_measurement(got, expected: Measurement) -> str | None:
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        return f"expected a pair (factor, se) of numbers, got {type(got).__name__}"
    try:
        f, se = float(got[0]), float(got[1])
    except (TypeError, ValueError, RuntimeError):
        return "expected a pair (factor, se) of numbers"
    if not math.isclose(f, expected.factor, rel_tol=1e-6, abs_tol=1e-9):
        return (f"your factor {f:.4f} is not the projection <g_i, grad J> / |grad J|^2 averaged over the batches of "
                f"gradient_samples(mdp, logits, psi, batch_size, n_batches, seed) with psi_i = R_i - (mean return of "
                f"episode i's batch); on these episodes it is {expected.factor:.4f}")
    if not math.isclose(se, expected.se, rel_tol=1e-2):
        return (f"your factor is right, but your standard error {se:.4g} is not std / sqrt(n_batches) of the "
                f"per-batch projections, {expected.se:.4g}")
    return None


@exercise("03.measure_shrinkage", points=2, kind="measure", compare=_same_measurement)
def measure_shrinkage_cases(gen: torch.Generator) -> list[Case]:
    out = []
    for k, (length, N, n_batches) in enumerate(((6, 2, 1000), (5, 4, 800), (4, 3, 1000), (6, 8, 500))):
        mdp, logits = _corridor(gen, 20 + k, length)
        seed = _seed(gen, 30 + k)
        f, se = lesson.measure_shrinkage(mdp, logits, N, n_batches, seed)
        out.append(Case((mdp, logits, N, n_batches, seed), expected=Measurement(f, se, N),
                        note=f"corridor of {length} cells, batches of N = {N}"))
    return out


# ---- debug: a value baseline with a silent bug --------------------------------------------------------

class CaseEpisodes(Episodes):
    """Episodes that print as one line in a failure message."""

    def __repr__(self) -> str:
        n, H = self.states.shape
        return f"Episodes({n} episodes, horizon {H}, {int(self.mask.sum())} valid steps)"


@dataclass
class Unbiased:
    """The property a baseline must have: ĝ with Ψ_t = γᵗ(G_t − b_t) is unbiased, tested against the exact gradient."""

    mdp: TabularMDP
    logits: torch.Tensor
    episodes: Episodes
    batch_size: int

    def __repr__(self) -> str:
        n = len(self.episodes) // self.batch_size
        return (f"a baseline b (N, H) whose estimate is unbiased: every |z| <= 5 and chi^2 p >= 1e-6 against the "
                f"exact gradient ({n} batches of {self.batch_size} episodes)")


@dataclass
class OnValidSteps:
    """Expected values where ``mask`` is True (padding after an episode's end is not compared)."""

    values: torch.Tensor
    mask: torch.Tensor
    states: torch.Tensor

    def __repr__(self) -> str:
        return f"V_t(s_t) at the valid steps (padding not compared):\n{torch.where(self.mask, self.values, 0.0)!r}"


def _baseline_property(got, expected) -> str | None:
    want = expected.mask if isinstance(expected, OnValidSteps) else expected.episodes.mask
    if not isinstance(got, torch.Tensor):
        return f"expected a torch.Tensor, got {type(got).__name__}"
    if tuple(got.shape) != tuple(want.shape):
        return f"shape {tuple(got.shape)} instead of {tuple(want.shape)} (one baseline per step)"
    got = got.detach().to(torch.float64)
    if isinstance(expected, OnValidSteps):
        m = expected.mask
        want = expected.values.to(torch.float64)
        bad = m & ~torch.isclose(got, want, atol=1e-9, rtol=1e-9)
        if bool(bad.any()):
            i, t = (int(v) for v in bad.nonzero()[0])
            return (f"values differ at valid steps, first at episode {i}, step {t}: b = {float(got[i, t]):.4f}, but "
                    f"V_t(s_t) = V[{t}, {int(expected.states[i, t])}] = {float(want[i, t]):.4f}; b_t must be the value "
                    "of the state the action a_t is taken in")
        return None
    ep, mdp = expected.episodes, expected.mdp
    w = est.baseline_weights(ep.rewards, got, mdp.gamma, ep.dones)
    x = lesson.batch_gradients(expected.logits, ep, w, expected.batch_size)
    exact = mdp.exact_gradient(expected.logits)
    t = bias_test(x, exact)
    if t.unbiased(z_max=5.0, p_min=1e-6):
        return None
    f, se = lesson.projection(x, exact)
    return (f"the estimate is biased: max |z| = {t.max_abs_z:.1f} against the exact gradient (no bias: |z| <~ 4), "
            f"chi^2 p = {t.p_value:.2g}; its projection on grad J is {f:.3f} +- {se:.3f} (unbiased: 1). "
            "A baseline must not depend on the action a_t, nor on anything a_t causes")


@exercise("03.value_baseline", points=2, kind="debug", compare=_baseline_property)
def value_baseline_cases(gen: torch.Generator) -> list[Case]:
    out = []
    for k, (length, gamma, what, weight) in enumerate((
            (6, 1.0, "the property that fails first: E[g] = grad J (exact gradient of a 6-cell corridor)", 1.0),
            (5, 1.0, "the values: b_t = V_t(s_t) at every valid step (5-cell corridor)", 2.0),
            (4, 0.9, "E[g] = grad J on a 4-cell corridor with gamma = 0.9", 1.0))):
        mdp, logits = _corridor(gen, 40 + k, length, gamma)
        B = 8
        ep = mdp.sample(logits, B * (2000 if weight == 1.0 else 4), _seed(gen, 50 + k))
        ep = CaseEpisodes(**vars(ep))
        V = mdp.values(logits)[0]
        expected = (OnValidSteps(lesson.value_baseline(ep, V), ep.mask, ep.states) if weight == 2.0
                    else Unbiased(mdp, logits, ep, B))
        out.append(Case((ep, V), expected=expected, note=what, weight=weight))
    return out
