"""Exercises of notebook 04 (value functions and advantage).

Expected outputs come from the package: ``04.q_from_v`` from the dynamic programming of
:meth:`pgcourse.mdp.TabularMDP.values` (``Q_t`` given ``V_{t+1}``) and from
:func:`pgcourse.lessons.nb04.bellman_q`; ``04.td_residual`` and ``04.gae`` from
:func:`pgcourse.returns.gae` (the TD residual is GAE with λ = 0); ``04.one_step_variances`` (predict)
from :func:`pgcourse.lessons.nb04.one_step_variances`, which the notebook checks against a measurement;
``04.rollout_advantages`` (debug) from :func:`pgcourse.lessons.nb04.rollout_advantages` on rollouts of
gymnasium's FrozenLake-v1 vector environment (NEXT_STEP autoreset, a time limit).
"""
from __future__ import annotations

import numpy as np
import torch

from ..lessons.nb04 import (bellman_q, lake_rollout, lesson_mdp, one_step_inputs, one_step_variances,
                            rollout_advantages)
from ..mdp import TabularMDP, coin_flips, delayed_reward
from ..returns import gae
from . import Case, derive, differ, exercise

F, T = False, True

# ---- 04.q_from_v ---------------------------------------------------------------------------------------

def _dp_case(mdp: TabularMDP, logits: torch.Tensor, t: int, note: str) -> Case:
    V, Q = mdp.values(logits)
    return Case((mdp.R.clone(), mdp.P.clone(), V[t + 1].clone(), mdp.gamma), expected=Q[t], note=note)


def _table_case(R, P, v_next, gamma, note: str) -> Case:
    S = P.shape[0]
    mdp = TabularMDP(P, R, torch.full((S,), 1.0 / S, dtype=torch.float64), gamma, horizon=1)
    table = torch.stack([torch.zeros_like(v_next), v_next]).double()
    expected = bellman_q(mdp, table)[0].to(v_next.dtype)
    return Case((R, P, v_next, gamma), expected=expected, note=note)


@exercise("04.q_from_v", points=1, kind="transcribe")
def q_from_v_cases(gen: torch.Generator) -> list[Case]:
    """Q(s, a) = R(s, a) + γ Σ_s' P(s'|s, a) V_next(s'), shaped (S, A)."""
    P2 = torch.tensor([[[1.0, 0.0], [0.5, 0.5]], [[0.0, 1.0], [0.2, 0.8]]], dtype=torch.float64)
    R2 = torch.tensor([[0.0, 1.0], [2.0, -1.0]], dtype=torch.float64)
    g = derive(gen, 4)
    S, A = 5, 3
    P5 = torch.rand(S, A, S, generator=g, dtype=torch.float64)
    P5 /= P5.sum(-1, keepdim=True)
    R5 = torch.randn(S, A, generator=g, dtype=torch.float64)
    v5 = torch.randn(S, generator=g, dtype=torch.float64)
    lake, lake_logits = lesson_mdp()
    corridor = delayed_reward(length=6, gamma=0.9)
    coins = coin_flips(horizon=5, gamma=0.8)
    return [
        _table_case(R2, P2, torch.tensor([10.0, 20.0], dtype=torch.float64), 0.5,
                    "2 states, 2 actions by hand: Q(0, 1) = 1 + 0.5 (0.5*10 + 0.5*20) = 8.5"),
        _table_case(R2, P2, torch.tensor([10.0, 20.0], dtype=torch.float64), 0.0, "gamma = 0: Q = R"),
        _table_case(R5, P5, v5, 0.9, "5 states, 3 actions, random dynamics"),
        _table_case(R5.float(), P5.float(), v5.float(), 0.9, "float32 inputs: return float32"),
        _dp_case(coins, torch.tensor([[0.0, 1.0], [0.5, -0.5]], dtype=torch.float64), 2,
                 "coin_flips: V_next = V_3 of a policy gives its Q_2"),
        _dp_case(corridor, torch.randn(6, 2, generator=g, dtype=torch.float64), 0,
                 "the corridor: Q_0 from V_1 (the goal cell is terminal: V = 0 there)"),
        _dp_case(lake, lake_logits, 0, "the lake of this notebook: Q_0 from V_1"),
        _dp_case(lake, lake_logits, lake.horizon - 1, "the lake's last step: V_H = 0, so Q_{H-1} = R"),
    ]


# ---- 04.td_residual ------------------------------------------------------------------------------------

def _td_case(rewards, values, next_values, terminated, gamma, note: str) -> Case:
    expected, _ = gae(rewards, values, next_values, terminated, None, gamma, 0.0)
    return Case((rewards, values, next_values, terminated, gamma), expected=expected, note=note)


@exercise("04.td_residual", points=1, kind="transcribe")
def td_residual_cases(gen: torch.Generator) -> list[Case]:
    """δ_t = r_t + γ (1 − terminated_t) V(s_{t+1}) − V(s_t)."""
    g = derive(gen, 5)
    r, v, nv = (torch.randn(4, 10, generator=g) for _ in range(3))
    term = torch.rand(4, 10, generator=g) < 0.25
    r3, v3, nv3 = (torch.randn(2, 3, 6, generator=g, dtype=torch.float64) for _ in range(3))
    term3 = torch.rand(2, 3, 6, generator=g) < 0.3
    return [
        _td_case(torch.tensor([1.0, 0.0, 2.0]), torch.tensor([0.5, 1.0, 1.5]), torch.tensor([1.0, 1.5, 3.0]),
                 torch.tensor([F, F, F]), 0.5, "one episode, nothing terminates: 1 + 0.5*1 - 0.5 = 1, ..."),
        _td_case(torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[0.5, 1.0, 1.5]]), torch.tensor([[1.0, 99.0, 3.0]]),
                 torch.tensor([[F, T, F]]), 0.9,
                 "step 1 terminates: the value after it (99) must be ignored, δ_1 = 2 - 1"),
        _td_case(torch.ones(1, 4), torch.zeros(1, 4), torch.full((1, 4), 2.0), torch.tensor([[F, F, F, T]]), 1.0,
                 "gamma = 1"),
        _td_case(r, v, nv, term, 0.99, "a (4, 10) batch with random terminations"),
        _td_case(r3, v3, nv3, term3, 0.8, "time is the LAST axis of a (2, 3, 6) float64 batch"),
    ]


# ---- 04.gae --------------------------------------------------------------------------------------------

def _gae_case(rewards, values, next_values, terminated, truncated, gamma, lam, note: str) -> Case:
    expected, _ = gae(rewards, values, next_values, terminated, truncated, gamma, lam)
    return Case((rewards, values, next_values, terminated, truncated, gamma, lam), expected=expected, note=note)


@exercise("04.gae", points=2, kind="transcribe")
def gae_cases(gen: torch.Generator) -> list[Case]:
    """A_t = δ_t + γλ (1 − done_t) A_{t+1}, done = terminated or truncated; truncation bootstraps, termination not."""
    r = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    v = torch.tensor([[0.5, 1.0, 1.5, 2.0]])
    nv = torch.tensor([[1.0, 10.0, 4.0, 100.0]])
    g = derive(gen, 6)
    rb, vb, nvb = (torch.randn(4, 16, generator=g) for _ in range(3))
    done = torch.rand(4, 16, generator=g) < 0.3
    kind = torch.rand(4, 16, generator=g) < 0.5
    term_b, trunc_b = done & kind, done & ~kind
    r3, v3, nv3 = (torch.randn(2, 2, 8, generator=g, dtype=torch.float64) for _ in range(3))
    term3 = torch.rand(2, 2, 8, generator=g) < 0.2
    trunc3 = (torch.rand(2, 2, 8, generator=g) < 0.2) & ~term3
    none = torch.zeros(1, 4, dtype=torch.bool)
    return [
        _gae_case(r, v, nv, none, none, 0.5, 0.5, "one episode running past the end of the row: bootstrap from 100"),
        _gae_case(r, v, nv, torch.tensor([[F, T, F, F]]), torch.tensor([[F, F, T, F]]), 0.5, 0.5,
                  "step 1 terminates (ignore its next value 10), step 2 is truncated (bootstrap from 4, "
                  "but no advantage flows back from step 3, the next episode)"),
        _gae_case(r, v, nv, torch.tensor([[F, T, F, F]]), torch.tensor([[F, T, F, F]]), 0.5, 0.5,
                  "step 1 is terminated AND truncated: terminated wins, no bootstrap"),
        _gae_case(r, v, nv, torch.tensor([[F, F, F, T]]), torch.tensor([[T, F, F, F]]), 0.9, 0.0,
                  "lambda = 0: the TD residual (step 0 truncated still bootstraps from its next value)"),
        _gae_case(r, v, nv, torch.tensor([[F, F, F, T]]), torch.tensor([[F, T, F, F]]), 0.9, 1.0,
                  "lambda = 1: discounted reward-to-go minus V, bootstrapped at the truncation"),
        _gae_case(rb, vb, nvb, term_b, trunc_b, 0.99, 0.95, "a (4, 16) batch with random terminations and truncations"),
        _gae_case(r3, v3, nv3, term3, trunc3, 0.9, 0.8, "time is the LAST axis of a (2, 2, 8) float64 batch"),
    ]


# ---- 04.one_step_variances (predict) -------------------------------------------------------------------

def _var_case(pi, y, p, note: str, weight: float = 1.0) -> Case:
    return Case((pi, y, p), expected=one_step_variances(pi, y, p), note=note, weight=weight)


def _random_outcomes(g: torch.Generator, A: int, K: int, scale: float = 1.0):
    y = scale * torch.randn(A, K, generator=g, dtype=torch.float64)
    p = torch.rand(A, K, generator=g, dtype=torch.float64) + 0.05
    return y, p / p.sum(-1, keepdim=True)


@exercise("04.one_step_variances", points=3, kind="predict")
def one_step_variances_cases(gen: torch.Generator) -> list[Case]:
    """tr Cov of ∇log π(a) Ψ for Ψ = Q, A, δ in one state, from π, the targets y[a, k] and their probabilities."""
    half = torch.tensor([0.5, 0.5], dtype=torch.float64)
    g = derive(gen, 7)
    pi4 = torch.softmax(torch.randn(4, generator=g, dtype=torch.float64), -1)
    y4, p4 = _random_outcomes(g, 4, 3)
    sharp = torch.softmax(4.0 * torch.randn(3, generator=g, dtype=torch.float64), -1)
    y3, p3 = _random_outcomes(g, 3, 5)
    shift = 5.0 + 5.0 * float(torch.rand(1, generator=g))
    return [
        _var_case(half, torch.tensor([[1.0], [3.0]], dtype=torch.float64), torch.ones(2, 1, dtype=torch.float64),
                  "two actions by hand, no noise: Q = (1, 3), V = 2; with Ψ = A both actions give the same "
                  "g = (-0.5, 0.5), so A and δ have variance 0 and Q has 2"),
        _var_case(half, torch.tensor([[0.0, 2.0], [3.0, 3.0]], dtype=torch.float64),
                  torch.tensor([[0.5, 0.5], [1.0, 0.0]], dtype=torch.float64),
                  "as above but action 0's target is 0 or 2 (Var = 1): only δ sees that noise", 1.0),
        _var_case(pi4, y4, p4, "4 actions, 3 outcomes each, random", 2.0),
        _var_case(pi4, y4 + shift, p4, f"the same with every target shifted by {shift:.2f}: Q's variance grows, "
                  "A's and δ's do not (a baseline)", 2.0),
        _var_case(sharp, y3, p3, "a nearly deterministic policy: its rare actions have long score vectors", 2.0),
        _var_case(*one_step_inputs(9, t=10), "the lesson's cell 9 at t = 10 (slippery steps between holes)", 2.0),
    ]


# ---- 04.rollout_advantages (debug) ---------------------------------------------------------------------

LEFT, DOWN, RIGHT, UP = 0, 1, 2, 3


def _compare_rollout(got, expected) -> str | None:
    """The mask exactly; the advantages only where the expected mask is True (elsewhere they are never used)."""
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        return "expected a pair (advantages, mask)"
    adv, mask = got
    e_adv, e_mask = expected
    why = differ(mask, e_mask) if isinstance(mask, torch.Tensor) and mask.dtype == torch.bool else (
        "mask must be a bool tensor shaped like rewards")
    if why:
        bad = [] if not isinstance(mask, torch.Tensor) or mask.shape != e_mask.shape else (
            (mask != e_mask).nonzero().tolist()[:4])
        return f"mask: {why}" + (f" at (env, step) {bad}" if bad else "")
    if not isinstance(adv, torch.Tensor) or adv.shape != e_adv.shape:
        return f"advantages must be a tensor shaped {tuple(e_adv.shape)}"
    why = differ(adv[e_mask], e_adv[e_mask], 1e-6, 1e-5)
    if why:
        worst = ((adv - e_adv).abs() * e_mask).flatten().argmax()
        return f"advantages on the real steps: {why}; worst at (env, step) {divmod(int(worst), e_adv.shape[-1])}"
    return None


def _rollout_case(actions, n_envs: int, n_steps: int, time_limit: int, seed: int, slippery: bool,
                  g: torch.Generator, gamma: float, lam: float, note: str, weight: float) -> Case:
    ro = lake_rollout(actions, n_envs, n_steps, time_limit, seed, slippery)
    V = torch.randn(16, generator=g, dtype=torch.float64)   # a critic's values, nonzero at holes and goal too
    args = (ro.obs, ro.rewards, ro.terminated, ro.truncated, V, gamma, lam)
    return Case(args, expected=rollout_advantages(*args), note=note, weight=weight)


@exercise("04.rollout_advantages", points=3, kind="debug", compare=_compare_rollout)
def rollout_advantages_cases(gen: torch.Generator) -> list[Case]:
    """Advantages and the mask of real transitions from a NEXT_STEP-autoreset FrozenLake-v1 rollout."""
    g = derive(gen, 8)
    rand = lambda n, k: torch.randint(0, 4, (n, k), generator=g).numpy()  # noqa: E731
    seed = lambda: int(torch.randint(0, 2 ** 31 - 1, (1,), generator=g))  # noqa: E731
    stay = np.array([[LEFT], [UP], [LEFT], [UP], [LEFT], [UP]])           # from the corner: never moves
    hole = np.concatenate([np.array([[RIGHT], [DOWN]]), rand(4, 1)])        # 0 -> 1 -> 5, a hole at step 1
    lam = 0.5 + 0.5 * float(torch.rand(1, generator=g))
    return [
        _rollout_case(stay, 1, 5, 100, seed(), False, g, 0.9, lam,
                      "one lake, no episode ends in the rollout (the naive test: any version passes)", 1.0),
        _rollout_case(hole[:2], 1, 2, 100, seed(), False, g, 0.9, lam,
                      "the episode falls into a hole at the last step: terminated, no bootstrap from the hole's "
                      "value (the critic made it up)", 1.0),
        _rollout_case(hole, 1, 6, 100, seed(), False, g, 0.9, lam,
                      "it falls into a hole at step 1; step 2 is gymnasium's NEXT_STEP autoreset (reward 0, action "
                      "ignored, observation = the new start): no transition, so mask[0, 2] must be False", 2.0),
        _rollout_case(stay[:3], 1, 3, 3, seed(), False, g, 0.9, lam,
                      "the time limit (3 steps) truncates at the last step: the lake goes on, so the last step "
                      "bootstraps from V(final observation)", 2.0),
        _rollout_case(stay, 1, 6, 3, seed(), False, g, 0.9, lam,
                      "truncated at step 2 (bootstrap from V(obs[:, 3]), the final observation), then step 3 is the "
                      "autoreset step (masked)", 2.0),
        _rollout_case(rand(24, 4), 4, 24, 6, seed(), True, g, 0.95, lam,
                      "4 slippery lakes, time limit 6, random actions: terminations, truncations and autoreset "
                      "steps everywhere", 3.0),
    ]
