r"""A finite MDP with a finite horizon, solved exactly: the ground truth of the course.

For the tabular softmax policy with logits θ (S, A), backward dynamic programming gives the
time-dependent values (``V[t]`` is the value with ``H - t`` steps left):

.. math::
    V_H = 0, \qquad Q_t(s,a) = \bar R(s,a) + \gamma \sum_{s'} P(s'\mid s,a) V_{t+1}(s'), \qquad
    V_t(s) = \sum_a \pi_\theta(a\mid s) Q_t(s,a),

and :math:`J(\theta) = \sum_s \mu_0(s) V_0(s) = \mathbb E[\sum_{t<H} \gamma^t r_t]`. Everything is
differentiable, so the exact gradient :math:`\nabla_\theta J` comes from autograd.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch

from .device import generator as make_generator
from .policies import softmax_probs
from .validate import as_tensor, float_tensor, positive_int, unit_interval


@dataclass
class Episodes:
    """A batch of episodes, one per row, time last, padded to the horizon (``mask`` marks real steps)."""

    states: torch.Tensor       # (N, H) long
    actions: torch.Tensor      # (N, H) long
    rewards: torch.Tensor      # (N, H) float, 0 on padding
    next_states: torch.Tensor  # (N, H) long
    terminated: torch.Tensor   # (N, H) bool: s_{t+1} is terminal
    truncated: torch.Tensor    # (N, H) bool: the horizon cut the episode at t
    mask: torch.Tensor         # (N, H) bool: step t happened

    @property
    def dones(self) -> torch.Tensor:
        return self.terminated | self.truncated

    @property
    def n_steps(self) -> int:
        """How many real steps the batch holds (sum of episode lengths)."""
        return int(self.mask.sum())

    def __getitem__(self, idx: Any) -> "Episodes":
        return Episodes(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    def __len__(self) -> int:
        return self.states.shape[0]


class TabularMDP:
    """A finite MDP: ``P`` (S, A, S), ``R`` (S, A) or (S, A, S), ``mu0`` (S,), discount γ, horizon H.

    ``terminal`` (S,) marks absorbing zero-reward states where an episode ends; if not given,
    states whose every action loops back to themselves with zero reward are terminal.
    """

    def __init__(self, P, R, mu0, gamma: float = 1.0, horizon: int = 100, terminal=None, name: str = "MDP",
                 state_names: list[str] | None = None, action_names: list[str] | None = None):
        P = float_tensor(P, "P", min_dim=3).double().cpu()
        if P.dim() != 3 or P.shape[0] != P.shape[2]:
            raise ValueError(f"P must be shaped (S, A, S), got {tuple(P.shape)}")
        S, A, _ = P.shape
        if bool((P < 0).any()) or not torch.allclose(P.sum(-1), torch.ones(S, A, dtype=P.dtype), atol=1e-6):
            raise ValueError("P must hold probabilities: non-negative, each P[s, a, :] summing to 1")
        R = float_tensor(R, "R", min_dim=2).double().cpu()
        if tuple(R.shape) not in ((S, A), (S, A, S)):
            raise ValueError(f"R must be shaped (S, A)=({S}, {A}) or (S, A, S), got {tuple(R.shape)}")
        mu0 = float_tensor(mu0, "mu0").double().cpu()
        if tuple(mu0.shape) != (S,) or bool((mu0 < 0).any()) or abs(float(mu0.sum()) - 1) > 1e-6:
            raise ValueError(f"mu0 must be a probability vector of length S={S}")
        self.P, self.mu0 = P, mu0
        self.R_sas = R if R.dim() == 3 else R.unsqueeze(-1).expand(S, A, S).contiguous()
        self.R = (P * self.R_sas).sum(-1)  # expected reward R̄(s, a)
        self.gamma = unit_interval(gamma, "gamma")
        self.horizon = positive_int(horizon, "horizon")
        if terminal is None:
            loops = P[torch.arange(S), :, torch.arange(S)]  # (S, A): P[s, a, s]
            terminal = (loops > 1 - 1e-12).all(-1) & (self.R.abs() < 1e-12).all(-1)
        else:
            terminal = as_tensor(terminal, "terminal").bool().cpu()
            if tuple(terminal.shape) != (S,):
                raise ValueError(f"terminal must be shaped (S,)=({S},), got {tuple(terminal.shape)}")
        self.terminal = terminal
        self.name = name
        self.state_names = state_names
        self.action_names = action_names
        self._successors()

    @property
    def n_states(self) -> int:
        return self.P.shape[0]

    @property
    def n_actions(self) -> int:
        return self.P.shape[1]

    def __repr__(self) -> str:
        return (f"TabularMDP({self.name!r}, S={self.n_states}, A={self.n_actions}, "
                f"gamma={self.gamma}, horizon={self.horizon})")

    def with_(self, *, gamma: float | None = None, horizon: int | None = None) -> "TabularMDP":
        """The same MDP with another γ or horizon."""
        return TabularMDP(self.P, self.R_sas, self.mu0, self.gamma if gamma is None else gamma,
                          self.horizon if horizon is None else horizon, self.terminal, self.name,
                          self.state_names, self.action_names)

    # ---- exact solution -------------------------------------------------------------------
    def _check_logits(self, logits) -> torch.Tensor:
        logits = float_tensor(logits, "logits", min_dim=2)
        if tuple(logits.shape) != (self.n_states, self.n_actions):
            raise ValueError(f"logits must be shaped (S, A)=({self.n_states}, {self.n_actions}), "
                             f"got {tuple(logits.shape)}")
        return logits

    def _tables(self, like: torch.Tensor):
        return (self.P.to(like.device, like.dtype), self.R.to(like.device, like.dtype),
                self.mu0.to(like.device, like.dtype))

    def values(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact time-dependent ``V`` (H+1, S) and ``Q`` (H, S, A) of the softmax policy; ``V[H] = 0``."""
        logits = self._check_logits(logits)
        _, R, _ = self._tables(logits)
        # Σ_s' P(s'|s,a) V(s') over the few successors of each (s, a): (succ_p * V[succ]).sum(-1).
        succ, succ_p = self._succ.to(logits.device), self._succ_p.to(logits.device, logits.dtype)
        pi = torch.softmax(logits, -1)
        H = self.horizon
        V = [torch.zeros(self.n_states, dtype=logits.dtype, device=logits.device)]
        Q = []
        live = (~self.terminal).to(logits.device, logits.dtype).unsqueeze(-1)
        for _ in range(H):
            q = (R + self.gamma * (succ_p * V[-1][succ]).sum(-1)) * live  # an episode ends on entering a terminal state: V = Q = 0 there
            Q.append(q)
            V.append((pi * q).sum(-1))
        return torch.stack(V[::-1]), torch.stack(Q[::-1])

    def advantages(self, logits: torch.Tensor) -> torch.Tensor:
        """Exact A_t(s, a) = Q_t(s, a) − V_t(s), shaped (H, S, A)."""
        V, Q = self.values(logits)
        return Q - V[:-1, :, None]

    def expected_return(self, logits: torch.Tensor) -> torch.Tensor:
        """The exact J(θ) = Σ_s μ0(s) V_0(s); a differentiable scalar."""
        V, _ = self.values(logits)
        return self._tables(V)[2] @ V[0]

    def exact_gradient(self, logits: torch.Tensor) -> torch.Tensor:
        """The exact ∇_θ J(θ), shaped (S, A), by autograd through :meth:`expected_return`."""
        logits = self._check_logits(logits).detach().requires_grad_(True)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(self.expected_return(logits), logits)
        return grad

    def state_visitation(self, logits: torch.Tensor) -> torch.Tensor:
        """d_t(s) = P(s_t = s), shaped (H, S), over non-terminal states (0 once an episode has ended)."""
        logits = self._check_logits(logits)
        P, _, mu0 = self._tables(logits)
        pi = torch.softmax(logits, -1)
        live = (~self.terminal).to(logits.device, logits.dtype)
        d, out = mu0 * live, []
        for _ in range(self.horizon):
            out.append(d)
            d = torch.einsum("s,sa,sat->t", d, pi, P) * live
        return torch.stack(out)

    # ---- sampling -----------------------------------------------------------------------
    def _successors(self) -> None:
        # Sparse successor lists, so that sampling costs O(max successors), not O(S), per step.
        nz = self.P > 0
        K = int(nz.sum(-1).max())
        order = torch.argsort(nz.to(torch.int8), dim=-1, descending=True, stable=True)[..., :K]
        probs = self.P.gather(-1, order)
        self._succ, self._succ_p = order, probs
        self._succ_cdf = _safe_cdf(probs)
        self._succ_reward = self.R_sas.gather(-1, order)

    def sample(self, logits: torch.Tensor, n_episodes: int, seed: int | torch.Generator = 0) -> Episodes:
        """Sample ``n_episodes`` episodes of the softmax policy, all at once, on the device of ``logits``.

        An episode ends when it enters a terminal state (``terminated``) or after H steps
        (``truncated``); later steps are padding with ``mask`` False and reward 0.
        """
        logits = self._check_logits(logits).detach()
        n = positive_int(n_episodes, "n_episodes")
        dev, H = logits.device, self.horizon
        gen = make_generator(seed, dev)
        pi_cdf = _safe_cdf(torch.softmax(logits.double(), -1))
        succ, succ_cdf, succ_r = (self._succ.to(dev), self._succ_cdf.to(dev), self._succ_reward.to(dev))
        terminal = self.terminal.to(dev)
        u0 = torch.rand(n, generator=gen, device=dev, dtype=torch.float64)
        s = torch.searchsorted(_safe_cdf(self.mu0).to(dev), u0, right=True)
        alive = ~terminal[s]
        u = torch.rand(H, 2, n, generator=gen, device=dev, dtype=torch.float64)
        cols = {k: [] for k in ("states", "actions", "rewards", "next_states", "terminated", "truncated", "mask")}
        for t in range(H):
            a = (pi_cdf[s] <= u[t, 0].unsqueeze(-1)).sum(-1)
            k = (succ_cdf[s, a] <= u[t, 1].unsqueeze(-1)).sum(-1, keepdim=True)
            s2 = succ[s, a].gather(-1, k).squeeze(-1)
            r = succ_r[s, a].gather(-1, k).squeeze(-1)
            term = terminal[s2] & alive
            trunc = alive & ~term if t == H - 1 else torch.zeros_like(alive)
            for key, v in (("states", s), ("actions", a), ("rewards", r * alive), ("next_states", s2),
                           ("terminated", term), ("truncated", trunc), ("mask", alive)):
                cols[key].append(v)
            alive = alive & ~term
            s = torch.where(alive, s2, s)
        ep = {k: torch.stack(v, -1) for k, v in cols.items()}
        ep["rewards"] = ep["rewards"].to(logits.dtype)
        return Episodes(**ep)

    # ---- construction from gymnasium ---------------------------------------------------
    @classmethod
    def from_gymnasium(cls, env, horizon: int, gamma: float = 1.0) -> "TabularMDP":
        """Build the MDP of a toy-text environment (FrozenLake, CliffWalking, Taxi) from ``env.unwrapped.P``.

        ``env`` is an environment or its id. Terminal transitions are made absorbing: their
        targets become zero-reward self-loops (or, where a target is also reached without
        terminating, the transition goes to one extra absorbing state).
        """
        if isinstance(env, str):
            import gymnasium as gym
            env = gym.make(env)
        u = getattr(env, "unwrapped", env)
        if not hasattr(u, "P"):
            raise TypeError(f"env must be a toy-text environment with a transition table P, got {type(u).__name__}")
        S, A = int(u.observation_space.n), int(u.action_space.n)
        table = u.P
        term_targets = {int(s2) for s in table for a in table[s] for p, s2, r, d in table[s][a] if d and p > 0}
        mixed = any(int(s2) in term_targets and not d
                    for s in table if int(s) not in term_targets
                    for a in table[s] for p, s2, r, d in table[s][a] if p > 0)
        n = S + 1 if mixed else S
        end = S if mixed else None
        P = np.zeros((n, A, n))
        PR = np.zeros((n, A, n))  # Σ p·r over the table's entries into each (s, a, s')
        for s in range(S):
            if not mixed and s in term_targets:
                P[s, :, s] = 1.0
                continue
            for a in range(A):
                for p, s2, r, d in table[s][a]:
                    target = end if (mixed and d) else int(s2)
                    P[s, a, target] += p
                    PR[s, a, target] += p * r
        terminal = torch.zeros(n, dtype=torch.bool)
        if mixed:
            P[end, :, end] = 1.0
            terminal[end] = True
        else:
            terminal[list(term_targets)] = True
        # The reward of a transition: the mean over the table's entries that lead to the same s'.
        Rw = torch.from_numpy(np.divide(PR, P, out=np.zeros_like(PR), where=P > 0))
        P = torch.from_numpy(P)
        mu0 = torch.zeros(n, dtype=torch.float64)
        mu0[:S] = torch.as_tensor(u.initial_state_distrib, dtype=torch.float64)
        name = env.spec.id if getattr(env, "spec", None) is not None else type(u).__name__
        return cls(P, Rw, mu0, gamma=gamma, horizon=horizon, terminal=terminal, name=name)


def all_episodes(mdp: TabularMDP, logits: torch.Tensor, max_episodes: int = 200_000) -> tuple[Episodes, torch.Tensor]:
    r"""Every trajectory the softmax policy can produce in ``mdp``, and its probability: ``(episodes, p)``.

    ``episodes`` is laid out as :meth:`TabularMDP.sample` lays out samples (one per row, time last, padded
    to the horizon); ``p`` (M,) sums to 1, with :math:`p(\tau) = \mu_0(s_0)\prod_t \pi(a_t\mid s_t)
    P(s_{t+1}\mid s_t, a_t)`. So an expectation over episodes is an exact sum,
    :math:`\mathbb E[f(\tau)] = \sum_\tau p(\tau) f(\tau)`. Only for small MDPs: the count grows like
    :math:`(A\cdot\text{successors})^H`; more than ``max_episodes`` is a ValueError.
    """
    if not isinstance(mdp, TabularMDP):
        raise TypeError(f"mdp must be a TabularMDP, got {type(mdp).__name__}")
    logits = mdp._check_logits(logits).detach().double().cpu()
    max_episodes = positive_int(max_episodes, "max_episodes")
    pi, P, R, terminal = torch.softmax(logits, -1), mdp.P, mdp.R_sas, mdp.terminal
    S, A = pi.shape
    s = (mdp.mu0 > 0).nonzero().flatten()
    prob, alive = mdp.mu0[s], ~terminal[s]
    cols: dict[str, list[torch.Tensor]] = {k: [] for k in ("states", "actions", "rewards", "next_states",
                                                           "terminated", "truncated", "mask")}
    for t in range(mdp.horizon):
        # a live row branches into every (a, s') of positive probability; an ended row continues as padding
        branch = pi[s].unsqueeze(-1) * P[s]                                  # (M, A, S)
        live_rows, a, s2 = (branch * alive.view(-1, 1, 1) > 0).nonzero(as_tuple=True)
        dead_rows = (~alive).nonzero().flatten()
        rows = torch.cat([live_rows, dead_rows])
        if rows.numel() > max_episodes:
            raise ValueError(f"{mdp.name} has more than max_episodes={max_episodes} trajectories by step {t + 1}")
        a = torch.cat([a, torch.zeros_like(dead_rows)])
        s2 = torch.cat([s2, s[dead_rows]])
        was_alive = torch.cat([torch.ones_like(live_rows, dtype=torch.bool), torch.zeros_like(dead_rows, dtype=torch.bool)])
        prob = prob[rows] * torch.where(was_alive, branch[rows, a, s2], torch.ones_like(prob[rows]))
        for k in cols:                                                      # re-index the columns so far
            cols[k] = [c[rows] for c in cols[k]]
        st = s[rows]
        term = terminal[s2] & was_alive
        trunc = was_alive & ~term if t == mdp.horizon - 1 else torch.zeros_like(was_alive)
        paid = torch.where(was_alive, R[st, a, s2], torch.zeros((), dtype=R.dtype))
        for k, v in (("states", st), ("actions", a), ("rewards", paid), ("next_states", s2),
                     ("terminated", term), ("truncated", trunc), ("mask", was_alive)):
            cols[k].append(v)
        alive = was_alive & ~term
        s = torch.where(alive, s2, st)
    ep = {k: torch.stack(v, -1) for k, v in cols.items()}
    return Episodes(**ep), prob


def _safe_cdf(p: torch.Tensor) -> torch.Tensor:
    """Cumulative sums of probabilities ``p`` along the last axis, for drawing ``(cdf <= u).sum(-1)``, u in [0, 1).

    From the last positive entry on they are set to 2, so round-off in the sum can never
    select an outcome of probability zero.
    """
    cdf = p.cumsum(-1)
    last = (p > 0).long().cumsum(-1).argmax(-1, keepdim=True)
    return cdf.masked_fill(torch.arange(p.shape[-1], device=p.device) >= last, 2.0)


# ---- small hand-made MDPs that make the lessons visible ------------------------------------

def coin_flips(horizon: int = 10, gamma: float = 1.0, noise: float = 1.0, edge: float = 0.1) -> TabularMDP:
    """Each step a fair coin pays ``noise`` whatever the agent does; action 1 earns ``edge`` more.

    Two states (the coin's last face), two actions. The coin's rewards are pure noise for the
    policy gradient: the full return carries all of them into every step's weight, the
    reward-to-go only the ones that come after the action.
    """
    P = torch.full((2, 2, 2), 0.5, dtype=torch.float64)
    R = torch.zeros(2, 2, 2, dtype=torch.float64)
    R[:, :, 1] += noise          # heads pays
    R[:, 1, :] += edge           # action 1 is better
    return TabularMDP(P, R, torch.tensor([0.5, 0.5], dtype=torch.float64), gamma, horizon, name="coin_flips",
                      state_names=["tails", "heads"], action_names=["a0", "a1"])


def early_rewards(horizon: int = 10, gamma: float = 1.0) -> TabularMDP:
    """A chain whose big, random rewards come early and whose decision matters only at the end.

    States 0..n-1 walk forward one step at a time. Actions 'stay calm'/'gamble' in the first half pay a
    random ±2 (same mean), so they add variance but no signal; in the second half action 1 pays +1.
    """
    n = horizon + 1
    S = 2 * n  # (position, coin) pairs: the coin is the last random outcome
    P = torch.zeros(S, 2, S, dtype=torch.float64)
    R = torch.zeros(S, 2, S, dtype=torch.float64)
    for pos in range(n):
        for c in range(2):
            s = 2 * pos + c
            nxt = min(pos + 1, n - 1)
            for a in range(2):
                if pos == n - 1:
                    P[s, a, s] = 1.0
                    continue
                P[s, a, 2 * nxt] = 0.5
                P[s, a, 2 * nxt + 1] = 0.5
                if pos < horizon // 2:
                    R[s, a, 2 * nxt + 1] = 2.0 if a == 1 else 1.0
                    R[s, a, 2 * nxt] = -2.0 if a == 1 else -1.0
                elif a == 1:
                    R[s, a, :] = 1.0
    mu0 = torch.zeros(S, dtype=torch.float64)
    mu0[0] = 1.0
    return TabularMDP(P, R, mu0, gamma, horizon, name="early_rewards")


def delayed_reward(length: int = 6, horizon: int | None = None, gamma: float = 1.0, slip: float = 0.1) -> TabularMDP:
    """A corridor of ``length`` cells: 'right' moves on (slipping back with prob. ``slip``), 'left' moves back.

    The only reward, +1, comes on reaching the last cell, which ends the episode. Credit for the
    early actions must travel back through the whole delay.
    """
    S = length
    P = torch.zeros(S, 2, S, dtype=torch.float64)
    R = torch.zeros(S, 2, S, dtype=torch.float64)
    for s in range(S - 1):
        left = max(s - 1, 0)
        P[s, 0, left] += 1.0
        P[s, 1, s + 1] += 1.0 - slip
        P[s, 1, left] += slip
        R[s, :, S - 1] = 1.0
    P[S - 1, :, S - 1] = 1.0
    R[S - 1] = 0.0
    mu0 = torch.zeros(S, dtype=torch.float64)
    mu0[0] = 1.0
    return TabularMDP(P, R, mu0, gamma, horizon or 3 * length, name="delayed_reward",
                      action_names=["left", "right"])


def frozen_lake(horizon: int = 30, gamma: float = 0.99, slippery: bool = True) -> TabularMDP:
    """FrozenLake 4x4 from gymnasium as a :class:`TabularMDP`."""
    import gymnasium as gym
    return TabularMDP.from_gymnasium(gym.make("FrozenLake-v1", is_slippery=slippery), horizon, gamma)
