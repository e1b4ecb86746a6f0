r"""A tiny autoregressive language model (a GRU) as a policy over tokens, and its sampler.

The policy writes a completion :math:`y = (y_1, \dots, y_T)` for a prompt :math:`x` one token at a time:

.. math:: \pi_\theta(y \mid x) = \prod_{t=1}^{T} \pi_\theta(y_t \mid x, y_{<t}),
          \qquad \log \pi_\theta(y\mid x) = \sum_t \log \pi_\theta(y_t \mid x, y_{<t}).

Each token is an action and the prefix :math:`(x, y_{<t})` its state. A completion ends at its
first EOS token (included: stopping is an action too); later slots are PAD and masked out.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .device import generator as make_generator
from .device import torch_threads
from .validate import as_tensor, positive_float, positive_int


class TinyLM(nn.Module):
    """Embedding → GRU → linear: logits over the next token. ``forward(tokens, h) -> (logits, h)``."""

    def __init__(self, vocab_size: int, embed: int = 32, hidden: int = 64):
        super().__init__()
        self.vocab_size = positive_int(vocab_size, "vocab_size")
        self.embed = nn.Embedding(self.vocab_size, positive_int(embed, "embed"))
        self.gru = nn.GRU(embed, positive_int(hidden, "hidden"), batch_first=True)
        self.head = nn.Linear(hidden, self.vocab_size)

    def forward(self, tokens: torch.Tensor, h: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        y, h = self.gru(self.embed(tokens), h)
        return self.head(y), h


class PromptValue(nn.Module):
    r"""A learned value baseline :math:`V_\phi(x) \approx \mathbb E_{y\sim\pi}[r(x, y)]`: a GRU reads the prompt."""

    def __init__(self, vocab_size: int, embed: int = 32, hidden: int = 64):
        super().__init__()
        self.embed = nn.Embedding(positive_int(vocab_size, "vocab_size"), positive_int(embed, "embed"))
        self.gru = nn.GRU(embed, positive_int(hidden, "hidden"), batch_first=True)
        self.head = nn.Linear(hidden, 1)

    def forward(self, prompts: torch.Tensor) -> torch.Tensor:
        _, h = self.gru(self.embed(prompts))
        return self.head(h[-1]).squeeze(-1)


def _tokens(x, name: str) -> torch.Tensor:
    x = as_tensor(x, name)
    if torch.is_floating_point(x) or torch.is_complex(x) or x.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor of token ids, got dtype {x.dtype}")
    if x.dim() != 2 or 0 in x.shape:
        raise ValueError(f"{name} must be shaped (batch, length) with no empty axis, got {tuple(x.shape)}")
    return x.long()


def completion_mask(completions: torch.Tensor, eos: int) -> torch.Tensor:
    """True at the tokens of each completion up to and including its first EOS (all of it if none)."""
    completions = _tokens(completions, "completions")
    is_eos = (completions == eos).long()
    return (torch.cumsum(is_eos, 1) - is_eos) == 0


@dataclass
class Completions:
    """A batch of sampled completions: ``tokens`` (B, T) with PAD after EOS, ``mask`` (B, T) of valid
    tokens, ``logp`` (B, T) the sampling policy's per-token log-probabilities (0 where masked)."""

    tokens: torch.Tensor
    mask: torch.Tensor
    logp: torch.Tensor

    @property
    def lengths(self) -> torch.Tensor:
        """Valid tokens per completion (EOS included)."""
        return self.mask.sum(1)


@torch.no_grad()
def sample(model: TinyLM, prompts: torch.Tensor, max_new_tokens: int, eos: int, pad: int,
           seed: int | torch.Generator = 0, temperature: float = 1.0, greedy: bool = False) -> Completions:
    r"""Sample one completion per prompt row, all rows at once: :math:`y_t \sim \pi_\theta(\cdot\mid x, y_{<t})`.

    A row stops at its first EOS; later slots are ``pad``. ``temperature`` divides the logits;
    ``greedy`` takes the arg-max instead. Repeat prompts (``prompts.repeat_interleave(G, 0)``) for
    G completions each. Runs on the device of ``prompts``; ``seed`` is an int or a torch.Generator there.
    """
    prompts = _tokens(prompts, "prompts")
    max_new_tokens = positive_int(max_new_tokens, "max_new_tokens")
    temperature = positive_float(temperature, "temperature")
    g = None if greedy else make_generator(seed, prompts.device)
    logits, h = model(prompts)
    logits = logits[:, -1]
    done = torch.zeros(prompts.shape[0], dtype=torch.bool, device=prompts.device)
    tokens, logps, masks = [], [], []
    for t in range(max_new_tokens):
        logp_all = torch.log_softmax(logits / temperature, dim=-1)
        tok = logp_all.argmax(-1) if greedy else torch.multinomial(logp_all.exp(), 1, generator=g).squeeze(1)
        masks.append(~done)
        tokens.append(torch.where(done, torch.full_like(tok, pad), tok))
        logps.append(torch.where(done, torch.zeros_like(logp_all[:, 0]), logp_all.gather(1, tok[:, None]).squeeze(1)))
        done = done | (tok == eos)
        if t + 1 < max_new_tokens and not bool(done.all()):
            logits, h = model(tokens[-1][:, None], h)
            logits = logits[:, 0]
        elif t + 1 < max_new_tokens:  # every row has stopped: pad the rest
            for _ in range(max_new_tokens - t - 1):
                masks.append(~done)
                tokens.append(torch.full_like(tok, pad))
                logps.append(torch.zeros_like(logps[-1]))
            break
    return Completions(torch.stack(tokens, 1), torch.stack(masks, 1), torch.stack(logps, 1))


def completion_logp(model: TinyLM, prompts: torch.Tensor, completions: torch.Tensor) -> torch.Tensor:
    r"""Per-token :math:`\log\pi_\theta(y_t \mid x, y_{<t})`, shaped like ``completions`` (teacher forcing).

    Differentiable in the model's parameters; entries after EOS are finite but meaningless (mask them).
    """
    prompts = _tokens(prompts, "prompts")
    completions = _tokens(completions, "completions")
    if prompts.shape[0] != completions.shape[0]:
        raise ValueError(f"prompts ({prompts.shape[0]} rows) and completions ({completions.shape[0]} rows) must match")
    logits, _ = model(torch.cat([prompts, completions[:, :-1]], dim=1))
    logp = torch.log_softmax(logits[:, prompts.shape[1] - 1:], dim=-1)
    return logp.gather(-1, completions[..., None]).squeeze(-1)


def sequence_logp(model: TinyLM, prompts: torch.Tensor, completions: torch.Tensor, eos: int) -> torch.Tensor:
    r""":math:`\log\pi_\theta(y\mid x) = \sum_t m_t \log\pi_\theta(y_t\mid x, y_{<t})`, one number per row."""
    mask = completion_mask(completions, eos)
    return (completion_logp(model, prompts, completions) * mask).sum(1)


@torch_threads(1)   # tiny matrices: one thread avoids OpenMP barriers
def supervised_finetune(model: TinyLM, prompts: torch.Tensor, answers: torch.Tensor, eos: int, steps: int,
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
