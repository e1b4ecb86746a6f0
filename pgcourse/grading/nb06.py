"""Exercise checks of notebook 06 (GRPO); every expected value comes from :mod:`pgcourse.grpo`.

* ``06.group_advantages`` — :func:`~pgcourse.grpo.group_advantages`;
* ``06.grpo_loss`` — the masked per-token clipped loss with the k3 term, all three loss types: the value of
  :func:`~pgcourse.grpo.grpo_loss` AND its gradient with respect to ``logp`` (none into the constants);
* ``06.microbatch_step`` — gradient accumulation: the returned loss and the gradient left in the policy's
  ``.grad`` must be the FULL batch's (:func:`~pgcourse.grpo.microbatch_step`);
* ``06.train_loop`` — the learner's loop runs a few steps; its trained policy must equal the one
  :func:`~pgcourse.grpo.train` makes at the same seed.

A case's policy for ``06.microbatch_step`` is a :class:`SharedPolicy`: copying it (the check copies every
input) gives the same object with its gradients cleared, so the comparison reads the gradients the
learner accumulated. Every random input is drawn from the case generator ``gen``.
"""
from __future__ import annotations

import copy
from typing import Any

import torch

from ..digitsort import DigitSort
from ..grpo import GRPOConfig, Rollout, group_advantages, grpo_loss, microbatch_step, rollout, train
from ..transformer import TinyTransformer
from . import Case, derive, differ, exercise
from .losses import compare_loss_and_grad, expected_loss_and_grad

TASK = DigitSort(min_len=1, max_len=3, extra=2)


def _seed(gen: torch.Generator) -> int:
    return int(torch.randint(0, 2 ** 31 - 1, (1,), generator=gen))


class CasePolicy(TinyTransformer):
    """A small transformer for the cases, shown in one line."""

    def __repr__(self) -> str:
        return f"<policy: TinyTransformer, {self.n_params} parameters>"


class SharedPolicy(CasePolicy):
    """Copying returns the same policy with ``.grad`` cleared: the check's copy of the input is the case's own."""

    def __deepcopy__(self, memo):
        self.zero_grad(set_to_none=True)
        return self


def _policy(gen: torch.Generator, cls=CasePolicy) -> CasePolicy:
    with torch.random.fork_rng():
        torch.manual_seed(_seed(gen))
        policy = cls(TASK.vocab_size, d_model=16, n_layers=1, n_heads=2, max_len=TASK.prompt_len + TASK.completion_len)
        with torch.no_grad():        # far from uniform, so completions and log-probs vary
            for p in policy.parameters():
                p.add_(0.5 * torch.randn_like(p))
    return policy


# ---- 06.group_advantages ------------------------------------------------------------------------

@exercise("06.group_advantages", points=2, kind="transcribe")
def group_advantages_cases(gen: torch.Generator) -> list[Case]:
    """(r − group mean) / (group std with Bessel + eps); scale=False: only the mean."""
    g = derive(gen, 1)
    binary = (torch.rand(4, 8, generator=g) < 0.4).float()
    real = torch.randn(3, 5, generator=g, dtype=torch.float64)
    cases = [
        (torch.tensor([[1.0, 0.0, 0.0, 1.0]]), {}, "one group of 4: mean 0.5, std (Bessel) sqrt(1/3)"),
        (torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]), {}, "all equal in a group: advantages 0, not NaN"),
        (torch.tensor([[0.0, 0.0, 0.0, 1.0], [1.0, 0.0, 1.0, 1.0]]), {}, "two prompts: each group on its own"),
        (binary, {}, "4 prompts × 8 completions, 0/1 rewards"),
        (real, {}, "real-valued rewards, float64"),
        (torch.tensor([[2.0, 0.0]]), {"eps": 0.0}, "eps=0: exactly (r − mean) / std"),
        (binary, {"scale": False}, "scale=False: only the group mean is subtracted"),
        (real + 3.0, {"eps": 0.5}, "eps is added to the std"),
    ]
    return [Case((r,), kw, expected=group_advantages(r, **kw), note=note) for r, kw, note in cases]


# ---- 06.grpo_loss -------------------------------------------------------------------------------

def _loss_value(logp, old_logp, ref_logp, advantages, mask, **kw):
    return grpo_loss(logp, old_logp, ref_logp, advantages, mask, **kw)[0]


def compare_grpo_loss(got: Any, expected) -> str | None:
    """The value must match grpo_loss, and so must d loss / d logp; no gradient into old_logp, ref_logp, advantages."""
    return compare_loss_and_grad(got, expected, " (0 where the clip is active; the k3 term adds β(1 − e^(ref − logp)))")


@exercise("06.grpo_loss", points=3, kind="build", compare=compare_grpo_loss)
def grpo_loss_cases(gen: torch.Generator) -> list[Case]:
    """−min(ρA, clip(ρ)A) + β·k3 per token, averaged by loss_type; value and gradient."""
    g = derive(gen, 2)

    def case(B, T, lengths, shift, ref_shift, note, nan_pad=False, **kw):
        logp = -torch.rand(B, T, generator=g, dtype=torch.float64) * 2 - 0.05
        mask = torch.arange(T)[None, :] < torch.as_tensor(lengths)[:, None]
        old = logp + shift * torch.randn(B, T, generator=g, dtype=torch.float64)
        ref = logp + ref_shift * torch.randn(B, T, generator=g, dtype=torch.float64)
        adv = torch.randn(B, generator=g, dtype=torch.float64)
        if nan_pad:
            old, ref = old.masked_fill(~mask, float("nan")), ref.masked_fill(~mask, float("nan"))
        logp = logp.detach().requires_grad_(True)
        expected = expected_loss_and_grad(_loss_value, logp, old, ref, adv, mask,
                                          constants={"old_logp": old, "ref_logp": ref, "advantages": adv}, **kw)
        return Case((logp, old, ref, adv, mask), kw, expected, note)

    cases = []
    for lt in ("grpo", "bnpo", "dr_grpo"):
        cases.append(case(3, 5, [5, 2, 4], 0.0, 0.0, f'on policy (ρ = 1, k3 = 0), loss_type="{lt}"', loss_type=lt))
        cases.append(case(4, 6, [6, 1, 3, 5], 0.4, 0.3, f'off policy: some tokens clipped, β = 0.04, loss_type="{lt}"',
                          loss_type=lt))
    cases += [
        case(4, 6, [6, 1, 3, 5], 0.4, 0.5, 'β = 0.5: the k3 term weighs', beta=0.5, loss_type="bnpo"),
        case(3, 4, [4, 2, 3], 0.3, 0.3, "β = 0, clip_eps = 0.1", beta=0.0, clip_eps=0.1),
        case(3, 5, [2, 5, 1], 0.3, 0.3, "NaN in old_logp and ref_logp at masked tokens must not leak", nan_pad=True,
             loss_type="grpo"),
        case(6, 7, [7, 1, 3, 5, 2, 6], 0.3, 0.4, '6 sequences, dr_grpo divides by 6 × 7', loss_type="dr_grpo"),
    ]
    return cases


# ---- 06.microbatch_step -------------------------------------------------------------------------

class GradExpected(dict):
    """What a gradient-accumulation case expects: the full batch's ``loss`` and each parameter's gradient."""

    policy: SharedPolicy
    grads: list[torch.Tensor]

    def __repr__(self) -> str:
        return f"{{loss={self['loss']:.6g}, the full batch's gradient of {len(self.grads)} parameter tensors}}"


def _batch(policy: CasePolicy, gen: torch.Generator, prompts: int, group: int, temperature: float) -> Rollout:
    """A GRPO batch from ``policy``, off policy (old log-probs shifted) with random advantages and a reference."""
    ref = _policy(gen)
    config = GRPOConfig(prompts_per_step=prompts, group_size=group, temperature=temperature)
    b = rollout(policy, ref, TASK, config, torch.Generator().manual_seed(_seed(gen)))
    b.old_logp = torch.where(b.mask, b.old_logp + 0.3 * torch.randn(b.old_logp.shape, generator=gen), b.old_logp)
    b.advantages = torch.randn(len(b), generator=gen)
    return b


def compare_accumulation(got: Any, expected: GradExpected) -> str | None:
    if isinstance(got, torch.Tensor) and got.numel() == 1:
        got = float(got.detach())
    if not isinstance(got, (int, float)):
        return f"return the full batch's loss as a float (the sum of the microbatches' shares), got {type(got).__name__}"
    why = differ(float(got), expected["loss"], atol=1e-6, rtol=1e-4)
    if why:
        return f"loss: {why} (each microbatch's loss must be its share of the full batch's loss)"
    grads = [p.grad for p in expected.policy.parameters()]
    if all(g is None for g in grads):
        return "no gradient in the policy's .grad: call backward() on each microbatch's loss"
    for i, (g, e) in enumerate(zip(grads, expected.grads)):
        why = differ(torch.zeros_like(e) if g is None else g, e, atol=1e-6, rtol=1e-4)
        if why:
            return (f"the accumulated gradient differs from the full batch's (parameter tensor {i}: {why}); "
                    "weigh each microbatch by its share: rows/B for grpo and dr_grpo, tokens/N for bnpo")
    return None


@exercise("06.microbatch_step", points=3, kind="build", compare=compare_accumulation)
def microbatch_cases(gen: torch.Generator) -> list[Case]:
    """Accumulate the full batch's gradient in microbatches; return the full batch's loss."""
    def case(loss_type, size, temperature=1.0, prompts=5, group=4, note=""):
        policy = _policy(derive(gen, 30 + len(cases)), SharedPolicy)
        batch = _batch(policy, derive(gen, 60 + len(cases)), prompts, group, temperature)
        reference = copy.deepcopy(policy.state_dict())
        twin = CasePolicy(TASK.vocab_size, d_model=16, n_layers=1, n_heads=2, max_len=policy.max_len)
        twin.load_state_dict(reference)
        stats = microbatch_step(twin, batch, size, loss_type=loss_type, temperature=temperature)
        expected = GradExpected(loss=stats["loss"])
        expected.policy, expected.grads = policy, [p.grad.detach().clone() for p in twin.parameters()]
        kw = {"loss_type": loss_type, "temperature": temperature}
        cases.append(Case((policy, batch, size), kw, expected, note))

    cases: list[Case] = []
    case("grpo", 20, note="one microbatch holding the whole batch (20 rows)")
    case("grpo", 5, note='four microbatches of 5 rows, "grpo"')
    case("grpo", 6, note='microbatches of 6, 6, 6, 2 rows (uneven), "grpo": weigh each by its rows / B')
    case("bnpo", 4, note='"bnpo": weigh each microbatch by its valid tokens / the batch\'s valid tokens')
    case("bnpo", 7, note='"bnpo", uneven microbatches of 7, 7, 6 rows')
    case("dr_grpo", 3, note='"dr_grpo", microbatches of 3 rows: the divisor is B·T of the full batch')
    case("grpo", 1, temperature=0.7, note="one row per microbatch, temperature 0.7 (the log-probs at the same T)")
    return cases


# ---- 06.train_loop ------------------------------------------------------------------------------

class ParamsExpected(list):
    """The trained policy's parameters the reference loop produced."""

    def __repr__(self) -> str:
        return f"<the parameters of the policy trained by pgcourse.grpo.train ({len(self)} tensors)>"


def compare_policies(got: Any, expected: ParamsExpected) -> str | None:
    if not isinstance(got, torch.nn.Module):
        return f"return the trained policy (the nn.Module), got {type(got).__name__}"
    params = list(got.parameters())
    if len(params) != len(expected):
        return f"the returned policy has {len(params)} parameter tensors, expected {len(expected)}"
    moved = [i for i, (p, e) in enumerate(zip(params, expected)) if differ(p.detach(), e, atol=1e-5, rtol=1e-4)]
    if moved:
        return (f"{len(moved)} of {len(params)} parameter tensors differ from pgcourse.grpo.train's at the same seed "
                "(per step: one rollout; per epoch: zero_grad, microbatch_step, clip_grad_norm_, opt.step; "
                "then schedule.step())")
    return None


@exercise("06.train_loop", points=2, kind="build", compare=compare_policies)
def train_loop_cases(gen: torch.Generator) -> list[Case]:
    """A few GRPO steps; the trained policy must match :func:`pgcourse.grpo.train` at the same seed."""
    base = GRPOConfig(steps=3, prompts_per_step=4, group_size=4, lr=1e-2, warmup_steps=2, format_bonus=1.0,
                      eval_every=100)

    def case(note, **changes):
        g = derive(gen, 90 + len(cases))
        policy, ref = _policy(g), _policy(g)
        config, seed = base.replace(**changes), _seed(g) % 10_000
        twin = copy.deepcopy(policy)
        train(twin, TASK, config, ref=copy.deepcopy(ref), eval_prompts=TASK.sample_prompts(2, seed=0), seed=seed)
        expected = ParamsExpected(p.detach().clone() for p in twin.parameters())
        cases.append(Case((policy, ref, TASK, config, seed), {}, expected, note))

    cases: list[Case] = []
    case("3 steps, one epoch each")
    case("2 epochs per batch: the clip is active in the second", epochs=2)
    case("3 epochs, microbatches of 5 rows, bnpo", epochs=3, microbatch_size=5, loss_type="bnpo")
    case("β = 0.2, temperature 0.8, 4 steps", beta=0.2, temperature=0.8, steps=4)
    return cases

