"""Exercise checks for the notebooks.

Each notebook's exercises are registered in a module ``pgcourse.grading.nbNN`` with the
:func:`exercise` decorator: a function returning the test :class:`Case` s (inputs and the
expected output, computed by the package's reference code). A check cell calls
``check("name", learner_function)``:

* every case passes: prints one line, ``✓ name: all N cases pass``;
* the learner has not attempted it (``NotImplementedError``): prints a line saying so and that
  the cells below use the reference, so Run All goes on;
* a case fails: raises :class:`ExerciseFailed` with the first failing case (input, expected, got).
"""
from __future__ import annotations

import copy
import importlib
import math
import pkgutil
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

__all__ = ["Case", "ExerciseFailed", "check", "exercise", "exercises"]


class ExerciseFailed(AssertionError):
    """A learner's answer failed a case; the message shows input, expected and got."""


@dataclass
class Case:
    """One call ``fn(*args, **kwargs)`` and what it should return."""

    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    expected: Any = None
    note: str = ""


@dataclass
class Exercise:
    name: str
    make_cases: Callable[[], list[Case]]
    atol: float
    rtol: float
    compare: Callable[[Any, Any], str | None] | None


_REGISTRY: dict[str, Exercise] = {}


def exercise(name: str, *, atol: float = 1e-5, rtol: float = 1e-4,
             compare: Callable[[Any, Any], str | None] | None = None):
    """Register ``make_cases`` (a function returning a list of :class:`Case`) as exercise ``name``.

    ``compare(got, expected)`` may replace the default comparison; it returns None when they
    agree, else a short reason.
    """
    def deco(make_cases: Callable[[], list[Case]]):
        if name in _REGISTRY:
            raise ValueError(f"exercise {name!r} is registered twice")
        _REGISTRY[name] = Exercise(name, make_cases, atol, rtol, compare)
        return make_cases
    return deco


def _load_all() -> None:
    for m in pkgutil.iter_modules(__path__):
        if m.name.startswith("nb"):
            importlib.import_module(f"{__name__}.{m.name}")


def exercises() -> dict[str, Exercise]:
    """Every registered exercise, by name."""
    _load_all()
    return dict(_REGISTRY)


def _show(x: Any) -> str:
    if isinstance(x, torch.Tensor):
        with torch.no_grad():
            body = repr(x.detach().cpu())
        return body if x.numel() <= 64 else f"tensor of shape {tuple(x.shape)}, dtype {x.dtype}:\n{body}"
    if isinstance(x, (tuple, list)):
        return "(" + ", ".join(_show(v) for v in x) + ")"
    if isinstance(x, dict):
        return "{" + ", ".join(f"{k}={_show(v)}" for k, v in x.items()) + "}"
    return repr(x)


def differ(got: Any, expected: Any, atol: float = 1e-5, rtol: float = 1e-4) -> str | None:
    """None if ``got`` matches ``expected`` (recursively, tensors to a tolerance), else why not."""
    if isinstance(expected, torch.Tensor):
        if not isinstance(got, torch.Tensor):
            return f"expected a torch.Tensor, got {type(got).__name__}"
        if tuple(got.shape) != tuple(expected.shape):
            return f"shape {tuple(got.shape)} instead of {tuple(expected.shape)}"
        g, e = got.detach().cpu().to(torch.float64), expected.detach().cpu().to(torch.float64)
        if expected.dtype == torch.bool or not torch.is_floating_point(expected):
            return None if torch.equal(g, e) else "values differ"
        if not torch.allclose(g, e, atol=atol, rtol=rtol, equal_nan=True):
            worst = int((g - e).abs().flatten().argmax())
            return f"values differ (largest difference {float((g - e).abs().max()):.3g} at flat index {worst})"
        return None
    if isinstance(expected, (tuple, list)):
        if not isinstance(got, (tuple, list)) or len(got) != len(expected):
            return f"expected a sequence of {len(expected)} items, got {_show(got)}"
        for i, (g, e) in enumerate(zip(got, expected)):
            why = differ(g, e, atol, rtol)
            if why:
                return f"item {i}: {why}"
        return None
    if isinstance(expected, float):
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.item()
        if not isinstance(got, (int, float)) or not math.isclose(got, expected, rel_tol=rtol, abs_tol=atol):
            return "values differ"
        return None
    return None if got == expected else "values differ"


def check(name: str, fn: Callable[..., Any]) -> bool:
    """Run exercise ``name``'s cases on the learner's ``fn``; print one line, or raise on the first failure."""
    table = exercises()
    if name not in table:
        raise KeyError(f"no exercise named {name!r}; known: {sorted(table)}")
    ex = table[name]
    cases = ex.make_cases()
    for i, case in enumerate(cases, 1):
        args, kwargs = copy.deepcopy(case.args), copy.deepcopy(case.kwargs)
        try:
            got = fn(*args, **kwargs)
        except NotImplementedError:
            print(f"○ {name}: not attempted yet (the cells below use pgcourse's reference solution)")
            return False
        except Exception as err:  # the learner's code raised: show the case
            raise ExerciseFailed(_message(name, i, len(cases), case, "raised " + f"{type(err).__name__}: {err}")) from err
        why = ex.compare(got, case.expected) if ex.compare else differ(got, case.expected, ex.atol, ex.rtol)
        if why:
            raise ExerciseFailed(_message(name, i, len(cases), case, _show(got), why))
    print(f"✓ {name}: all {len(cases)} cases pass")
    return True


def _message(name: str, i: int, n: int, case: Case, got: str, why: str = "") -> str:
    call = ", ".join([_show(a) for a in case.args] + [f"{k}={_show(v)}" for k, v in case.kwargs.items()])
    lines = [f"{name}: case {i} of {n} fails" + (f" ({case.note})" if case.note else "") + (f": {why}" if why else ""),
             f"  input:    ({call})", f"  expected: {_show(case.expected)}", f"  got:      {got}"]
    return "\n".join(lines)
