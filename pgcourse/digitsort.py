r"""A toy task with a verifiable answer, for language-model post-training: sort a string of digits.

A prompt is a digit string followed by ``=``, e.g. ``3142=``; the correct completion is the same
digits in ascending order followed by the end-of-sequence token, ``1234.``. The reward is a
verifier, not a learned model:

.. math:: r(x, y) = [\,y = \mathrm{sort}(x)\ \text{followed by EOS}\,] \in \{0, 1\}.

Answers are as long as their prompts (``min_len`` to ``max_len`` digits), so long and short
answers can be told apart (notebook 6 measures what the GRPO loss types do to each).

Tokens: digits 0–9 are ids 0–9, ``=`` is 10, EOS (shown ``.``) is 11, PAD (shown ``_``) is 12.
Prompts are left-padded to ``max_len + 1`` tokens; completions have ``max_len + 1`` slots (the
answer, EOS, then PAD).
"""
from __future__ import annotations

from typing import Sequence

import torch

from .device import generator as make_generator
from .validate import as_tensor, positive_int

SEP, EOS, PAD = 10, 11, 12
VOCAB_SIZE = 13
_CHARS = "0123456789=._"


class DigitSort:
    """Sort ``min_len`` to ``max_len`` random digits (each length equally likely)."""

    vocab_size = VOCAB_SIZE
    sep, eos, pad = SEP, EOS, PAD

    def __init__(self, min_len: int = 1, max_len: int = 5):
        self.min_len = positive_int(min_len, "min_len")
        self.max_len = positive_int(max_len, "max_len")
        if self.max_len < self.min_len:
            raise ValueError(f"max_len ({max_len}) must be at least min_len ({min_len})")

    def __repr__(self) -> str:
        return f"DigitSort(min_len={self.min_len}, max_len={self.max_len})"

    @property
    def prompt_len(self) -> int:
        """Tokens in a (padded) prompt: the digits and ``=``."""
        return self.max_len + 1

    @property
    def completion_len(self) -> int:
        """Slots for a completion: the longest answer and EOS."""
        return self.max_len + 1

    def sample_prompts(self, n: int, seed: int | torch.Generator = 0, device: torch.device | str = "cpu") -> torch.Tensor:
        """``n`` random prompts, shaped (n, prompt_len), left-padded with PAD."""
        n = positive_int(n, "n")
        g = make_generator(seed, device)
        lengths = torch.randint(self.min_len, self.max_len + 1, (n,), generator=g, device=g.device)
        digits = torch.randint(0, 10, (n, self.max_len), generator=g, device=g.device)
        # digit slot j (of max_len) is used when j >= max_len - length (left padding)
        used = torch.arange(self.max_len, device=g.device) >= (self.max_len - lengths)[:, None]
        body = torch.where(used, digits, torch.full_like(digits, PAD))
        sep = torch.full((n, 1), SEP, dtype=body.dtype, device=body.device)
        return torch.cat([body, sep], dim=1).to(device)

    def _check_prompts(self, prompts) -> torch.Tensor:
        prompts = as_tensor(prompts, "prompts")
        if prompts.dtype in (torch.bool,) or torch.is_floating_point(prompts) or torch.is_complex(prompts):
            raise TypeError(f"prompts must be an integer tensor of token ids, got dtype {prompts.dtype}")
        if prompts.dim() != 2 or prompts.shape[1] != self.prompt_len or prompts.shape[0] == 0:
            raise ValueError(f"prompts must be shaped (n, {self.prompt_len}) with n ≥ 1, got {tuple(prompts.shape)}")
        body = prompts[:, :-1]
        if not bool((prompts[:, -1] == SEP).all()) or not bool(((body >= 0) & (body <= 9) | (body == PAD)).all()):
            raise ValueError("prompts must be digits (left-padded with PAD) followed by '='")
        return prompts

    def lengths(self, prompts: torch.Tensor) -> torch.Tensor:
        """The number of digits in each prompt (= the length of its answer, EOS not counted)."""
        prompts = self._check_prompts(prompts)
        return (prompts[:, :-1] != PAD).sum(1)

    def answers(self, prompts: torch.Tensor) -> torch.Tensor:
        """The correct completions, shaped (n, completion_len): sorted digits, EOS, then PAD."""
        prompts = self._check_prompts(prompts)
        body = prompts[:, :-1]
        ordered = torch.sort(torch.where(body == PAD, torch.full_like(body, 99), body), dim=1).values
        n_digits = (body != PAD).sum(1, keepdim=True)
        pos = torch.arange(self.completion_len, device=prompts.device)
        padded = torch.cat([ordered, torch.full_like(ordered[:, :1], 99)], dim=1)
        return torch.where(pos < n_digits, padded, torch.where(pos == n_digits, EOS, PAD)).to(prompts.dtype)

    def reward(self, prompts: torch.Tensor, completions: torch.Tensor) -> torch.Tensor:
        r"""The verifier: 1.0 where the completion up to its first EOS is the sorted prompt, else 0.0.

        Tokens after the first EOS are ignored; a completion with no EOS (truncated) scores 0.
        """
        answers = self.answers(prompts)
        completions = as_tensor(completions, "completions")
        if completions.shape != answers.shape:
            raise ValueError(f"completions must be shaped {tuple(answers.shape)}, got {tuple(completions.shape)}")
        is_eos = (completions == EOS).long()
        after = (torch.cumsum(is_eos, 1) - is_eos) > 0
        cleaned = torch.where(after, torch.full_like(completions, PAD), completions.to(answers.dtype))
        return (cleaned == answers).all(1).to(torch.float32)

    @staticmethod
    def stops(completions: torch.Tensor) -> torch.Tensor:
        """1.0 where a completion ends with EOS within its slots (a format reward), else 0.0."""
        completions = as_tensor(completions, "completions")
        return (completions == EOS).any(dim=-1).to(torch.float32)

    def encode(self, strings: Sequence[str]) -> torch.Tensor:
        """Prompts from digit strings, e.g. ``["3142", "7"]`` (an optional trailing ``=`` is dropped)."""
        if isinstance(strings, str):
            strings = [strings]
        rows = []
        for s in strings:
            s = s.rstrip("=")
            if not s.isdigit() or not self.min_len <= len(s) <= self.max_len:
                raise ValueError(f"strings must hold {self.min_len} to {self.max_len} digits each, got {s!r}")
            rows.append([PAD] * (self.max_len - len(s)) + [int(c) for c in s] + [SEP])
        return torch.tensor(rows, dtype=torch.long)

    @staticmethod
    def decode(tokens: torch.Tensor, strip: bool = True) -> list[str]:
        """Strings from token rows: digits, ``=``, ``.`` for EOS; with ``strip`` PAD and what follows EOS go."""
        tokens = as_tensor(tokens, "tokens")
        if tokens.dim() == 1:
            tokens = tokens[None]
        out = []
        for row in tokens.tolist():
            s = "".join(_CHARS[t] if 0 <= t < len(_CHARS) else "?" for t in row)
            if strip:
                s = s.replace("_", "")
                s = s[: s.index(".") + 1] if "." in s else s
            out.append(s)
        return out
