"""Plain-Python reference loops, one step at a time, for the tests of pgcourse.returns and pgcourse.estimators.

They take nested lists (or tensors, turned into lists) shaped (..., T) and work row by row,
written straight from the definitions in COURSE.md, so the vectorized code has an independent check.
"""
from __future__ import annotations

import itertools

import torch


def rows(x: torch.Tensor):
    """Yield (index, list of floats/bools) for every row (last axis) of ``x``."""
    x = x.detach().cpu()
    for idx in itertools.product(*(range(n) for n in x.shape[:-1])):
        yield idx, x[idx].tolist()


def reward_to_go(rewards, gamma, dones):
    out = torch.zeros(rewards.shape, dtype=torch.float64)
    d = dones.cpu()
    for idx, r in rows(rewards):
        g = 0.0
        for t in reversed(range(len(r))):
            if bool(d[idx][t]):
                g = 0.0
            g = r[t] + gamma * g
            out[idx][t] = g
    return out


def discounted_return(rewards, gamma, dones):
    out = torch.zeros(rewards.shape, dtype=torch.float64)
    d = dones.cpu()
    for idx, r in rows(rewards):
        T, start = len(r), 0
        while start < T:
            end = start
            while end < T - 1 and not bool(d[idx][end]):
                end += 1
            ret = sum(gamma ** (k - start) * r[k] for k in range(start, end + 1))
            for k in range(start, end + 1):
                out[idx][k] = ret
            start = end + 1
    return out


def steps_since_start(dones):
    out = torch.zeros(dones.shape, dtype=torch.long)
    for idx, d in rows(dones):
        k = 0
        for t in range(len(d)):
            out[idx][t] = k
            k = 0 if d[t] else k + 1
    return out


def gae(rewards, values, next_values, terminated, truncated, gamma, lam):
    adv = torch.zeros(rewards.shape, dtype=torch.float64)
    v, nv = values.detach().cpu(), next_values.detach().cpu()
    term, trunc = terminated.cpu(), truncated.cpu()
    for idx, r in rows(rewards):
        a = 0.0
        for t in reversed(range(len(r))):
            te, tr = bool(term[idx][t]), bool(trunc[idx][t])
            delta = r[t] + gamma * (0.0 if te else float(nv[idx][t])) - float(v[idx][t])
            a = delta + gamma * lam * (0.0 if (te or tr) else a)
            adv[idx][t] = a
    return adv, adv + values.detach().cpu().double()


def n_step_advantage(rewards, values, next_values, terminated, truncated, gamma, n):
    """Σ_{l<k} γˡ r_{t+l} + γᵏ V_boot − V(s_t), k = min(n, steps left in t's episode); no bootstrap after a termination."""
    adv = torch.zeros(rewards.shape, dtype=torch.float64)
    v, nv = values.detach().cpu(), next_values.detach().cpu()
    term, trunc = terminated.cpu(), truncated.cpu()
    for idx, r in rows(rewards):
        T = len(r)
        for t in range(T):
            total, k = 0.0, 0
            while True:
                s = t + k
                total += gamma ** k * r[s]
                k += 1
                done = bool(term[idx][s]) or bool(trunc[idx][s])
                if k == n or done or s == T - 1:
                    boot = 0.0 if bool(term[idx][s]) else float(nv[idx][s])
                    total += gamma ** k * boot
                    break
            adv[idx][t] = total - float(v[idx][t])
    return adv
