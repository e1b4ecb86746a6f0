"""Exercise checks of notebook 05 (PPO), the two build exercises: ``05.ppo_loss`` against
:func:`~pgcourse.ppo.ppo_loss` (its value, statistics and the gradient of every parameter) and ``05.ppo_update``
against :func:`~pgcourse.ppo.ppo_update` (the statistics of one update on a CartPole batch, and a short CartPole
training run with the learner's update against the reference update at the same seed).
"""
from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from typing import Any

import torch

from ..ppo import ActorCritic, PPOConfig, ppo, ppo_loss, ppo_update, rollout_batch
from ..rollout import Collector, make_vec_env
from . import Case, derive, differ, exercise
from .losses import leaves


# ---- 05.ppo_loss (build) -------------------------------------------------------------------------------

class Agent(ActorCritic):
    """An :class:`~pgcourse.ppo.ActorCritic` that prints in one line in a failing case's message."""

    def __repr__(self) -> str:
        sizes = [m.out_features for m in self.actor if isinstance(m, torch.nn.Linear)]
        return f"<ActorCritic: actor 4 -> {' -> '.join(map(str, sizes))}, critic 4 -> {' -> '.join(map(str, sizes[:-1]))} -> 1>"


class Batch(Mapping):
    """A read-only dict of equally long tensors (``batch["obs"]``, ``.items()``) that prints in one line."""

    def __init__(self, data: dict[str, torch.Tensor]):
        self._data = dict(data)

    def __getitem__(self, key: str) -> torch.Tensor:
        return self._data[key]

    def __iter__(self):
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        n = next(iter(self._data.values())).shape[0]
        return f"<{n} samples: " + ", ".join(f"{k} {tuple(v.shape)}" for k, v in self._data.items()) + ">"


def small_agent(g: torch.Generator, hidden: tuple[int, ...] = (16,)) -> ActorCritic:
    """A CartPole-sized ActorCritic whose every parameter is drawn from ``g`` (not from torch's global seed)."""
    agent = Agent(4, 2, hidden).double()
    with torch.no_grad():
        for p in agent.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * (0.6 if p.dim() > 1 else 0.1))
    return agent


def random_minibatch(agent: ActorCritic, g: torch.Generator, n: int, spread: float) -> dict[str, torch.Tensor]:
    """A minibatch for ``agent``: old log-probs ``spread`` away from the current ones (ratios e^{±spread})."""
    obs = torch.randn(n, 4, generator=g, dtype=torch.float64)
    actions = torch.randint(0, 2, (n,), generator=g)
    with torch.no_grad():
        logp = torch.log_softmax(agent.actor(obs), -1).gather(-1, actions[:, None]).squeeze(-1)
    return Batch({"obs": obs, "actions": actions,
                  "logp": logp + spread * torch.randn(n, generator=g, dtype=torch.float64),
                  "values": torch.randn(n, generator=g, dtype=torch.float64),
                  "advantages": 1.5 * torch.randn(n, generator=g, dtype=torch.float64) + 0.4,
                  "returns": torch.randn(n, generator=g, dtype=torch.float64) * 2 + 1})


class LossExpected(dict):
    """What a 05.ppo_loss case expects: the loss, two statistics (shown), and every parameter and its gradient."""

    params: dict[str, torch.Tensor]
    grads: dict[str, torch.Tensor]


def _expected_ppo_loss(agent: ActorCritic, mb: dict, cfg: PPOConfig) -> LossExpected:
    a = copy.deepcopy(agent)
    loss, st = ppo_loss(a, mb, cfg)
    names = [n for n, _ in a.named_parameters()]
    grads = torch.autograd.grad(loss, list(a.parameters()), allow_unused=True)
    out = LossExpected(loss=loss.detach(), approx_kl=float(st["approx_kl"]), clip_fraction=float(st["clip_fraction"]))
    out.params = {n: p.detach().clone() for n, p in agent.named_parameters()}
    out.grads = {n: (g if g is not None else torch.zeros_like(p)) for n, g, p in zip(names, grads, a.parameters())}
    return out


def _hint(name: str) -> str:
    return ("the critic's parameters: check the value loss value_coef * 0.5 * mean((V - returns)^2)"
            if name.startswith("critic") else
            "the actor's parameters: check the clipped surrogate (advantages normalized within the minibatch, "
            "old_logp constant) and the entropy bonus (- entropy_coef * mean entropy)")


def compare_ppo_loss(got: Any, expected: LossExpected) -> str | None:
    """(loss, stats): the loss value, stats approx_kl and clip_fraction, and the gradient of every agent parameter."""
    if not (isinstance(got, tuple) and len(got) == 2 and isinstance(got[1], dict)):
        return "return a pair (loss, stats), stats a dict with 'approx_kl' and 'clip_fraction'"
    loss, st = got
    if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
        return "the loss must be a scalar (0-dim) tensor"
    why = differ(loss.detach(), expected["loss"])
    if why:
        return f"loss value: {why}"
    for k in ("approx_kl", "clip_fraction"):
        if k not in st:
            return f"stats has no {k!r}"
        why = differ(float(st[k]), expected[k])
        if why:
            return f"stats[{k!r}]: {why}"
    if loss.grad_fn is None:
        return "the loss carries no gradient: compute it from agent(obs), don't detach it"
    found = leaves(loss)
    by_name = {}
    for name, value in expected.params.items():
        hit = [x for x in found if x.shape == value.shape and torch.equal(x.detach(), value)]
        if hit:
            by_name[name] = hit[0]
    names = list(by_name)
    grads = dict(zip(names, torch.autograd.grad(loss, [by_name[n] for n in names], allow_unused=True,
                                                retain_graph=True))) if names else {}
    for name, g_ref in expected.grads.items():
        g = grads.get(name)
        g = torch.zeros_like(g_ref) if g is None else g
        why = differ(g, g_ref)
        if why:
            return f"gradient of {name}: {why} ({_hint(name)})"
    return None


@exercise("05.ppo_loss", points=2, kind="build", compare=compare_ppo_loss, atol=1e-7, rtol=1e-5)
def ppo_loss_cases(gen: torch.Generator) -> list[Case]:
    """PPO's minibatch loss L^CLIP + c_v ½ mean (V − R̂)² − c_e mean H and its statistics, on random agents and minibatches."""
    def case(k, cfg, note, n=24, spread=0.3, weight=1.0):
        g = derive(gen, 40 + k)
        agent = small_agent(g)
        mb = random_minibatch(agent, g, n, spread)
        return Case((agent, mb, cfg), {}, _expected_ppo_loss(agent, mb, cfg), note, weight)

    base = PPOConfig()
    return [
        case(0, base, "ratios all 1 (old_logp = the current policy's: the first minibatch), default coefficients",
             spread=0.0),
        case(1, base, "ratios away from 1: the clip is active on some samples"),
        case(2, dataclasses.replace(base, value_coef=0.0, entropy_coef=0.0),
             "value_coef = 0 and entropy_coef = 0: the clipped surrogate alone"),
        case(3, dataclasses.replace(base, entropy_coef=0.2, value_coef=0.0),
             "entropy_coef = 0.2: the entropy bonus is SUBTRACTED from the loss (it rewards spread-out policies)"),
        case(4, dataclasses.replace(base, entropy_coef=0.0, value_coef=1.5),
             "value_coef = 1.5: the value loss value_coef * 0.5 * mean((V - returns)^2)"),
        case(5, dataclasses.replace(base, normalize_advantages=False), "normalize_advantages = False: the raw advantages"),
        case(6, dataclasses.replace(base, clip=False), "clip = False: the unclipped surrogate -mean(rho * A)", spread=0.5),
        case(7, base, "a minibatch of one sample: no advantage normalization (its standard deviation is undefined)", n=1),
    ]


# ---- 05.ppo_update (build) -----------------------------------------------------------------------------

def cartpole_batch(g: torch.Generator, n_envs: int = 4, n_steps: int = 32) -> tuple[ActorCritic, dict]:
    """A fresh CartPole agent (parameters from ``g``) and one GAE batch it collected, seeded from ``g``."""
    seed = int(torch.randint(0, 2 ** 31 - 1, (1,), generator=g))
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        agent = Agent(4, 2, (32, 32))
    finally:
        torch.random.set_rng_state(state)
    envs = make_vec_env("CartPole-v1", n_envs, seed=seed)
    try:
        batch = rollout_batch(Collector(envs, agent.actor, agent.critic, seed=seed).collect(n_steps), 0.99, 0.95)
    finally:
        envs.close()
    return agent, Batch(batch)


UPDATE_STATS = ("approx_kl", "clip_fraction")


TRAIN_STEPS = 4096


def train_with(update, seed: int) -> dict:
    """The harness of the training case: PPO on CartPole for TRAIN_STEPS env steps with ``update`` as its update;
    what it learned (every finished episode's return, and a checksum of the final parameters)."""
    cfg = PPOConfig(total_steps=TRAIN_STEPS, seed=seed)
    hist = ppo(cfg, progress=False, update=update)
    params = torch.cat([q.detach().reshape(-1) for q in hist.agent.parameters()])
    return {"episode_returns": [float(r) for r in hist.episode_returns], "param_sum": float(params.double().sum()),
            "param_norm": float(params.double().norm())}


def _compare_training(got: Any, expected: dict) -> str | None:
    if not isinstance(got, dict) or "episode_returns" not in got:
        return "the training run did not finish"
    mine, ref = got["episode_returns"], expected["episode_returns"]
    first = next((i for i, (a, b) in enumerate(zip(mine, ref)) if abs(a - b) > 1e-6), None)
    if first is not None or len(mine) != len(ref):
        at = first if first is not None else min(len(mine), len(ref))
        return (f"trained with your update, CartPole's episodes differ from the reference run at the same seed from "
                f"episode {at} on ({len(mine)} episodes against {len(ref)}; mean return {_mean(mine):.1f} against "
                f"{_mean(ref):.1f}): some step of your update differs")
    for k in ("param_sum", "param_norm"):
        why = differ(float(got[k]), float(expected[k]), atol=1e-4, rtol=1e-4)
        if why:
            return f"the same episodes, but the trained parameters differ ({k}: {why})"
    return None


def _mean(x: list[float]) -> float:
    return sum(x) / len(x) if x else float("nan")


def compare_update(got: Any, expected: dict) -> str | None:
    """The means over the minibatches of approx_kl and clip_fraction (each minibatch's, after the steps before it);
    for the training case, the episodes of a short CartPole run with the update, against the reference's."""
    if "episode_returns" in expected:
        return _compare_training(got, expected)
    if not isinstance(got, dict):
        return f"return a dict of statistics (means over the minibatches), got {type(got).__name__}"
    for k in UPDATE_STATS:
        if k not in got:
            return f"the returned dict has no {k!r} (the mean of the minibatches' {k})"
        why = differ(float(got[k]), float(expected[k]))
        if why:
            return (f"{k} (mean over the minibatches): {why}; each minibatch's statistics come from the parameters "
                    "after the steps before it, so a difference means some step differs (loss, zero_grad, "
                    "gradient clipping, the minibatch order)")
    return None


@exercise("05.ppo_update", points=3, kind="build", compare=compare_update, atol=1e-6, rtol=1e-4)
def ppo_update_cases(gen: torch.Generator) -> list[Case]:
    """One PPO update (epochs of minibatch steps on ppo_loss) on a CartPole batch; its statistics against the reference."""
    def case(k, note, **cfg_kw):
        g = derive(gen, 60 + k)
        agent, batch = cartpole_batch(g)
        cfg = PPOConfig(n_envs=4, n_steps=32, **{"n_epochs": 3, "n_minibatches": 4, **cfg_kw})
        opt = torch.optim.Adam(agent.parameters(), lr=cfg.lr, eps=cfg.adam_eps)
        gen_k = torch.Generator().manual_seed(int(torch.randint(0, 2 ** 31 - 1, (1,), generator=g)))
        a2, o2 = copy.deepcopy((agent, opt))
        expected = ppo_update(a2, o2, batch, cfg, copy.deepcopy(gen_k))
        return Case((agent, opt, batch, cfg, gen_k), {}, expected, note)

    seed = int(torch.randint(0, 10_000, (1,), generator=derive(gen, 63)))
    return [
        case(0, "3 epochs of 4 minibatches on a CartPole batch of 4 x 32 steps"),
        case(1, "a large learning rate (the clip and the gradient-norm clip both matter)", lr=0.03, max_grad_norm=0.2),
        case(2, "target_kl = 0.002: the epochs stop early once the mean approx_kl of an epoch exceeds it",
             lr=0.02, n_epochs=6, target_kl=0.002),
        Case((seed,), {}, train_with(ppo_update, seed),
             f"PPO trains CartPole for {TRAIN_STEPS} steps with your update; the same episodes as the reference "
             "update at the same seed", weight=2.0, call=train_with),
    ]
