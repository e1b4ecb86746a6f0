r"""A language model as a policy over tokens: sampling with temperature, log-probs, supervised fine-tuning.

The policy writes a completion :math:`y = (y_1, \dots, y_T)` for a prompt :math:`x` one token at a time,
each drawn at temperature :math:`\tau` from the softmax of the model's logits :math:`z` divided by :math:`\tau`:

.. math:: \pi_\tau(y_t \mid x, y_{<t}) = \operatorname{softmax}\!\big(z(x, y_{<t}) / \tau\big)_{y_t},
          \qquad \log \pi_\tau(y\mid x) = \sum_t \log \pi_\tau(y_t \mid x, y_{<t}).

Each token is an action and the prefix :math:`(x, y_{<t})` its state. A completion ends at its
first EOS token (included: stopping is an action too); later slots are PAD and masked out.
The sampling policy IS :math:`\pi_\tau`: the log-probs :func:`sample` returns are
:func:`completion_logp` at the same :math:`\tau`, so recomputing them gives the same numbers, bit for
bit (the PPO/GRPO ratio :math:`\rho = \pi_\theta/\pi_{\text{old}}` is exactly 1 before the first update).

Works with any model whose ``forward(tokens (B, L)) -> logits (B, L, V)`` scores the next token
(:class:`pgcourse.transformer.TinyTransformer`); a model with ``new_cache()`` samples with a
key/value cache.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .device import generator as make_generator
from .device import torch_threads
from .validate import as_tensor, positive_float, positive_int


def _tokens(x, name: str) -> torch.Tensor:
    x = as_tensor(x, name)
    if torch.is_floating_point(x) or torch.is_complex(x) or x.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor of token ids, got dtype {x.dtype}")
    if x.dim() != 2 or 0 in x.shape:
        raise ValueError(f"{name} must be shaped (batch, length) with no empty axis, got {tuple(x.shape)}")
    return x.long()


def _pair(prompts, completions) -> tuple[torch.Tensor, torch.Tensor]:
    prompts, completions = _tokens(prompts, "prompts"), _tokens(completions, "completions")
    if prompts.shape[0] != completions.shape[0]:
        raise ValueError(f"prompts ({prompts.shape[0]} rows) and completions ({completions.shape[0]} rows) must match")
    return prompts, completions


def completion_mask(completions: torch.Tensor, eos: int) -> torch.Tensor:
    """True at the tokens of each completion up to and including its first EOS (all of it if none)."""
    completions = _tokens(completions, "completions")
    is_eos = (completions == eos).long()
    return (torch.cumsum(is_eos, 1) - is_eos) == 0


@dataclass
class Completions:
    """A batch of sampled completions: ``tokens`` (N, C) with PAD after EOS, ``mask`` (N, C) of valid
    tokens, ``logp`` (N, C) the sampling policy's per-token log-probs at ``temperature`` (0 where masked)."""

    tokens: torch.Tensor
    mask: torch.Tensor
    logp: torch.Tensor
    temperature: float = 1.0

    @property
    def lengths(self) -> torch.Tensor:
        """Valid tokens per completion (EOS included)."""
        return self.mask.sum(1)


def completion_logits(model: nn.Module, prompts: torch.Tensor, completions: torch.Tensor,
                      temperature: float = 1.0) -> torch.Tensor:
    r"""Logits :math:`z/\tau` (N, C, V) that score each completion token given its prefix (teacher forcing)."""
    prompts, completions = _pair(prompts, completions)
    temperature = positive_float(temperature, "temperature")
    logits = model(torch.cat([prompts, completions[:, :-1]], dim=1))[:, prompts.shape[1] - 1:]
    return logits / temperature


def completion_logp(model: nn.Module, prompts: torch.Tensor, completions: torch.Tensor,
                    temperature: float = 1.0) -> torch.Tensor:
    r"""Per-token :math:`\log\pi_\tau(y_t \mid x, y_{<t})`, shaped like ``completions`` (teacher forcing).

    Differentiable in the model's parameters; entries after EOS are finite but meaningless (mask them).
    """
    return completion_logp_entropy(model, prompts, completions, temperature, entropy=False)[0]


def completion_logp_entropy(model: nn.Module, prompts: torch.Tensor, completions: torch.Tensor,
                            temperature: float = 1.0, entropy: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    r"""``(logp, entropy)``, both (N, C): :func:`completion_logp` and the entropy
    :math:`H_t = -\sum_v \pi_\tau(v\mid x, y_{<t}) \log \pi_\tau(v\mid x, y_{<t})` of each position's
    next-token distribution (``None`` when ``entropy=False``)."""
    prompts, completions = _pair(prompts, completions)
    logp_all = torch.log_softmax(completion_logits(model, prompts, completions, temperature), dim=-1)
    logp = logp_all.gather(-1, completions[..., None]).squeeze(-1)
    ent = -(logp_all.exp() * logp_all).sum(-1) if entropy else None
    return logp, ent


def sequence_logp(model: nn.Module, prompts: torch.Tensor, completions: torch.Tensor, eos: int,
                  temperature: float = 1.0) -> torch.Tensor:
    r""":math:`\log\pi_\tau(y\mid x) = \sum_t m_t \log\pi_\tau(y_t\mid x, y_{<t})`, one number per row."""
    mask = completion_mask(completions, eos)
    return (completion_logp(model, prompts, completions, temperature) * mask).sum(1)


@torch.no_grad()
def sample(model: nn.Module, prompts: torch.Tensor, max_new_tokens: int, eos: int, pad: int,
           seed: int | torch.Generator = 0, temperature: float = 1.0, greedy: bool = False) -> Completions:
    r"""Sample one completion per prompt row, all rows at once: :math:`y_t \sim \pi_\tau(\cdot\mid x, y_{<t})`.

    A row stops at its first EOS; later slots are ``pad`` (always ``max_new_tokens`` columns).
    ``greedy`` takes the arg-max instead (``logp`` is still at ``temperature``). Repeat prompts
    (``prompts.repeat_interleave(G, 0)``) for G completions each. Runs on the device of ``prompts``;
    ``seed`` is an int or a torch.Generator there. The returned ``logp`` is
    ``completion_logp(model, prompts, tokens, temperature)`` (masked), the numbers training recomputes.
    """
    prompts = _tokens(prompts, "prompts")
    max_new_tokens = positive_int(max_new_tokens, "max_new_tokens")
    temperature = positive_float(temperature, "temperature")
    g = None if greedy else make_generator(seed, prompts.device)
    cache = model.new_cache() if hasattr(model, "new_cache") else None
    seq = prompts
    logits = model(prompts, cache) if cache is not None else model(prompts)
    done = torch.zeros(prompts.shape[0], dtype=torch.bool, device=prompts.device)
    tokens = []
    for t in range(max_new_tokens):
        probs = torch.softmax(logits[:, -1] / temperature, dim=-1)
        tok = probs.argmax(-1) if greedy else torch.multinomial(probs, 1, generator=g).squeeze(1)
        tok = torch.where(done, torch.full_like(tok, pad), tok)
        tokens.append(tok)
        done = done | (tok == eos)
        if t + 1 == max_new_tokens:
            break
        if bool(done.all()):  # every row has stopped: pad the rest
            tokens += [torch.full_like(tok, pad)] * (max_new_tokens - t - 1)
            break
        if cache is not None:
            logits = model(tok[:, None], cache)
        else:
            seq = torch.cat([seq, tok[:, None]], 1)
            logits = model(seq)
    out = torch.stack(tokens, 1)
    mask = completion_mask(out, eos)
    logp = completion_logp(model, prompts, out, temperature)
    return Completions(out, mask, torch.where(mask, logp, torch.zeros_like(logp)), temperature)


@torch_threads(1)   # tiny matrices: one thread avoids OpenMP barriers
def supervised_finetune(model: nn.Module, prompts: torch.Tensor, answers: torch.Tensor, eos: int, steps: int,
                        batch_size: int = 128, lr: float = 3e-3, seed: int | torch.Generator = 0) -> list[float]:
    r"""Supervised fine-tuning (SFT): minimize the mean token cross-entropy of the demonstrations,

    .. math:: L(\theta) = -\frac{1}{\sum m} \sum_{i,t} m_{it} \log\pi_\theta(y^i_t \mid x^i, y^i_{<t}),

    on minibatches of ``batch_size`` rows drawn with replacement from (``prompts``, ``answers``).
    Returns the loss at every step.
    """
    prompts, answers = _tokens(prompts, "prompts"), _tokens(answers, "answers")
    if prompts.shape[0] != answers.shape[0]:
        raise ValueError(f"prompts ({prompts.shape[0]} rows) and answers ({answers.shape[0]} rows) must match")
    steps = positive_int(steps, "steps")
    batch_size = positive_int(batch_size, "batch_size")
    g = make_generator(seed, prompts.device)
    mask_all = completion_mask(answers, eos)
    opt = torch.optim.Adam(model.parameters(), lr=positive_float(lr, "lr"))
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, prompts.shape[0], (batch_size,), generator=g, device=prompts.device)
        logp, mask = completion_logp(model, prompts[idx], answers[idx]), mask_all[idx]
        loss = -(logp * mask).sum() / mask.sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses
