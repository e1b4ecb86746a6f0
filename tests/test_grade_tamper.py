"""The grading kernel's environment watch (pgcourse.grading.tamper): lazy library imports are not tampering.

The lazy imports run in a fresh interpreter (this test process may have imported them already).
"""
from __future__ import annotations

import functools
import math
import subprocess
import sys
import textwrap
import types

import torch

from pgcourse.grading import differ
from pgcourse.grading.tamper import comparison_canary, environment_watch

LIBS = [torch.__path__[0]]


def _watch():
    take, changed = environment_watch([torch, math], [torch.Tensor], ["len", "isinstance"], LIBS)
    take()
    return changed


def test_the_libraries_own_lazy_imports_are_not_tampering():
    code = textwrap.dedent("""
        import math, torch
        from pgcourse.grading.tamper import environment_watch
        take, changed = environment_watch([torch, math], [torch.Tensor, torch._C.TensorBase], ["len"],
                                          [torch.__path__[0]])
        take()
        seed = torch.manual_seed
        p = torch.nn.Parameter(torch.ones(3))
        opt = torch.optim.Adam([p], lr=0.1)          # imports torch._dynamo: re-wraps torch.manual_seed
        p.sum().backward(); opt.step()
        import torch._dynamo, gymnasium, matplotlib.pyplot, tqdm.auto
        gymnasium.make("CartPole-v1").reset(seed=0)
        assert torch.manual_seed is not seed, "torch no longer re-wraps manual_seed: this test tests nothing"
        print("CHANGED", changed())
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "CHANGED []" in out.stdout, out.stdout


def test_a_replaced_function_is_tampering_even_when_it_looks_like_a_wrapper():
    changed = _watch()
    real = torch.allclose
    fake_file = compile("def allclose(*a, **k):\n    return True", torch.__file__, "exec")
    forged = types.FunctionType(next(c for c in fake_file.co_consts if isinstance(c, types.CodeType)), {})
    forged.__wrapped__ = real
    lib_code = torch._disable_dynamo(real)          # the library's own wrapper code, with the learner's closure
    own_closure = types.FunctionType(lib_code.__code__, lib_code.__globals__, "allclose", lib_code.__defaults__,
                                     tuple(types.CellType(c.cell_contents if not callable(c.cell_contents)
                                                          else (lambda *a, **k: True))
                                           for c in lib_code.__closure__))
    own_closure.__wrapped__ = real
    attacks = {"lambda": lambda *a, **k: True,
               "functools.wraps": functools.wraps(real)(lambda *a, **k: True),
               "a code object named after a torch file": forged,
               "torch's wrapper code around another function": own_closure,
               "another torch function": torch.is_tensor}
    try:
        for what, fake in attacks.items():
            torch.allclose = fake
            assert changed() == ["torch.allclose"], what
        torch.allclose = torch._disable_dynamo(real)   # what torch itself does to manual_seed: allowed
        assert changed() == []
    finally:
        torch.allclose = real
    assert changed() == []
    len_ = len
    import builtins
    try:
        builtins.len = lambda x: 0
        assert changed() == ["builtins.len"]
    finally:
        builtins.len = len_


def test_the_canary_notices_comparisons_that_always_agree():
    works = comparison_canary(differ, torch)
    assert works()
    real = torch.allclose
    try:
        torch.allclose = lambda *a, **k: True
        assert not works()
    finally:
        torch.allclose = real
    assert works()
