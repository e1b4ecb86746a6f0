"""Watching the grading kernel's environment: did learner code replace what the check relies on?

:func:`environment_watch` takes a snapshot of the callables (and sub-modules) of the watched modules,
of ``torch.Tensor``'s methods and of some builtins, before any learner code runs; ``changed()``
later names every entry that now holds something else, except where the library itself re-wrapped
it. Libraries do that on a lazy import: building the first ``torch.optim`` optimizer imports
``torch._dynamo``, which sets ``torch.manual_seed = torch._disable_dynamo(torch.manual_seed)``. A
change is the library's own only when the new value is a Python function whose globals are those
of an installed library module, whose code equals code compiled from that module's source file
(not only named after it), whose ``__wrapped__`` chain leads back to the snapshot's object, and
whose closure holds no callable but that chain. Identity alone would call such a lazy import
tampering; file names alone could be forged (``compile(src, "…/torch/x.py", …)``).

``comparison_canary(differ, torch)()`` checks by behaviour what the check uses to compare: it must tell
different tensors, floats and sequences apart and find equal ones equal.

Everything the returned functions use is bound when they are made (no module globals at call
time), so replacing a name in this module later changes nothing.
"""
from __future__ import annotations

import builtins
import os
import sys
import types
from typing import Callable, Iterable

WRAP_DEPTH = 8


def environment_watch(modules: Iterable[types.ModuleType], classes: Iterable[type], builtin_names: Iterable[str],
                      library_dirs: Iterable[str]) -> tuple[Callable[[], None], Callable[[], list[str]]]:
    """``(take_snapshot, changed)`` for these modules, classes and builtins (see the module docstring)."""
    modules, classes, builtin_names = list(modules), list(classes), list(builtin_names)
    roots = tuple(os.path.join(os.path.realpath(d), "") for d in library_dirs)
    realpath, vars_, getattr_, callable_, isinstance_ = os.path.realpath, vars, getattr, callable, isinstance
    type_, FunctionType, CodeType, ModuleType = type, types.FunctionType, types.CodeType, types.ModuleType
    sys_modules, builtins_, open_, compile_ = sys.modules, builtins, open, compile
    snapshot: list[tuple[object, str, object]] = []
    hooks = [(sys.gettrace(), sys.getprofile())]
    gettrace, getprofile = sys.gettrace, sys.getprofile

    def take_snapshot() -> None:
        snapshot.clear()
        hooks[0] = (gettrace(), getprofile())
        for mod in modules:
            for k, v in list(vars_(mod).items()):
                if callable_(v) or isinstance_(v, ModuleType):
                    snapshot.append((mod, k, v))
        for cls in classes:
            for k, v in list(vars_(cls).items()):
                snapshot.append((cls, k, v))
        for k in builtin_names:
            snapshot.append((builtins_, k, getattr_(builtins_, k)))

    def codes(code, depth=0):
        yield code
        if depth < 12:
            for c in code.co_consts:
                if type_(c) is CodeType:
                    yield from codes(c, depth + 1)

    library_code: dict[str, list] = {}

    def defined_in_library(f) -> bool:
        """``f`` is a function of an installed library module: its globals are that module's and its code
        equals (co_code, constants, names, line table...) code compiled from that module's source file."""
        path = realpath(f.__code__.co_filename)
        if not path.startswith(roots):
            return False
        mod = next((m for m in list(sys_modules.values())
                    if isinstance_(getattr_(m, "__file__", None), str) and realpath(m.__file__) == path), None)
        if mod is None or f.__globals__ is not vars_(mod):
            return False
        if path not in library_code:
            try:
                with open_(path, "rb") as src:
                    library_code[path] = list(codes(compile_(src.read(), path, "exec", dont_inherit=True)))
            except (OSError, SyntaxError, ValueError):
                library_code[path] = []
        return any(c == f.__code__ for c in library_code[path])

    def library_rewrap(new, old) -> bool:
        """``new`` is the library's own wrapper (chain) around ``old`` (see the module docstring)."""
        f = new
        for _ in range(WRAP_DEPTH):
            if type_(f) is not FunctionType or not defined_in_library(f):
                return False
            inner = vars_(f).get("__wrapped__")
            for cell in f.__closure__ or ():
                try:
                    held = cell.cell_contents
                except ValueError:            # an empty cell
                    continue
                if callable_(held) and held is not inner:
                    return False
            if inner is old:
                return True
            f = inner
        return False

    def changed() -> list[str]:
        out = [] if (gettrace(), getprofile()) == hooks[0] else ["sys.settrace/setprofile hook"]
        for owner, k, v in snapshot:
            now = vars_(owner).get(k, None)
            if now is not v and not library_rewrap(now, v):
                out.append(f"{getattr_(owner, '__name__', owner)}.{k}")
        return out

    return take_snapshot, changed


def comparison_canary(differ: Callable, torch) -> Callable[[], bool]:
    """A function telling whether ``differ`` still tells unequal values apart and finds equal ones equal."""
    tensor, float64, isinstance_ = torch.tensor, torch.float64, isinstance

    def comparisons_work() -> bool:
        a = tensor([1.0, 2.0, 3.0], dtype=float64)
        b = tensor([1.0, 2.0, 3.5], dtype=float64)
        i, j = tensor([1, 2]), tensor([1, 3])
        unequal = [(a, b), (a, a[:2]), (i, j), (1.0, 1.5), ((a, 1.0), (a, 2.0)), ([i], [j]), (a, 1.0)]
        equal = [(a, a.clone()), (i, i.clone()), (1.0, 1.0), ((a, i), (a.clone(), i.clone()))]
        try:
            return (all(isinstance_(differ(x, y), str) for x, y in unequal)
                    and all(differ(x, y) is None for x, y in equal))
        except Exception:
            return False

    return comparisons_work
