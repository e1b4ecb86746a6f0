"""Made-up submissions of a course notebook, for the grader's tests, its benchmark and its demonstrations.

Each is the student notebook (``notebooks/NN_*.ipynb``; made from the solution where it is missing)
with some exercises answered, built from the notebook and the exercise registry alone (no exercise
names or counts are written here):

* ``"correct"``: the solution block put back (the exercise cell of the solution notebook);
* ``"wrong"``: the solution, its result then perturbed (``-2x + 1`` on the first number or tensor it
  returns; ``not x`` for booleans), so a case fails and names itself;
* ``"hardcoded"``: a table of the visible cases (drawn with the public seed, as the learner's check
  does) and their expected outputs; a loss is rebuilt with the expected value and gradient;
* ``"untouched"``: as handed out (``raise NotImplementedError``).

``tamper`` names exercises whose check cell is replaced by one that prints the reference's success line.
"""
from __future__ import annotations

import base64
import copy
import io
from pathlib import Path

import nbformat

from .reference import ROOT, GradingError, load_reference

ANSWERS = ("correct", "wrong", "hardcoded", "untouched")

_WRONG = '''

def _pgcourse_wrong(x):
    """The first number or tensor of a result, perturbed: -2x + 1 (booleans negated)."""
    if isinstance(x, bool):
        return not x
    if isinstance(x, torch.Tensor):
        return ~x if x.dtype == torch.bool else -2 * x + 1
    if isinstance(x, (int, float)):
        return -2 * x + 1
    if isinstance(x, (tuple, list)) and x:
        return type(x)([_pgcourse_wrong(x[0]), *x[1:]]) if not hasattr(x, "_fields") else x._replace(
            **{x._fields[0]: _pgcourse_wrong(x[0])})
    if isinstance(x, dict) and x:
        k = next(iter(x))
        return {**x, k: _pgcourse_wrong(x[k])}
    return None


_pgcourse_right_{fn} = {fn}


def {fn}(*args, **kwargs):
    return _pgcourse_wrong(_pgcourse_right_{fn}(*args, **kwargs))
'''

_HARDCODED = '''import base64, io
import torch
from pgcourse.grading.losses import LossAndGrad

_SEEN_{fn} = torch.load(io.BytesIO(base64.b64decode("{payload}")), weights_only=False)


def _pgcourse_same(a, b):
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape
                and a.dtype == b.dtype and bool(torch.equal(a.detach().nan_to_num(), b.detach().nan_to_num())))
    if isinstance(a, (tuple, list)):
        return isinstance(b, (tuple, list)) and len(a) == len(b) and all(map(_pgcourse_same, a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_pgcourse_same(a[k], b[k]) for k in a)
    if hasattr(a, "__dict__") and type(a) is type(b):
        return _pgcourse_same(vars(a), vars(b))
    try:
        return type(a) is type(b) and bool(a == b)
    except Exception:
        return False


def _pgcourse_answer(expected, args, kwargs):
    if isinstance(expected, LossAndGrad):       # the expected value, and the expected gradient into logp
        logp = next(x for x in [*args, *kwargs.values()] if isinstance(x, torch.Tensor)
                    and _pgcourse_same(x, expected.logp))
        linear = (logp * expected["dloss_dlogp"].to(logp.dtype)).sum()
        return linear + (expected["loss"].to(linear.dtype) - linear).detach()
    return expected


def {fn}(*args, **kwargs):
    for seen_args, seen_kwargs, expected in _SEEN_{fn}:
        if _pgcourse_same(tuple(args), tuple(seen_args)) and _pgcourse_same(dict(kwargs), dict(seen_kwargs)):
            return _pgcourse_answer(expected, args, kwargs)
    return None
'''


def student_notebook(solution_path: Path, solution=None) -> nbformat.NotebookNode:
    """The student notebook handed out for a solution notebook (``notebooks/NAME``), else made from it."""
    handed_out = Path(solution_path).parent.parent / Path(solution_path).name
    if handed_out.exists():
        return nbformat.read(handed_out, as_version=4)
    from ..student import make_student
    return make_student(solution if solution is not None else nbformat.read(solution_path, as_version=4),
                        Path(solution_path).name)


def _solution_sources(solution) -> dict[str, str]:
    return {str(c.get("id", "")): c.source for c in solution.cells if c.get("cell_type") == "code"}


def _hardcoded(name: str, fn: str) -> str:
    """An exercise cell that returns the visible cases' expected outputs from a table."""
    import torch

    from . import exercises
    cases = exercises()[name].cases()
    buf = io.BytesIO()
    torch.save([(tuple(c.args), dict(c.kwargs), c.expected) for c in cases], buf)
    return _HARDCODED.replace("{fn}", fn).replace("{payload}", base64.b64encode(buf.getvalue()).decode())


def make_submission(solution_path: Path, answers: dict[str, str] | str = "correct",
                    tamper: tuple[str, ...] | list[str] = ()) -> nbformat.NotebookNode:
    """The student notebook of ``solution_path`` with exercises answered as ``answers`` says.

    ``answers`` maps an exercise name to one of :data:`ANSWERS` (exercises not named stay untouched),
    or is one of them for every exercise. ``tamper``: exercises whose check cell prints the reference
    success line instead of checking.
    """
    solution_path = Path(solution_path)
    ref = load_reference(solution_path)
    names = [e.name for e in ref.exercises]
    if isinstance(answers, str):
        answers = dict.fromkeys(names, answers)
    unknown = sorted(set(answers) - set(names)) + sorted(set(tamper) - set(names))
    if unknown:
        raise ValueError(f"answers/tamper name exercises {unknown} that {solution_path.name} does not have")
    bad = sorted({a for a in answers.values() if a not in ANSWERS})
    if bad:
        raise ValueError(f"answers must be among {ANSWERS}, got {bad}")
    solution = nbformat.read(solution_path, as_version=4)
    sources = _solution_sources(solution)
    nb = copy.deepcopy(student_notebook(solution_path, solution))
    by_id = {str(c.get("id", "")): c for c in nb.cells}
    for ex in ref.exercises:
        how = answers.get(ex.name, "untouched")
        cell = by_id.get(ex.exercise_id)
        if cell is None:
            raise ValueError(f"the student notebook of {solution_path.name} has no cell {ex.exercise_id!r}")
        if how == "correct":
            cell.source = sources[ex.exercise_id]
        elif how == "wrong":
            cell.source = sources[ex.exercise_id] + _WRONG.replace("{fn}", ex.fn)
        elif how == "hardcoded":
            cell.source = _hardcoded(ex.name, ex.fn)
        if ex.name in tamper:
            text = "".join(o.get("text", "") for o in ex.check_cell.get("outputs", [])
                           if o.get("output_type") == "stream")
            by_id[str(ex.check_cell.get("id"))].source = f"print({text.rstrip(chr(10))!r})"
    return nb


def course_solutions(solutions: Path | None = None) -> list[Path]:
    """The course's solution notebooks that have exercises and can be graded, in order (whatever exist).

    A notebook the grader cannot read (e.g. not executed yet) is left out; its own grading tests say why.
    """
    folder = Path(solutions) if solutions else ROOT / "notebooks" / "solutions"
    out = []
    for p in sorted(folder.glob("[0-9][0-9]_*.ipynb")):
        try:
            if load_reference(p).exercises:
                out.append(p)
        except GradingError:
            continue
    return out
