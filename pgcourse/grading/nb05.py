"""Exercise checks of notebook 05 (PPO).

Every expected value comes from reference code: ``05.ratio_variance`` by enumerating every trajectory (not by the
closed form the learner predicts); ``05.clipped_surrogate`` and ``05.approx_kl`` by :func:`~pgcourse.ppo.clip_loss`;
``05.minibatch_epochs`` by :func:`~pgcourse.ppo.minibatch_epochs`; ``05.ppo_loss`` by :func:`~pgcourse.ppo.ppo_loss`
(its value, statistics and the gradient of every parameter); ``05.ppo_update`` by :func:`~pgcourse.ppo.ppo_update`
(the statistics of one update; where the grading API can run a harness, also the parameters after the update
and a short CartPole training run with the learner's update against the reference, at the same seed).
"""
from __future__ import annotations

import copy
import dataclasses
import itertools
import math
from collections.abc import Mapping
from typing import Any

import torch

from ..ppo import ActorCritic, PPOConfig, clip_loss, minibatch_epochs, ppo, ppo_loss, ppo_update, rollout_batch
from ..rollout import Collector, make_vec_env
from . import Case, derive, differ, exercise
from .losses import LossAndGrad, compare_loss_and_grad, expected_loss_and_grad, leaves


# ---- 05.ratio_variance (predict) ------------------------------------------------------------------

def enumerated_ratio_variance(p_old: torch.Tensor, p_new: torch.Tensor, horizon: int) -> float:
    """Var of ρ(τ) = Π_t p_new(a_t)/p_old(a_t), a_t ~ p_old i.i.d., by summing over all A^H action sequences."""
    m1 = m2 = 0.0
    po, pn = p_old.tolist(), p_new.tolist()
    for seq in itertools.product(range(len(po)), repeat=horizon):
        p = math.prod(po[a] for a in seq)
        rho = math.prod(pn[a] / po[a] for a in seq)
        m1 += p * rho
        m2 += p * rho * rho
    return m2 - m1 * m1


@exercise("05.ratio_variance", points=2, kind="predict", atol=1e-9, rtol=1e-6)
def ratio_variance_cases(gen: torch.Generator) -> list[Case]:
    """Var_old[ρ(τ)] for H independent steps, compared with the exact value by enumerating every trajectory."""
    def probs(n, g, temp=1.0):
        return torch.softmax(torch.randn(n, generator=g, dtype=torch.float64) * temp, -1)

    def case(p_old, p_new, H, note, weight=1.0):
        p_old, p_new = torch.as_tensor(p_old, dtype=torch.float64), torch.as_tensor(p_new, dtype=torch.float64)
        return Case((p_old, p_new, H), {}, enumerated_ratio_variance(p_old, p_new, H), note, weight)

    g = derive(gen, 11)
    same = probs(3, g)
    one = float(0.15 + 0.7 * torch.rand(1, generator=g, dtype=torch.float64))
    q3 = probs(3, g, 0.7)
    p3, pn3 = probs(3, g, 0.5), probs(3, g, 0.5)
    zero = probs(3, g, 0.5)
    zero_new = torch.cat([torch.zeros(1, dtype=torch.float64), probs(2, g, 0.5)])
    return [
        case(same, same.clone(), 4, "p_new = p_old: every ratio is 1, so the variance is 0"),
        case([0.5, 0.5], [1 - one, one], 1, "one step: Var rho_t = chi^2 = sum_a p_new(a)^2 / p_old(a) - 1"),
        case(q3, probs(3, derive(gen, 12), 0.7), 1, "one step, three actions"),
        case([0.5, 0.5], [1 - one, one], 3, "H = 3 independent steps: E[rho(tau)^2] is a product over the steps, "
             "so Var rho(tau) = (1 + chi^2)^H - 1, not H chi^2", weight=2.0),
        case(p3, pn3, 5, "H = 5 steps, three actions: the variance grows exponentially in H", weight=2.0),
        case(zero, zero_new, 2, "p_new gives an action probability 0 (its ratio is 0): the formula still holds"),
    ]


# ---- 05.clipped_surrogate (debug) ----------------------------------------------------------------------

def _clip_loss_value(logp, old_logp, adv, clip_eps):
    return clip_loss(logp, old_logp, adv, clip_eps)[0]


def compare_clip(got: Any, expected: LossAndGrad) -> str | None:
    """The value must match clip_loss, and so must d loss / d logp (zero exactly where the clip is active)."""
    return compare_loss_and_grad(got, expected, " (it must be 0 exactly where the clip is active)")


@exercise("05.clipped_surrogate", points=2, kind="debug", compare=compare_clip)
def clipped_surrogate_cases(gen: torch.Generator) -> list[Case]:
    """L = −mean(min(ρA, clip(ρ, 1−ε, 1+ε)A)), ρ = exp(logp − old_logp); compared in value and in dL/dlogp."""
    def case(ratio, adv, clip_eps=0.2, note="", old=None, weight=1.0):
        ratio = torch.as_tensor(ratio, dtype=torch.float64)
        old = torch.full_like(ratio, -0.7) if old is None else old
        logp = (old + ratio.log()).detach().requires_grad_(True)
        adv = torch.as_tensor(adv, dtype=torch.float64)
        return Case((logp, old, adv), {"clip_eps": clip_eps},
                    expected_loss_and_grad(_clip_loss_value, logp, old, adv, clip_eps), note, weight)

    g = derive(gen, 5)
    old = -torch.rand(64, generator=g, dtype=torch.float64) * 2 - 0.05
    up = float(1.3 + 0.4 * torch.rand(1, generator=g, dtype=torch.float64))     # a ratio above 1 + eps
    down = float(0.4 + 0.35 * torch.rand(1, generator=g, dtype=torch.float64))  # a ratio below 1 - eps
    return [
        case([1.0, 1.0, 1.0], [1.0, -2.0, 0.5], 0.2, "ratios all 1 (the first minibatch): the loss is -mean(A)"),
        case([up, down], [1.0, 1.0], 0.2, "A > 0: flat above 1 + eps (gradient 0), the full rho*A below 1 - eps"),
        case([up], [-1.0], 0.2, "A < 0 and rho > 1 + eps: the update made a bad action MORE likely; the pessimistic "
             "min keeps the unclipped rho*A, whose gradient pulls it back (not 0)", weight=2.0),
        case([down], [-1.0], 0.2, "A < 0 and rho < 1 - eps: the bad action is already much less likely; the objective "
             "is flat at (1 - eps)*A there (gradient 0)", weight=2.0),
        case([1.1, 0.95, 1.19], [2.0, -1.0, 0.3], 0.2, "every ratio inside [1 - eps, 1 + eps]: no clipping"),
        case([1.3, 0.6, 1.05, 2.0], [1.0, -1.0, 1.0, -0.5], 0.1, "clip_eps = 0.1, both signs of A"),
        case(torch.exp(torch.randn(64, generator=g, dtype=torch.float64) * 0.3), torch.randn(64, generator=g,
             dtype=torch.float64), 0.2, "64 random ratios and advantages", old),
    ]


# ---- 05.approx_kl (transcribe) -------------------------------------------------------------------------

@exercise("05.approx_kl", points=1)
def approx_kl_cases(gen: torch.Generator) -> list[Case]:
    """mean((ρ − 1) − log ρ): the k3 estimator of KL(π_old ‖ π_θ) from actions sampled by π_old."""
    def case(logp, old_logp, note=""):
        logp, old_logp = torch.as_tensor(logp, dtype=torch.float64), torch.as_tensor(old_logp, dtype=torch.float64)
        kl = clip_loss(logp, old_logp, torch.ones_like(logp))[1]["approx_kl"]
        return Case((logp, old_logp), {}, float(kl), note)

    g = derive(gen, 6)
    x = -torch.rand(8, generator=g, dtype=torch.float64) * 3
    return [
        case([-0.7, -1.2, -0.1], [-0.7, -1.2, -0.1], "the same policy: 0"),
        case([0.0], [-0.6931471805599453], "one sample, ratio 2: (2 - 1) - log 2"),
        case([-2.0, -0.1], [-0.1, -2.0], "ratios below and above 1: each term is >= 0"),
        case(x + 0.05 * torch.randn(8, generator=g, dtype=torch.float64), x, "nearby policies: small and positive"),
        case(torch.log_softmax(torch.randn(500, 3, generator=g, dtype=torch.float64), -1)[:, 0],
             torch.log_softmax(torch.randn(500, 3, generator=g, dtype=torch.float64), -1)[:, 0], "500 samples"),
    ]


# ---- 05.minibatch_epochs (transcribe) ------------------------------------------------------------------

class FakeStep:
    """A stand-in for one gradient step: ``step(idx)`` returns ``{"approx_kl": kl}`` and changes nothing."""

    def __init__(self, kl: float):
        self.kl = kl

    def __call__(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        if not isinstance(idx, torch.Tensor) or idx.dtype != torch.long:
            raise TypeError(f"step(idx) expects a tensor of int64 indices, got {idx!r}")
        return {"approx_kl": torch.tensor(self.kl)}

    def __repr__(self) -> str:
        return f"<step(idx) -> {{'approx_kl': {self.kl}}}>"


@exercise("05.minibatch_epochs", points=2)
def minibatch_epochs_cases(gen: torch.Generator) -> list[Case]:
    """The index tensors visited, in order: per epoch a torch.randperm(n, generator=...) split by tensor_split."""
    def case(n, n_epochs, n_minibatches, seed, kl=0.0, target_kl=None, note=""):
        g = derive(gen, seed)
        expected = minibatch_epochs(FakeStep(kl), n, n_epochs, n_minibatches, copy.deepcopy(g), target_kl)
        return Case((FakeStep(kl), n, n_epochs, n_minibatches, g), {"target_kl": target_kl}, expected, note)

    return [
        case(8, 1, 2, 0, note="one epoch of two minibatches of 4"),
        case(10, 3, 4, 1, note="three epochs, each a fresh permutation; 10 samples in 4 minibatches: 3, 3, 2, 2"),
        case(5, 2, 5, 2, note="minibatches of one sample"),
        case(12, 1, 1, 3, note="one minibatch: the whole permuted batch"),
        case(16, 4, 2, 4, kl=0.05, target_kl=0.02, note="approx_kl 0.05 > target_kl 0.02: stop after the first epoch"),
        case(16, 4, 2, 5, kl=0.01, target_kl=0.02, note="approx_kl 0.01 <= target_kl 0.02: all four epochs"),
    ]


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


def compare_update(got: Any, expected: dict) -> str | None:
    """The means over the minibatches of approx_kl and clip_fraction (each minibatch's, after the steps before it)."""
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

    return [
        case(0, "3 epochs of 4 minibatches on a CartPole batch of 4 x 32 steps"),
        case(1, "a large learning rate (the clip and the gradient-norm clip both matter)", lr=0.03, max_grad_norm=0.2),
        case(2, "target_kl = 0.002: the epochs stop early once the mean approx_kl of an epoch exceeds it",
             lr=0.02, n_epochs=6, target_kl=0.002),
    ]
