r"""The starting point of GRPO: a tiny transformer taught to sort digits by supervised fine-tuning.

SFT on demonstrations (prompt, sorted answer) is stopped early, so the model is partly right: the
room GRPO has to improve it with the verifier's reward alone.
"""
from __future__ import annotations

import copy
import functools

import torch

from ..device import torch_threads
from ..digitsort import DigitSort
from ..tinylm import supervised_finetune
from ..transformer import TinyTransformer
from ..validate import positive_int

SFT_STEPS = 40        # demonstrations seen: SFT_STEPS × 128
DEMOS = 2000


def make_policy(task: DigitSort, seed: int = 0, **sizes) -> TinyTransformer:
    """A fresh (random) :class:`TinyTransformer` for ``task`` (d_model=64, 2 layers, 4 heads unless ``sizes``)."""
    gen = torch.random.fork_rng()
    with gen:
        torch.manual_seed(seed)
        return TinyTransformer(task.vocab_size, max_len=task.prompt_len + task.completion_len, **sizes)


@functools.lru_cache(maxsize=8)
def _pretrained_state(min_len: int, max_len: int, extra: int, sft_steps: int, seed: int) -> dict:
    task = DigitSort(min_len, max_len, extra)
    policy = make_policy(task, seed)
    demos = task.sample_prompts(DEMOS, seed=1000 + seed)
    with torch_threads(1):
        supervised_finetune(policy, demos, task.answers(demos), task.eos, steps=sft_steps, batch_size=128,
                            lr=3e-3, seed=2000 + seed)
    return copy.deepcopy(policy.state_dict())


def pretrained_policy(task: DigitSort | None = None, sft_steps: int = SFT_STEPS, seed: int = 0) -> TinyTransformer:
    """A :func:`make_policy` model after ``sft_steps`` of SFT on ``DEMOS`` demonstrations of ``task``
    (computed once per process and arguments; each call returns a fresh copy)."""
    task = DigitSort() if task is None else task
    if not isinstance(task, DigitSort):
        raise TypeError(f"task must be a DigitSort, got {type(task).__name__}")
    state = _pretrained_state(task.min_len, task.max_len, task.extra, positive_int(sft_steps, "sft_steps"), int(seed))
    policy = make_policy(task, seed)
    policy.load_state_dict(state)
    return policy
