r"""A tiny causal transformer language model (GPT-style, pre-LayerNorm).

Tokens :math:`x_1..x_L` become vectors :math:`h^0_t = E[x_t] + P[t]`; each of ``n_layers`` blocks adds

.. math:: h \leftarrow h + \mathrm{Attn}(\mathrm{LN}(h)), \qquad h \leftarrow h + \mathrm{MLP}(\mathrm{LN}(h)),

.. math:: \mathrm{Attn}(h)_t = \sum_{s \le t} \operatorname{softmax}_s\!\Big(\frac{q_t\cdot k_s}{\sqrt{d_h}}\Big)\, v_s

(per head; the causal mask :math:`s \le t` means position t never sees a later token), and the
logits of the next token are :math:`W\,\mathrm{LN}(h^{L}_t)`. So ``logits[:, t]`` scores
:math:`\pi(x_{t+1} \mid x_{\le t})`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .validate import positive_int


class Block(nn.Module):
    """One pre-LN transformer block: causal multi-head self-attention, then a 4×-wide MLP."""

    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        self.n_heads = n_heads
        self.ln1, self.ln2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model))

    def forward(self, h: torch.Tensor, cache: list | None = None) -> torch.Tensor:
        """``cache`` (a list, for sampling): holds this block's past keys and values; new ones are appended."""
        B, L, D = h.shape
        q, k, v = self.qkv(self.ln1(h)).view(B, L, 3, self.n_heads, D // self.n_heads).permute(2, 0, 3, 1, 4)
        if cache is not None and cache:
            k, v = torch.cat([cache[0], k], 2), torch.cat([cache[1], v], 2)
        if cache is not None:
            cache[:] = [k, v]
        # each new position sees the past keys and itself; the mask only matters among the new positions
        causal = L > 1
        if causal and k.shape[2] != L:
            raise ValueError("a cached forward takes one new token at a time")
        att = F.scaled_dot_product_attention(q, k, v, is_causal=causal)        # (B, heads, L, d_h)
        h = h + self.proj(att.transpose(1, 2).reshape(B, L, D))
        return h + self.mlp(self.ln2(h))


class TinyTransformer(nn.Module):
    """``forward(tokens (B, L)) -> logits (B, L, vocab_size)``; ``logits[:, t]`` predicts token t + 1."""

    def __init__(self, vocab_size: int, d_model: int = 64, n_layers: int = 2, n_heads: int = 4, max_len: int = 32):
        super().__init__()
        self.vocab_size = positive_int(vocab_size, "vocab_size")
        d_model, n_heads = positive_int(d_model, "d_model"), positive_int(n_heads, "n_heads")
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be a multiple of n_heads ({n_heads})")
        self.max_len = positive_int(max_len, "max_len")
        self.tok = nn.Embedding(self.vocab_size, d_model)
        self.pos = nn.Embedding(self.max_len, d_model)
        self.blocks = nn.ModuleList(Block(d_model, n_heads) for _ in range(positive_int(n_layers, "n_layers")))
        self.ln = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, self.vocab_size)
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, tokens: torch.Tensor, cache: list[list] | None = None) -> torch.Tensor:
        """Logits for ``tokens``. With ``cache`` (from :meth:`new_cache`), ``tokens`` continue the
        sequence the cache has seen (the whole prompt first, then one token at a time): what a
        sampler does, without recomputing the past."""
        if tokens.dim() != 2:
            raise ValueError(f"tokens must be shaped (batch, length), got {tuple(tokens.shape)}")
        start = 0 if cache is None or not cache[0] else cache[0][0].shape[2]
        L = tokens.shape[1]
        if start + L > self.max_len:
            raise ValueError(f"tokens reach position {start + L}, more than the model's max_len {self.max_len}")
        h = self.tok(tokens) + self.pos(torch.arange(start, start + L, device=tokens.device))
        for i, block in enumerate(self.blocks):
            h = block(h, None if cache is None else cache[i])
        return self.head(self.ln(h))

    def new_cache(self) -> list[list]:
        """An empty key/value cache: one list per block."""
        return [[] for _ in self.blocks]
