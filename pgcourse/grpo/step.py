r"""One gradient of the GRPO loss on a batch, computed in microbatches (gradient accumulation).

A batch too big for memory is cut into microbatches of rows; each backward adds its gradient into
``p.grad``. The sum equals the full batch's gradient only if each microbatch's loss is ITS SHARE of the
full batch's loss,

.. math:: L = \sum_{i,t} w_{it}\,\ell_{it} = \sum_{k} \underbrace{\sum_{i \in \text{mb}_k,\,t} w_{it}\,\ell_{it}}_{L_k},

with the weights :math:`w` of the full batch (:func:`pgcourse.grpo.token_weights`): "grpo" divides by
the full batch's number of sequences B, "bnpo" by its total of valid tokens, "dr_grpo" by B·T.
Dividing each microbatch's own mean by the number of microbatches is right only for "grpo" with
equal microbatches.
"""
from __future__ import annotations

import torch
from torch import nn

from ..tinylm import completion_logp_entropy
from ..validate import positive_int
from .loss import grpo_loss, token_weights
from .rollout import Rollout


def microbatch_step(policy: nn.Module, batch: Rollout, microbatch_size: int | None = None, *, loss_type: str = "grpo",
                    clip_eps: float = 0.2, beta: float = 0.04, temperature: float = 1.0) -> dict[str, float]:
    """Add the gradient of the full ``batch``'s :func:`grpo_loss` into the parameters' ``.grad``, one
    microbatch of ``microbatch_size`` rows at a time (None: the whole batch at once). Does not zero
    the gradients and does not step. Returns the loss and the token-weighted means of ``clip_fraction``,
    ``kl_old``, ``kl_ref``, ``ratio`` and ``entropy`` (of the policy at ``temperature``)."""
    if not isinstance(batch, Rollout):
        raise TypeError(f"batch must be a pgcourse.grpo.Rollout, got {type(batch).__name__}")
    n = len(batch)
    size = n if microbatch_size is None else positive_int(microbatch_size, "microbatch_size")
    weights = token_weights(batch.mask, loss_type, batch.old_logp.dtype)
    totals = dict.fromkeys(("clip_fraction", "kl_old", "kl_ref", "ratio", "entropy"), 0.0)
    loss_total, tokens = 0.0, 0
    for start in range(0, n, size):
        mb = batch.rows(slice(start, start + size))
        logp, entropy = completion_logp_entropy(policy, mb.prompts, mb.completions, temperature)
        loss, stats = grpo_loss(logp, mb.old_logp, mb.ref_logp, mb.advantages, mb.mask, clip_eps=clip_eps,
                                beta=beta, loss_type=loss_type, weights=weights[start:start + size])
        loss.backward()
        loss_total += float(loss.detach())
        k = stats["tokens"]
        tokens += k
        for name in ("clip_fraction", "kl_old", "kl_ref", "ratio"):
            totals[name] += stats[name] * k
        totals["entropy"] += float((entropy.detach() * mb.mask).sum())
    out = {name: v / max(tokens, 1) for name, v in totals.items()}
    out["loss"] = loss_total
    return out
