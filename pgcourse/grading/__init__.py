"""Exercise checks for the notebooks: cases, points, partial credit, held-out cases.

Each notebook's exercises are registered in a module ``pgcourse.grading.nbNN`` with the
:func:`exercise` decorator on a function ``make_cases(gen)`` returning the test :class:`Case` s
(inputs and the expected output, computed by the package's reference code). Every random input is
drawn from ``gen``: a learner's check runs the cases of the public seed (:data:`PUBLIC_SEED`); the
grader also runs the maker with a seed only it holds, so an answer that hard-codes the visible
cases fails the held-out ones. Each exercise has ``points`` and a ``kind`` (transcribe, measure,
predict, debug, build); each case has a ``weight``, and a learner earns
``points × (weight of the cases passed) / (total weight)``.

A check cell calls ``check("name", learner_function)``:

* every case passes: prints one line, ``✓ name: 7/7 cases, 3/3 points``;
* the learner has not attempted it (``NotImplementedError`` on the first case): prints a line saying
  so and that the cells below use the reference, so Run All goes on;
* a case fails: raises :class:`ExerciseFailed`; its message starts with
  ``✗ name: 5/7 cases, 2.1/3 points`` and shows the first failing case (input, expected, got).

:func:`evaluate` runs the same cases without printing and returns an :class:`Outcome`; the grader
builds on it.
"""
from __future__ import annotations

import copy
import importlib
import inspect
import math
import pkgutil
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

__all__ = ["Case", "ExerciseFailed", "KINDS", "Outcome", "PUBLIC_SEED", "announce", "check", "derive", "evaluate",
           "exercise", "exercises", "passed", "yours_or_reference"]

PUBLIC_SEED = 0
KINDS = ("transcribe", "measure", "predict", "debug", "build")


class ExerciseFailed(AssertionError):
    """A learner's answer failed a case; the message shows input, expected and got."""


@dataclass
class Case:
    """One call ``fn(*args, **kwargs)`` and what it should return.

    ``call``, where set, is a harness that runs the learner's function inside something larger (a short
    training run, say): the case then compares ``call(fn, *args, **kwargs)`` with ``expected``.
    """

    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    expected: Any = None
    note: str = ""
    weight: float = 1.0
    call: Callable[..., Any] | None = None


@dataclass
class Exercise:
    name: str
    make_cases: Callable[..., list[Case]]
    atol: float
    rtol: float
    compare: Callable[[Any, Any], str | None] | None
    points: float = 1.0
    kind: str = "transcribe"

    def cases(self, seed: int | None = None) -> list[Case]:
        """The cases drawn with ``seed`` (default: the public seed every learner sees)."""
        gen = torch.Generator().manual_seed(PUBLIC_SEED if seed is None else int(seed))
        takes_gen = bool(inspect.signature(self.make_cases).parameters)
        cases = self.make_cases(gen) if takes_gen else self.make_cases()
        if not cases:
            raise ValueError(f"exercise {self.name!r} has no cases")
        return cases


_REGISTRY: dict[str, Exercise] = {}


def derive(gen: torch.Generator, k: int) -> torch.Generator:
    """The k-th independent stream of a case list, derived from ``gen``'s seed (the public one or a held-out one)."""
    return torch.Generator().manual_seed((gen.initial_seed() * 1_000_003 + 7919 * int(k)) % (2 ** 63))


def exercise(name: str, *, points: float = 1.0, kind: str = "transcribe", atol: float = 1e-5, rtol: float = 1e-4,
             compare: Callable[[Any, Any], str | None] | None = None):
    """Register ``make_cases(gen)`` (returning a list of :class:`Case`) as exercise ``name``.

    ``points`` is what the exercise is worth, ``kind`` one of :data:`KINDS`. ``compare(got, expected)``
    may replace the default comparison; it returns None when they agree, else a short reason.
    """
    if not (isinstance(points, (int, float)) and points > 0):
        raise ValueError(f"points must be a positive number, got {points!r}")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")

    def deco(make_cases: Callable[..., list[Case]]):
        if name in _REGISTRY:
            raise ValueError(f"exercise {name!r} is registered twice")
        _REGISTRY[name] = Exercise(name, make_cases, atol, rtol, compare, float(points), kind)
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


def fmt_points(x: float) -> str:
    """Points as a learner reads them: 3, 2.5, 2.14."""
    return f"{x:.2f}".rstrip("0").rstrip(".")


@dataclass
class Outcome:
    """What a learner's function did on an exercise's cases."""

    name: str
    attempted: bool
    n_cases: int
    n_passed: int = 0
    weight_passed: float = 0.0
    weight_total: float = 0.0
    max_points: float = 1.0
    failure: str | None = None          # the first failing case, as the learner reads it
    failed_cases: list[int] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.attempted and self.n_passed == self.n_cases

    @property
    def points(self) -> float:
        if not self.attempted or self.weight_total <= 0:
            return 0.0
        return self.max_points * self.weight_passed / self.weight_total

    @property
    def score_line(self) -> str:
        return (f"{self.n_passed}/{self.n_cases} cases, "
                f"{fmt_points(self.points)}/{fmt_points(self.max_points)} points")


def _lookup(name: str) -> Exercise:
    table = exercises()
    if name not in table:
        raise KeyError(f"no exercise named {name!r}; known: {sorted(table)}")
    return table[name]


def run_case(ex: Exercise, fn: Callable[..., Any], case: Case) -> tuple[str | None, str]:
    """Run one case on ``fn`` (on copies of its inputs): ``(None, "")`` when it passes, else ``(why, got)``.

    ``NotImplementedError`` propagates (the caller decides whether that means "not attempted").
    """
    args, kwargs = copy.deepcopy(case.args), copy.deepcopy(case.kwargs)
    try:
        got = fn(*args, **kwargs) if case.call is None else case.call(fn, *args, **kwargs)
    except NotImplementedError:
        raise
    except Exception as err:  # the learner's code raised: that case fails
        return "raised " + f"{type(err).__name__}: {err}", "raised " + f"{type(err).__name__}: {err}"
    try:
        why = ex.compare(got, case.expected) if ex.compare else differ(got, case.expected, ex.atol, ex.rtol)
    except Exception as err:
        why = f"could not compare the result ({type(err).__name__}: {err})"
    return (why, _show(got)) if why else (None, "")


def evaluate(name: str, fn: Callable[..., Any], seed: int | None = None,
             cases: list[Case] | None = None) -> Outcome:
    """Run every case of exercise ``name`` (drawn with ``seed``, or the given ``cases``) on ``fn``; never prints.

    Not attempted: ``fn`` raises ``NotImplementedError`` on the first case. A case whose call raises
    anything else, or whose result differs, fails; the others still count (partial credit).
    """
    ex = _lookup(name)
    cases = ex.cases(seed) if cases is None else cases
    out = Outcome(name, True, len(cases), weight_total=float(sum(c.weight for c in cases)), max_points=ex.points)
    for i, case in enumerate(cases, 1):
        try:
            why, got = run_case(ex, fn, case)
        except NotImplementedError as err:
            if i == 1:
                out.attempted = False
                return out
            why = got = f"raised NotImplementedError: {err}"
        if why is None:
            out.n_passed += 1
            out.weight_passed += case.weight
        else:
            out.failed_cases.append(i)
            if out.failure is None:
                out.failure = _message(name, i, len(cases), case, got, why)
    return out


_LAST: dict[str, bool] = {}


def check(name: str, fn: Callable[..., Any]) -> None:
    """Run exercise ``name``'s cases on the learner's ``fn``: print one line, or raise on a failure.

    Prints ``✓ name: N/N cases, P/P points`` when every case passes, ``○ name: not attempted …`` when
    ``fn`` raises NotImplementedError; otherwise raises :class:`ExerciseFailed` with the cases and
    points earned and the first failing case (input, expected, got).
    """
    announce(evaluate(name, fn))


def announce(out: Outcome) -> None:
    """What a check cell shows for an :class:`Outcome` (see :func:`check`); the grader's check uses it too."""
    _LAST[out.name] = out.passed
    if not out.attempted:
        print(f"○ {out.name}: not attempted yet (the cells below use pgcourse's reference solution)")
        return None
    if out.passed:
        print(f"✓ {out.name}: {out.score_line}")
        return None
    raise ExerciseFailed(f"✗ {out.name}: {out.score_line}. {out.failure}")


def passed(name: str) -> bool:
    """Whether the learner's last ``check(name, ...)`` in this session passed every case."""
    return _LAST.get(name, False)


def yours_or_reference(name: str, yours: Callable, reference: Callable) -> Callable:
    """The learner's function if its check passed, else the reference; prints which, in one line."""
    if passed(name):
        print(f"using your {getattr(yours, '__name__', name)} (its check {name} passed)")
        return yours
    print(f"using pgcourse's reference for {name} (your version has not passed its check yet)")
    return reference


def _message(name: str, i: int, n: int, case: Case, got: str, why: str = "") -> str:
    call = ", ".join([_show(a) for a in case.args] + [f"{k}={_show(v)}" for k, v in case.kwargs.items()])
    lines = [f"Case {i} of {n} fails" + (f" ({case.note})" if case.note else "") + (f": {why}" if why else ""),
             f"  input:    ({call})", f"  expected: {_show(case.expected)}", f"  got:      {got}"]
    return "\n".join(lines)
