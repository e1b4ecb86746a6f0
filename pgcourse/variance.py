r"""Many batch estimates :math:`\hat g` of the tabular policy gradient, and how far they are from the truth.

Each row of :func:`gradient_samples` is one batch's estimate

.. math:: \hat g = \frac1B \sum_{i=1}^B \sum_t \nabla_\theta\log\pi_\theta(a^i_t\mid s^i_t)\,\Psi^i_t ,

with the score of the tabular softmax in closed form (no autograd, all episodes at once).
:func:`compare` reports, for each Ψ, the bias, the variance and the MSE against the exact
gradient, each with its standard error.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Callable, Sequence, Union

import torch

from . import estimators as est
from .baselines import state_value_baseline
from .device import generator as make_generator
from .mdp import Episodes, TabularMDP, all_episodes
from .policies import softmax_score_sum
from .validate import float_tensor, positive_int, same_shape

PSI_FORMS = ("full_return", "reward_to_go", "reward_to_go_minus_value", "q_value", "advantage", "td_residual")
EXTRA_FORMS = ("reward_to_go_minus_baseline",)
PsiFn = Callable[[Episodes, TabularMDP, torch.Tensor], torch.Tensor]


def exact_step_values(mdp: TabularMDP, logits: torch.Tensor, ep: Episodes):
    """V_t(s_t), Q_t(s_t, a_t) and V_{t+1}(s_{t+1}) of the exact MDP at every step of ``ep`` (N, H)."""
    V, Q = mdp.values(logits.to(ep.rewards.dtype))
    t = torch.arange(ep.states.shape[-1], device=ep.states.device).expand_as(ep.states)
    v = state_value_baseline(V, ep.states)
    q = Q[t, ep.states, ep.actions]
    v_next = torch.where(ep.terminated, torch.zeros_like(v), V[t + 1, ep.next_states])
    return v, q, v_next


def psi_weights(name: str, ep: Episodes, mdp: TabularMDP, logits: torch.Tensor, *, discount_t: bool = True,
                baseline=None, action_baseline=None) -> torch.Tensor:
    """The weights Ψ_t (N, H) of the named form for sampled episodes, using the exact V and Q of ``mdp``."""
    g, r, dones = mdp.gamma, ep.rewards, ep.dones
    if name == "full_return":
        return est.full_return_weights(r, g, dones)
    if name == "reward_to_go":
        return est.reward_to_go_weights(r, g, dones, discount_t=discount_t)
    if name == "reward_to_go_minus_baseline":
        return est.baseline_weights(r, _baseline_table(baseline, action_baseline, ep, mdp, r), g, dones,
                                    discount_t=discount_t)
    v, q, v_next = exact_step_values(mdp, logits, ep)
    if name == "reward_to_go_minus_value":
        return est.baseline_weights(r, v, g, dones, discount_t=discount_t)
    if name == "q_value":
        return est.q_weights(q, g, dones, discount_t=discount_t)
    if name == "advantage":
        return est.advantage_weights(q - v, g, dones, discount_t=discount_t)
    if name == "td_residual":
        return est.td_residual_weights(r, v, v_next, ep.terminated, ep.truncated, g, discount_t=discount_t)
    raise ValueError(f"psi must be one of {PSI_FORMS + EXTRA_FORMS} or a callable, got {name!r}")


def _baseline_table(baseline, action_baseline, ep: Episodes, mdp: TabularMDP, like: torch.Tensor) -> torch.Tensor:
    if (baseline is None) == (action_baseline is None):
        raise ValueError("psi='reward_to_go_minus_baseline' needs exactly one of baseline= or action_baseline=")
    if action_baseline is not None:
        b = torch.as_tensor(action_baseline, dtype=like.dtype, device=like.device)
        if tuple(b.shape) != (mdp.n_states, mdp.n_actions):
            raise ValueError(f"action_baseline must be shaped (S, A)=({mdp.n_states}, {mdp.n_actions}), got {tuple(b.shape)}")
        return b[ep.states, ep.actions]
    if callable(baseline):
        return _check_weights(baseline(ep), "baseline", like)
    b = torch.as_tensor(baseline, dtype=like.dtype, device=like.device)
    if b.dim() == 0:
        return b.expand_as(like)
    if tuple(b.shape) == (mdp.n_states,):
        return b[ep.states]
    if tuple(b.shape) in ((mdp.horizon, mdp.n_states), (mdp.horizon + 1, mdp.n_states)):
        return state_value_baseline(b, ep.states)
    raise ValueError(f"baseline must be a number, (S,), (H, S) or a callable; got shape {tuple(b.shape)}")


def by_batch(ep: Episodes, batch_size: int) -> Episodes:
    """The episodes of consecutive batches (rows ``j*B ... j*B + B - 1`` form batch j) laid out
    (B, n_batches, H): ``view[:, j]`` is batch j, and axis 0 runs over the episodes of one batch,
    so a mean over axis 0 (e.g. :func:`pgcourse.baselines.batch_mean_baseline`) is a mean within each batch."""
    batch_size = positive_int(batch_size, "batch_size")
    n, H = ep.states.shape
    if n % batch_size:
        raise ValueError(f"batch_size={batch_size} must divide the number of episodes, {n}")
    return Episodes(**{f.name: getattr(ep, f.name).view(n // batch_size, batch_size, H).transpose(0, 1)
                       for f in fields(ep)})


def _unbatch(w: torch.Tensor) -> torch.Tensor:
    return w.transpose(0, 1).reshape(-1, w.shape[-1])


def _check_weights(w, name: str, like: torch.Tensor) -> torch.Tensor:
    if not isinstance(w, torch.Tensor):
        raise TypeError(f"{name} must return a tensor shaped like episodes.rewards, got {type(w).__name__}")
    w = float_tensor(w, f"the output of {name}", min_dim=0).to(like.dtype)
    if w.dim() == 0:
        return w.expand_as(like)
    same_shape(w, f"the output of {name}", like, "episodes.rewards")
    return w


def gradient_samples(mdp: TabularMDP, logits: torch.Tensor, psi: Union[str, PsiFn], batch_size: int, n_batches: int,
                     seed: int | torch.Generator = 0, *, discount_t: bool = True, baseline=None,
                     action_baseline=None, chunk_episodes: int = 1 << 17) -> torch.Tensor:
    """``n_batches`` independent batch estimates ĝ of ∇J, shaped (n_batches, S, A).

    ``psi`` is a name in :data:`PSI_FORMS` (or ``"reward_to_go_minus_baseline"`` with ``baseline=``
    a number, an (S,) or (H, S) table, or ``action_baseline=`` an (S, A) table, which is biased), or
    a callable ``(episodes, mdp, logits) -> weights``. ``discount_t=False`` drops γᵗ (biased).
    A callable ``psi`` or ``baseline`` gets the episodes of many batches at once, laid out
    (batch_size, n, H) by :func:`by_batch` (axis 0: the episodes of one batch), and returns a
    tensor of that shape; so ``baseline=lambda ep: batch_mean_baseline(G(ep), ep.mask)`` is a
    mean within each batch. Runs on the device of ``logits``.
    """
    if not isinstance(mdp, TabularMDP):
        raise TypeError(f"mdp must be a TabularMDP, got {type(mdp).__name__}")
    logits = mdp._check_logits(logits).detach()
    if not callable(psi):
        if not isinstance(psi, str):
            raise TypeError(f"psi must be a string or a callable, got {type(psi).__name__}")
        if psi not in PSI_FORMS + EXTRA_FORMS:
            raise ValueError(f"psi must be one of {PSI_FORMS + EXTRA_FORMS} or a callable, got {psi!r}")
    batch_size = positive_int(batch_size, "batch_size")
    n_batches = positive_int(n_batches, "n_batches")
    gen = make_generator(seed, logits.device)
    per_chunk = max(1, chunk_episodes // batch_size)
    out = []
    for first in range(0, n_batches, per_chunk):
        nb = min(per_chunk, n_batches - first)
        ep = mdp.sample(logits, nb * batch_size, gen)
        batched = callable(psi) or callable(baseline)
        view = by_batch(ep, batch_size) if batched else ep
        if callable(psi):
            w = _check_weights(psi(view, mdp, logits), "psi", view.rewards)
        else:
            w = psi_weights(psi, view, mdp, logits, discount_t=discount_t, baseline=baseline,
                            action_baseline=action_baseline)
        if batched:
            w = _unbatch(w)
        m = ep.mask
        group = (torch.arange(nb * batch_size, device=m.device) // batch_size).unsqueeze(-1).expand_as(m)
        sums = softmax_score_sum(logits.to(w.dtype), ep.states[m], ep.actions[m], w[m], group[m], nb)
        out.append(sums / batch_size)
    return torch.cat(out).to(logits.dtype)



def gradient_samples_shared(mdp: TabularMDP, logits: torch.Tensor, psis: Sequence[Union[str, PsiFn]],
                            batch_size: int, n_batches: int, seed: int | torch.Generator = 0,
                            chunk_episodes: int = 1 << 17) -> list[torch.Tensor]:
    """:func:`gradient_samples` for several Ψ on the SAME episodes, sampled once: one (n_batches, S, A) tensor per Ψ.

    Each result equals ``gradient_samples(mdp, logits, psi, batch_size, n_batches, seed)`` (same seed, same
    episodes), at the cost of one sampling instead of ``len(psis)``; a callable Ψ sees the episodes laid
    out by :func:`by_batch`, a name in :data:`PSI_FORMS` the plain (n, H) batch.
    """
    if not isinstance(mdp, TabularMDP):
        raise TypeError(f"mdp must be a TabularMDP, got {type(mdp).__name__}")
    logits = mdp._check_logits(logits).detach()
    psis = list(psis)
    if not psis:
        raise ValueError("psis must name at least one Ψ")
    for p in psis:
        if not callable(p) and p not in PSI_FORMS:
            raise ValueError(f"each of psis must be one of {PSI_FORMS} or a callable, got {p!r}")
    batch_size = positive_int(batch_size, "batch_size")
    n_batches = positive_int(n_batches, "n_batches")
    gen = make_generator(seed, logits.device)
    per_chunk = max(1, chunk_episodes // batch_size)
    out: list[list[torch.Tensor]] = [[] for _ in psis]
    for first in range(0, n_batches, per_chunk):
        nb = min(per_chunk, n_batches - first)
        ep = mdp.sample(logits, nb * batch_size, gen)
        view = by_batch(ep, batch_size)
        m = ep.mask
        group = (torch.arange(nb * batch_size, device=m.device) // batch_size).unsqueeze(-1).expand_as(m)
        for k, p in enumerate(psis):
            w = (_unbatch(_check_weights(p(view, mdp, logits), "psi", view.rewards)) if callable(p)
                 else psi_weights(p, ep, mdp, logits))
            out[k].append(softmax_score_sum(logits.to(w.dtype), ep.states[m], ep.actions[m], w[m], group[m], nb)
                          / batch_size)
    return [torch.cat(x).to(logits.dtype) for x in out]


def testable_coordinates(mdp: TabularMDP, logits: torch.Tensor, n_episodes: int, min_count: float = 100.0
                         ) -> torch.Tensor:
    r"""Boolean (S, A): the coordinates of ĝ whose mean over ``n_episodes`` a z-test may trust.

    Two kinds are left out. (1) In each state the coordinates sum to zero (:math:`\sum_a \partial\log\pi(a\mid s)
    / \partial\theta_{s,b} = 0`), so one of them, that of the most likely action, is redundant. (2) A rare
    action, expected fewer than ``min_count`` times, :math:`n \sum_t d_t(s)\,\pi(a\mid s) <` ``min_count``:
    its coordinate's mean is a rare-event average (usually it never happened), far from normal, so its
    z-score means nothing.
    """
    logits = mdp._check_logits(logits).detach()
    n = positive_int(n_episodes, "n_episodes")
    pi = torch.softmax(logits.double(), -1)
    expected = n * mdp.state_visitation(logits.double()).sum(0).unsqueeze(-1) * pi
    keep = expected >= float(min_count)
    keep[torch.arange(mdp.n_states), pi.argmax(-1)] = False
    return keep.cpu()


@dataclass
class ExactMoments:
    """The exact mean and total variance of one episode's estimate ĝ, and over how many trajectories."""

    mean: torch.Tensor      # E[ĝ], shaped (S, A)
    trace_var: float        # tr Cov[ĝ] of one episode; a batch of B episodes has trace_var / B
    n_trajectories: int


def exact_moments(mdp: TabularMDP, logits: torch.Tensor, psi: Union[str, PsiFn], *, discount_t: bool = True,
                  max_episodes: int = 200_000) -> ExactMoments:
    r"""E[ĝ] and tr Cov[ĝ] of one episode's :math:`\hat g = \sum_t \nabla\log\pi(a_t\mid s_t)\,\Psi_t`, summed exactly.

    Every trajectory of ``mdp`` (:func:`pgcourse.mdp.all_episodes`, small MDPs only) with its probability:
    :math:`\mathbb E[\hat g] = \sum_\tau p(\tau)\,\hat g(\tau)` and :math:`\operatorname{tr}\operatorname{Cov}[\hat g]
    = \sum_\tau p(\tau)\lVert\hat g(\tau)\rVert^2 - \lVert\mathbb E\hat g\rVert^2`, with no sampling error; so an
    unbiased Ψ gives ``mean`` equal to ``mdp.exact_gradient(logits)`` to rounding. ``psi`` as in
    :func:`gradient_samples` (a callable gets all the trajectories as one (M, H) batch).
    """
    if not isinstance(mdp, TabularMDP):
        raise TypeError(f"mdp must be a TabularMDP, got {type(mdp).__name__}")
    logits = mdp._check_logits(logits).detach().double().cpu()
    ep, p = all_episodes(mdp, logits, max_episodes)
    if callable(psi):
        w = _check_weights(psi(ep, mdp, logits), "psi", ep.rewards)
    else:
        w = psi_weights(psi, ep, mdp, logits, discount_t=discount_t)
    m = ep.mask
    rows = torch.arange(len(ep)).unsqueeze(-1).expand_as(m)
    g = softmax_score_sum(logits, ep.states[m], ep.actions[m], w.detach().double()[m], rows[m], len(ep))  # (M, S, A)
    mean = torch.einsum("m,msa->sa", p, g)
    second = float((p * g.pow(2).sum((1, 2))).sum())
    return ExactMoments(mean, second - float(mean.pow(2).sum()), len(ep))


@dataclass
class Row:
    """One Ψ's figures: each with its standard error."""

    psi: str
    bias: float
    bias_se: float
    variance: float
    variance_se: float
    mse: float
    mse_se: float

    @property
    def distance_in_noise(self) -> float:
        """‖ḡ − g‖ in units of the noise √(tr Σ / n): about 1 for an unbiased Ψ (not 0); ≫ 1 is a bias."""
        return self.bias / self.bias_se if self.bias_se > 0 else (0.0 if self.bias == 0 else math.inf)


def summarize(samples: torch.Tensor, exact: torch.Tensor, name: str = "") -> Row:
    r"""Bias ‖ḡ − g‖, total variance tr Σ, and MSE E‖ĝ − g‖² of ``samples`` (n, ...) against ``exact``.

    Standard errors: for the bias, :math:`\sqrt{\operatorname{tr}\Sigma/n}`, the norm that noise alone gives
    :math:`\lVert\bar g - g\rVert` (so an unbiased Ψ shows bias ≈ bias_se, not 0, and only a bias several
    times bias_se is real; it also bounds the standard error of the norm from above); for variance and MSE,
    the standard error of the mean of the per-batch squared norms.
    """
    n = samples.shape[0]
    if n < 2:
        raise ValueError("samples needs at least 2 batches to estimate a variance")
    x = samples.reshape(n, -1).double()
    g = exact.reshape(-1).double().to(x.device)
    mean = x.mean(0)
    dev2 = ((x - mean) ** 2).sum(-1) * n / (n - 1)
    err2 = ((x - g) ** 2).sum(-1)
    var = float(dev2.mean())
    se = lambda v: float(v.std() / math.sqrt(n))  # noqa: E731
    return Row(name, float((mean - g).norm()), math.sqrt(var / n), var, se(dev2), float(err2.mean()), se(err2))


@dataclass
class VarianceDifference:
    """Two total variances tr Cov and their difference a − b with its paired standard error (see below)."""

    n: int
    var_a: float
    var_b: float
    se: float               # standard error of var_a − var_b

    @property
    def diff(self) -> float:
        return self.var_a - self.var_b

    @property
    def z(self) -> float:
        """diff / se: ≈ N(0, 1) when the two variances are equal."""
        return self.diff / self.se if self.se > 0 else (0.0 if self.diff == 0 else math.copysign(math.inf, self.diff))

    def summary(self, names: tuple[str, str] = ("a", "b")) -> str:
        return (f"variance {names[0]} {self.var_a:.4g}, {names[1]} {self.var_b:.4g} (ratio {self.var_a / self.var_b:.3f}); "
                f"difference {self.diff:.3g} ± {self.se:.2g}, z = {self.z:.1f} (equal variances: z ~ N(0, 1)); "
                f"{self.n} paired batches")


def variance_difference(a: torch.Tensor, b: torch.Tensor) -> VarianceDifference:
    r"""Compare tr Cov of two sets of batch estimates (n, ...) batch by batch: :math:`d_i = \tfrac{n}{n-1}
    (\lVert a_i - \bar a\rVert^2 - \lVert b_i - \bar b\rVert^2)` has mean var_a − var_b (the variances
    :func:`summarize` reports) and SE :math:`s_d/\sqrt n`. Pairing is valid whether batch i of ``a`` and of ``b``
    share episodes (then the SE is usually smaller) or not."""
    a, b = float_tensor(a, "a"), float_tensor(b, "b")
    n = a.shape[0]
    if b.shape[0] != n or n < 3:
        raise ValueError(f"a and b need the same number (>= 3) of batches, got {n} and {b.shape[0]}")
    def sq(x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(n, -1).double()
        return ((x - x.mean(0)) ** 2).sum(-1) * n / (n - 1)
    da, db = sq(a), sq(b)
    return VarianceDifference(n, float(da.mean()), float(db.mean()), float((da - db).std() / math.sqrt(n)))


class VarianceTable:
    """The rows of :func:`compare`, printed as a fixed-width table (and as HTML in a notebook)."""

    def __init__(self, rows: Sequence[Row], title: str = ""):
        self.rows = list(rows)
        self.title = title

    def __getitem__(self, psi: str) -> Row:
        for r in self.rows:
            if r.psi == psi:
                return r
        raise KeyError(psi)

    NOTE = ("‖ḡ − g‖: distance of the mean estimate from the exact gradient; noise: √(tr Σ / n), what the distance "
            "is with NO bias\n(so an unbiased Ψ reads ratio ≈ 1, not 0; a ratio well above 1 is a bias); "
            "variance tr Σ and MSE E‖ĝ − g‖² with ±1 SE")

    def __str__(self) -> str:
        head = f"{'psi':<28}{'‖ḡ − g‖':>11}{'noise':>10}{'ratio':>7}{'variance':>24}{'MSE':>24}"
        lines = ([self.title] if self.title else []) + [head, "-" * len(head)]
        for r in self.rows:
            lines.append(f"{r.psi:<28}{r.bias:>11.4g}{r.bias_se:>10.2g}{r.distance_in_noise:>7.2f}"
                         f"{_pm(r.variance, r.variance_se):>24}{_pm(r.mse, r.mse_se):>24}")
        return "\n".join(lines + [self.NOTE])

    __repr__ = __str__


def _pm(x: float, se: float) -> str:
    return f"{x:.4g} ± {se:.2g}"


def compare(mdp: TabularMDP, logits: torch.Tensor, psis: Sequence[str] = ("full_return", "reward_to_go", "advantage"),
            batch_size: int = 16, n_batches: int = 2000, seed: int = 0, **kwargs) -> VarianceTable:
    """Bias, variance and MSE of ĝ against the exact gradient for each Ψ in ``psis`` (same seed each)."""
    exact = mdp.exact_gradient(logits)
    rows = [summarize(gradient_samples(mdp, logits, p, batch_size, n_batches, seed, **kwargs), exact, p)
            for p in psis]
    return VarianceTable(rows, f"{mdp.name}: batch size {batch_size}, {n_batches} batches, gamma={mdp.gamma}, "
                               f"horizon={mdp.horizon}")
