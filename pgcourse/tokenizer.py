r"""A character tokenizer: one id per character, plus three special tokens.

========  ====  =====================================================
token     id    shown as
========  ====  =====================================================
PAD       0     ``_``  (fills rows to a common length; never a target)
BOS       1     ``^``  (begins every prompt)
EOS       2     ``.``  (ends every completion: stopping is an action too)
chars     3…    the characters themselves
========  ====  =====================================================
"""
from __future__ import annotations

from typing import Sequence

import torch

from .validate import as_tensor

PAD, BOS, EOS = 0, 1, 2
_SPECIAL = "_^."


class CharTokenizer:
    """Ids for the characters of ``chars`` (distinct, none of ``_^.``), after PAD, BOS and EOS."""

    pad, bos, eos = PAD, BOS, EOS

    def __init__(self, chars: str):
        if not isinstance(chars, str) or not chars:
            raise TypeError(f"chars must be a non-empty string, got {chars!r}")
        if len(set(chars)) != len(chars) or set(chars) & set(_SPECIAL):
            raise ValueError(f"chars must be distinct and must not contain {_SPECIAL!r}, got {chars!r}")
        self.chars = chars
        self.symbols = _SPECIAL + chars
        self._ids = {c: i for i, c in enumerate(self.symbols)}

    def __repr__(self) -> str:
        return f"CharTokenizer({self.chars!r})"

    @property
    def vocab_size(self) -> int:
        return len(self.symbols)

    def encode(self, text: str) -> list[int]:
        """The ids of ``text``; the shown symbols ``_^.`` map to PAD, BOS, EOS."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a string, got {type(text).__name__}")
        unknown = sorted(set(text) - set(self.symbols))
        if unknown:
            raise ValueError(f"text has characters outside the vocabulary {self.symbols!r}: {unknown}")
        return [self._ids[c] for c in text]

    def decode(self, ids: Sequence[int] | torch.Tensor, strip: bool = True) -> str:
        """The text of ``ids``; with ``strip``, PAD and BOS go and nothing after the first EOS is kept."""
        if isinstance(ids, torch.Tensor):
            if ids.dim() != 1:
                raise ValueError(f"ids must be one row (1-D), got shape {tuple(ids.shape)}")
            ids = ids.tolist()
        text = "".join(self.symbols[i] if 0 <= i < self.vocab_size else "?" for i in ids)
        if strip:
            text = text.replace("_", "").replace("^", "")
            text = text[: text.index(".") + 1] if "." in text else text
        return text

    def decode_batch(self, tokens, strip: bool = True) -> list[str]:
        """:meth:`decode` for each row of a (N, L) tensor (a 1-D tensor is one row)."""
        tokens = as_tensor(tokens, "tokens")
        if tokens.dim() == 1:
            tokens = tokens[None]
        if tokens.dim() != 2:
            raise ValueError(f"tokens must be shaped (rows, length), got {tuple(tokens.shape)}")
        return [self.decode(row, strip) for row in tokens]
