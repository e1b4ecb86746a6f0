r"""A toy task with a verifiable answer, for language-model post-training: sort a string of digits.

A prompt is BOS, a digit string and ``=``, e.g. ``^3142=``; the correct completion is the same digits
in ascending order followed by the end-of-sequence token, ``1234.``. The reward is a verifier,
not a learned model:

.. math:: r(x, y) = [\,y = \mathrm{sort}(x)\ \text{followed by EOS}\,] \in \{0, 1\}.

Answers are as long as their prompts (``min_len`` to ``max_len`` digits), and a completion has
``extra`` more slots than the longest answer needs: a wrong answer can drop digits, repeat them or
stop at once (the empty answer ``.``), so its length can shrink or grow — what the GRPO loss types
are sensitive to. Tokens come from a :class:`pgcourse.tokenizer.CharTokenizer` over ``0123456789=``.
Prompts are left-padded with PAD to ``prompt_len`` tokens; completions have ``completion_len`` slots.
"""
from __future__ import annotations

from typing import Sequence

import torch

from .device import generator as make_generator
from .tokenizer import CharTokenizer
from .validate import as_tensor, positive_int

TOKENIZER = CharTokenizer("0123456789=")
PAD, BOS, EOS = TOKENIZER.pad, TOKENIZER.bos, TOKENIZER.eos
DIGIT0 = TOKENIZER.encode("0")[0]           # digit d has id DIGIT0 + d
SEP = TOKENIZER.encode("=")[0]


class DigitSort:
    """Sort ``min_len`` to ``max_len`` random digits (each length equally likely); ``extra`` spare slots."""

    tokenizer = TOKENIZER
    vocab_size = TOKENIZER.vocab_size
    pad, bos, eos, sep = PAD, BOS, EOS, SEP

    def __init__(self, min_len: int = 1, max_len: int = 5, extra: int = 3):
        self.min_len = positive_int(min_len, "min_len")
        self.max_len = positive_int(max_len, "max_len")
        if self.max_len < self.min_len:
            raise ValueError(f"max_len ({max_len}) must be at least min_len ({min_len})")
        if isinstance(extra, bool) or not isinstance(extra, int) or extra < 0:
            raise ValueError(f"extra must be a non-negative int, got {extra!r}")
        self.extra = extra

    def __repr__(self) -> str:
        return f"DigitSort(min_len={self.min_len}, max_len={self.max_len}, extra={self.extra})"

    @property
    def prompt_len(self) -> int:
        """Tokens in a (padded) prompt: BOS, the digits and ``=``."""
        return self.max_len + 2

    @property
    def completion_len(self) -> int:
        """Slots for a completion: the longest answer, EOS, and ``extra`` spare slots."""
        return self.max_len + 1 + self.extra

    def sample_prompts(self, n: int, seed: int | torch.Generator = 0, device: torch.device | str = "cpu") -> torch.Tensor:
        """``n`` random prompts, shaped (n, prompt_len), left-padded with PAD."""
        n = positive_int(n, "n")
        g = make_generator(seed, device)
        lengths = torch.randint(self.min_len, self.max_len + 1, (n,), generator=g, device=g.device)
        digits = DIGIT0 + torch.randint(0, 10, (n, self.max_len), generator=g, device=g.device)
        # slot j of the max_len + 1 before '=' holds BOS at j = max_len - length, digits after it, PAD before
        j = torch.arange(self.max_len + 1, device=g.device)[None, :]
        first = (self.max_len - lengths)[:, None]
        body = torch.cat([torch.full((n, 1), PAD, device=g.device, dtype=digits.dtype), digits], 1)
        body = torch.where(j > first, body, torch.where(j == first, BOS, PAD))
        sep = torch.full((n, 1), SEP, dtype=body.dtype, device=body.device)
        return torch.cat([body, sep], dim=1).to(device)

    def _check_prompts(self, prompts) -> torch.Tensor:
        prompts = as_tensor(prompts, "prompts")
        if prompts.dtype == torch.bool or torch.is_floating_point(prompts) or torch.is_complex(prompts):
            raise TypeError(f"prompts must be an integer tensor of token ids, got dtype {prompts.dtype}")
        if prompts.dim() != 2 or prompts.shape[1] != self.prompt_len or prompts.shape[0] == 0:
            raise ValueError(f"prompts must be shaped (n, {self.prompt_len}) with n ≥ 1, got {tuple(prompts.shape)}")
        body = prompts[:, :-1]
        is_digit = (body >= DIGIT0) & (body < DIGIT0 + 10)
        ok = (prompts[:, -1] == SEP) & ((body == BOS).sum(1) == 1) & (is_digit | (body == BOS) | (body == PAD)).all(1)
        # PAD only before BOS, digits only after it
        before_bos = torch.cumsum((body == BOS).long(), 1) == 0
        ok &= ((body == PAD) == before_bos).all(1)
        if not bool(ok.all()):
            raise ValueError("prompts must be PAD…, BOS, digits, '=' (as sample_prompts or encode make them)")
        return prompts.long()

    def lengths(self, prompts: torch.Tensor) -> torch.Tensor:
        """The number of digits in each prompt (= the length of its answer, EOS not counted)."""
        prompts = self._check_prompts(prompts)
        body = prompts[:, :-1]
        return ((body >= DIGIT0) & (body < DIGIT0 + 10)).sum(1)

    def answers(self, prompts: torch.Tensor) -> torch.Tensor:
        """The correct completions, shaped (n, completion_len): sorted digits, EOS, then PAD."""
        prompts = self._check_prompts(prompts)
        body = prompts[:, :-1]
        big = DIGIT0 + 99
        is_digit = (body >= DIGIT0) & (body < DIGIT0 + 10)
        ordered = torch.sort(torch.where(is_digit, body, torch.full_like(body, big)), dim=1).values
        n_digits = is_digit.sum(1, keepdim=True)
        pos = torch.arange(self.completion_len, device=prompts.device)
        width = self.completion_len - ordered.shape[1]
        padded = torch.cat([ordered, torch.full_like(ordered[:, :1], big).expand(-1, width)], dim=1)
        return torch.where(pos < n_digits, padded, torch.where(pos == n_digits, EOS, PAD))

    def _check_completions(self, completions, n: int | None = None) -> torch.Tensor:
        completions = as_tensor(completions, "completions")
        if completions.dtype == torch.bool or torch.is_floating_point(completions) or torch.is_complex(completions):
            raise TypeError(f"completions must be an integer tensor of token ids, got dtype {completions.dtype}")
        if completions.dim() != 2 or completions.shape[1] != self.completion_len or (n is not None and completions.shape[0] != n):
            want = f"({'n' if n is None else n}, {self.completion_len})"
            raise ValueError(f"completions must be shaped {want}, got {tuple(completions.shape)}")
        return completions.long()

    def reward(self, prompts: torch.Tensor, completions: torch.Tensor) -> torch.Tensor:
        r"""The verifier: 1.0 where the completion up to its first EOS is the sorted prompt, else 0.0.

        Tokens after the first EOS are ignored; a completion with no EOS (truncated) scores 0.
        """
        answers = self.answers(prompts)
        completions = self._check_completions(completions, answers.shape[0]).to(answers.device)
        is_eos = (completions == EOS).long()
        after = (torch.cumsum(is_eos, 1) - is_eos) > 0
        cleaned = torch.where(after, torch.full_like(completions, PAD), completions)
        return (cleaned == answers).all(1).to(torch.float32)

    def well_formed(self, completions: torch.Tensor) -> torch.Tensor:
        """1.0 where a completion is digits then EOS (a format reward), else 0.0. The empty answer
        ``.`` (EOS at once) is well formed: a format bonus alone can be won without sorting anything."""
        completions = self._check_completions(completions)
        is_eos = completions == EOS
        before = torch.cumsum(is_eos.long(), 1) == 0
        is_digit = (completions >= DIGIT0) & (completions < DIGIT0 + 10)
        return (is_eos.any(1) & (is_digit | ~before).all(1)).to(torch.float32)

    def answer_lengths(self, completions: torch.Tensor) -> torch.Tensor:
        """Tokens before the first EOS (all slots if none): the answer's length, EOS not counted."""
        completions = self._check_completions(completions)
        return (torch.cumsum((completions == EOS).long(), 1) == 0).sum(1)

    def encode(self, strings: Sequence[str]) -> torch.Tensor:
        """Prompts from digit strings, e.g. ``["3142", "7"]`` (an optional trailing ``=`` is dropped)."""
        if isinstance(strings, str):
            strings = [strings]
        rows = []
        for s in strings:
            if not isinstance(s, str):
                raise TypeError(f"strings must be strings of digits, got {type(s).__name__}")
            s = s[:-1] if s.endswith("=") else s
            if not s.isdigit() or not self.min_len <= len(s) <= self.max_len:
                raise ValueError(f"strings must hold {self.min_len} to {self.max_len} digits each, got {s!r}")
            rows.append([PAD] * (self.max_len - len(s)) + [BOS] + TOKENIZER.encode(s) + [SEP])
        return torch.tensor(rows, dtype=torch.long)

    def decode(self, tokens: torch.Tensor, strip: bool = True) -> list[str]:
        """Strings from token rows: digits, ``=``, ``.`` for EOS; with ``strip`` PAD, BOS and what follows EOS go."""
        return TOKENIZER.decode_batch(tokens, strip)
