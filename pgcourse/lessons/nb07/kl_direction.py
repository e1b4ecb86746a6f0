r"""Notebook 07, the KL direction: which KL each KL treatment follows, exactly.

On small categoricals (:func:`small_categoricals`) and on the LM's next-token distributions
(:func:`lm_token_rows`), every treatment of :mod:`pgcourse.kl` has its exact expected gradient compared
with the gradients of the reverse KL :math:`\mathrm{KL}(\pi\|\pi_{\text{ref}})` and the forward KL
:math:`\mathrm{KL}(\pi_{\text{ref}}\|\pi)`. :func:`optimum_rows` follows each treatment to where it leads
when it regularizes a reward, :math:`\max_\pi \mathbb E_\pi[r] - \beta\,\mathrm{KL}`.
"""
from __future__ import annotations

import copy
from typing import Sequence

import torch
from torch import nn

from ... import kl
from ...plots import new_figure
from ...stats import bias_test
from ...tinylm import completion_logits, sample

K = 6                                     # outcomes of the small categoricals
SEEDS = (0, 1, 2)
REWARD = (1.0, 0.7, 0.4, 0.0, 0.0, 0.0)   # the bandit of the optimum experiment
REF_PROBS = (0.05, 0.15, 0.3, 0.2, 0.2, 0.1)
BETAS = (0.3, 1.0, 3.0)
COLORS = {"k1_reward": "tab:blue", "k3_loss": "tab:red", "reverse_kl": "k", "k1_loss": "tab:gray",
          "k2_loss": "tab:purple", "k3_reward": "tab:orange"}


def small_categoricals(seeds: Sequence[int] = SEEDS, k: int = K, scale: float = 1.0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One (policy logits, reference logits) pair per seed: standard normal logits times ``scale``, float64."""
    pairs = []
    for s in seeds:
        g = torch.Generator().manual_seed(int(s))
        pairs.append((scale * torch.randn(k, generator=g, dtype=torch.float64),
                      scale * torch.randn(k, generator=g, dtype=torch.float64)))
    return pairs


def kl_rows(pairs: Sequence[tuple[torch.Tensor, torch.Tensor]],
            treatments: Sequence[str] = kl.ALL_TREATMENTS) -> list[dict]:
    """Per treatment over all ``pairs``: the largest distance of its exact expected gradient from the reverse
    and the forward KL's gradient (``err_reverse``, ``err_forward``, relative to the size of those
    gradients), the smallest cosines with them, and ``follows`` (the same for every pair, else ``"mixed"``)."""
    out = []
    for t in treatments:
        rows = [kl.gradient_table(z, r, (t,))[0] for z, r in pairs]
        scale = [max(float(kl.kl_gradient(z, r, d).abs().max()) for d in kl.DIRECTIONS) for z, r in pairs]
        follows = {row["follows"] for row in rows}
        out.append({"treatment": t,
                    "err_reverse": max(row["err_reverse"] / s for row, s in zip(rows, scale)),
                    "err_forward": max(row["err_forward"] / s for row, s in zip(rows, scale)),
                    "cos_reverse": min(row["cos_reverse"] for row in rows),
                    "cos_forward": min(row["cos_forward"] for row in rows),
                    "follows": follows.pop() if len(follows) == 1 else "mixed", "pairs": len(rows)})
    return out


def format_rows(rows: Sequence[dict]) -> str:
    """The KL-gradient table as text, one treatment a line."""
    head = (f"{'treatment':<11} {'follows':>8} {'|g − ∇KL(π‖ref)|':>18} {'|g − ∇KL(ref‖π)|':>18}"
            f" {'cos(g, ∇rev)':>13} {'cos(g, ∇fwd)':>13}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['treatment']:<11} {str(r['follows']):>8} {r['err_reverse']:>18.2e} {r['err_forward']:>18.2e}"
                     f" {r['cos_reverse']:>13.4f} {r['cos_forward']:>13.4f}")
    return "\n".join(lines)


def monte_carlo_rows(pairs: Sequence[tuple[torch.Tensor, torch.Tensor]], n: int = 20_000, seed: int = 0,
                     treatments: Sequence[str] = ("k1_reward", "k3_loss")) -> list[dict]:
    """For each treatment and pair, ``n`` single-sample gradients against (a) its exact expected gradient and
    (b) the gradient of the OTHER KL direction: the :func:`pgcourse.stats.bias_test` of each."""
    rows = []
    for t in treatments:
        for i, (z, r) in enumerate(pairs):
            draws = kl.sample_gradients(z, r, t, n, seed=seed + i)
            other = "forward" if kl.FOLLOWS[t] == "reverse" else "reverse"
            rows.append({"treatment": t, "pair": i, "own": bias_test(draws, kl.expected_gradient(z, r, t)),
                         "other": bias_test(draws, kl.kl_gradient(z, r, other)), "other_direction": other})
    return rows


# ---- on the language model's token distributions ---------------------------------------------------

def perturbed_copy(model: nn.Module, scale: float = 0.05, seed: int = 0) -> nn.Module:
    """A copy of ``model`` with every weight moved by ``scale`` × N(0, 1) × its tensor's std (a stand-in policy)."""
    out = copy.deepcopy(model)
    g = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for p in out.parameters():
            p.add_(scale * p.std().clamp_min(1e-3) * torch.randn(p.shape, generator=g, dtype=p.dtype).to(p.device))
    return out


def token_distributions(policy: nn.Module, ref: nn.Module, task, n_prompts: int = 32, seed: int = 0,
                        temperature: float = 1.0) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    r"""Sample ``n_prompts`` completions from ``policy`` and return ``(policy64, logits, ref_logits)``: a float64
    copy of the policy, its logits (M, V) at the M valid completion positions (differentiable in
    ``policy64``'s parameters) and the reference's there (constant): M next-token distributions
    :math:`\pi(\cdot\mid x, y_{<t})` and :math:`\pi_{\text{ref}}(\cdot\mid x, y_{<t})`."""
    dev = next(policy.parameters()).device
    prompts = task.sample_prompts(n_prompts, seed=seed, device=dev)
    roll = sample(policy, prompts, task.completion_len, task.eos, task.pad, seed=seed, temperature=temperature)
    pol64, ref64 = copy.deepcopy(policy).double(), copy.deepcopy(ref).double()
    logits = completion_logits(pol64, prompts, roll.tokens, temperature)[roll.mask]
    with torch.no_grad():
        ref_logits = completion_logits(ref64, prompts, roll.tokens, temperature)[roll.mask]
    return pol64, logits, ref_logits


def _param_grad(model: nn.Module, value: torch.Tensor) -> torch.Tensor:
    grads = torch.autograd.grad(value, [p for p in model.parameters() if p.requires_grad], allow_unused=True,
                                retain_graph=True)
    return torch.cat([torch.zeros(p.numel(), dtype=torch.float64) if g is None else g.flatten()
                      for g, p in zip(grads, model.parameters())])


def lm_token_rows(policy: nn.Module, ref: nn.Module, task, seeds: Sequence[int] = SEEDS, n_prompts: int = 32,
                  treatments: Sequence[str] = kl.TREATMENTS) -> list[dict]:
    r"""The identities on the LM, per token with its prefix fixed, in float64, one batch of sampled prefixes
    per seed. Per treatment: ``err_logits`` (the largest relative distance, over all positions and seeds, of
    the exact expected gradient in the logits from the KL it follows), ``err_params`` (the same for
    :math:`\nabla_\theta`, summed over the positions: :math:`\|g - \nabla_\theta\sum_t \mathrm{KL}_t\|/\|\nabla_\theta\sum_t
    \mathrm{KL}_t\|`), and ``cos_reverse`` / ``cos_forward`` (the parameter gradient's smallest cosine with
    each KL's), plus ``positions`` (token distributions seen) and ``n_params``."""
    out = {t: {"treatment": t, "err_logits": 0.0, "err_params": 0.0, "cos_reverse": 1.0, "cos_forward": 1.0,
               "follows": kl.FOLLOWS[t], "positions": 0} for t in treatments}
    for s in seeds:
        model, logits, ref_logits = token_distributions(policy, ref, task, n_prompts, seed=int(s))
        exact = {"reverse": _param_grad(model, kl.reverse_kl(logits, ref_logits).sum()),
                 "forward": _param_grad(model, kl.forward_kl(logits, ref_logits).sum())}
        z = logits.detach()
        for t in treatments:
            row = out[t]
            g_z = kl.expected_gradient(z, ref_logits, t)
            want_z = kl.kl_gradient(z, ref_logits, row["follows"])
            row["err_logits"] = max(row["err_logits"], float((g_z - want_z).abs().max() / want_z.abs().max()))
            g = _param_grad(model, kl.expected_surrogate(logits, ref_logits, t).sum())
            want = exact[row["follows"]]
            row["err_params"] = max(row["err_params"], float((g - want).norm() / want.norm()))
            row["cos_reverse"] = min(row["cos_reverse"], kl.cosine(g, exact["reverse"]))
            row["cos_forward"] = min(row["cos_forward"], kl.cosine(g, exact["forward"]))
            row["positions"] += logits.shape[0]
            row["n_params"] = g.numel()
    return list(out.values())


# ---- where each treatment leads ----------------------------------------------------------------------

def bandit() -> tuple[torch.Tensor, torch.Tensor]:
    """The (reward, reference logits) of the optimum experiment: reward falls from outcome 0 to 3..5."""
    return (torch.tensor(REWARD, dtype=torch.float64), torch.log(torch.tensor(REF_PROBS, dtype=torch.float64)))


def tv(p: torch.Tensor, q: torch.Tensor) -> float:
    """Total-variation distance :math:`\\tfrac12\\sum|p - q|`."""
    return 0.5 * float((p - q).abs().sum())


def optimum_rows(betas: Sequence[float] = BETAS, steps: int = 1000, lr: float = 3.0) -> list[dict]:
    r"""Per β: exact gradient ascent on :math:`\mathbb E_\pi[r]` with each treatment's KL gradient, started at
    :math:`\pi_{\text{ref}}`, with step :math:`\min(\text{lr}, 1.5/\beta)` (the KL's curvature grows with β); the total-variation distances of where it stops from the two optima
    (``k1_to_reverse``, ``k3_to_forward``, ``k3_to_reverse``), how far the two optima are apart, and the
    probability each puts on the outcomes with reward 0 (``zero_mass_*``)."""
    reward, ref = bandit()
    rows = []
    for beta in betas:
        rev, fwd = (kl.regularized_optimum(reward, ref, beta, d) for d in kl.DIRECTIONS)
        step = min(lr, 1.5 / beta)
        p1 = torch.softmax(kl.ascend(reward, ref, beta, "k1_reward", steps=steps, lr=step), -1)
        p3 = torch.softmax(kl.ascend(reward, ref, beta, "k3_loss", steps=steps, lr=step), -1)
        zero = reward == 0
        rows.append({"beta": beta, "k1_to_reverse": tv(p1, rev), "k3_to_forward": tv(p3, fwd),
                     "k3_to_reverse": tv(p3, rev), "optima_apart": tv(rev, fwd),
                     "zero_mass_reverse": float(rev[zero].sum()), "zero_mass_forward": float(fwd[zero].sum()),
                     "p_k1": p1, "p_k3": p3, "reverse": rev, "forward": fwd})
    return rows


# ---- figures -------------------------------------------------------------------------------------------

def plot_gradients(ax, logits: torch.Tensor, ref_logits: torch.Tensor,
                   treatments: Sequence[str] = kl.TREATMENTS) -> None:
    """Grouped bars: each treatment's exact expected gradient per outcome, with the two KLs' gradients as markers."""
    xs = torch.arange(logits.shape[-1]).double()
    w = 0.8 / len(treatments)
    for i, t in enumerate(treatments):
        g = kl.expected_gradient(logits, ref_logits, t)
        ax.bar((xs + (i - (len(treatments) - 1) / 2) * w).tolist(), g.tolist(), w, color=COLORS[t], label=t)
    for d, m in (("reverse", "_"), ("forward", "x")):
        ax.plot(xs.tolist(), kl.kl_gradient(logits, ref_logits, d).tolist(), ls="none", marker=m, ms=9, mew=2,
                color="k", label=f"∇KL({'π‖ref' if d == 'reverse' else 'ref‖π'})")
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xlabel("outcome x")
    ax.set_ylabel("expected gradient in the logit z_x")
    ax.legend(fontsize=7)


def plot_optima(ax, beta: float, reward: torch.Tensor | None = None, ref: torch.Tensor | None = None,
                ascended: torch.Tensor | None = None) -> None:
    r"""Bars: the reference, the reverse-KL optimum (where k1-as-reward leads) and the forward-KL optimum (where
    k3-in-the-loss leads) of :math:`\mathbb E_\pi[r] - \beta\,\mathrm{KL}`; optional dots: an ascent's endpoint."""
    if reward is None or ref is None:
        reward, ref = bandit()
    xs = torch.arange(reward.shape[-1]).double()
    bars = {"π_ref": (torch.softmax(ref, -1), "tab:gray"),
            "optimum, reverse KL (k1 as reward)": (kl.regularized_optimum(reward, ref, beta, "reverse"), "tab:blue"),
            "optimum, forward KL (k3 in the loss)": (kl.regularized_optimum(reward, ref, beta, "forward"), "tab:red")}
    for i, (label, (p, c)) in enumerate(bars.items()):
        ax.bar((xs + (i - 1) * 0.27).tolist(), p.tolist(), 0.27, color=c, label=label)
    if ascended is not None:
        ax.plot((xs + 0.27).tolist(), ascended.tolist(), ls="none", marker="o", ms=4, color="k",
                label="k3-in-loss ascent ends")
    ax.set_xticks(xs.tolist(), [f"{i}\nr={r:g}" for i, r in enumerate(reward.tolist())], fontsize=8)
    ax.set_ylabel("probability")
    ax.set_title(f"max E[r] − β·KL, β = {beta:.3g}", fontsize=10)
    ax.legend(fontsize=7)


def kl_direction_figure(rows: list[dict] | None = None):
    """``07_kl_direction.png``: the treatments' expected gradients on one categorical, and where they lead."""
    rows = optimum_rows(betas=(0.3,)) if rows is None else rows
    row = next(r for r in rows if r["beta"] == 0.3) if any(r["beta"] == 0.3 for r in rows) else rows[0]
    fig = new_figure(figsize=(11, 3.8))
    a, b = fig.subplots(1, 2)
    z, r = small_categoricals((0,))[0]
    plot_gradients(a, z, r)
    a.set_title("exact expected gradients: k1-as-reward = reverse, k3-in-loss = forward", fontsize=9)
    plot_optima(b, row["beta"], ascended=row["p_k3"])
    return fig
