"""Reading the course's notebooks: a reference solution notebook's exercises, and which reference a submission is.

A reference exercise is a check cell (tagged ``check`` or with a ``check-…`` id, calling
``check("name", fn)`` and showing its ``✓`` line) after an exercise cell. :func:`identify` finds a
submission's reference: the ``pgcourse.generated_from`` metadata the student tool writes, else the
file name; a notebook from another notebook or from no course notebook is :class:`Refused`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
PACKAGE_DIR = ROOT / "pgcourse"
GRADING_DIR = Path(__file__).resolve().parent
DEFAULT_SOLUTIONS = ROOT / "notebooks" / "solutions"

CHECK_CALL = re.compile(r"""check\(\s*["']([^"']+)["']\s*,\s*([A-Za-z_]\w*)\s*\)""")
PASS_LINE = re.compile(r"✓ (\S+): (\d+)/(\d+) cases, ([\d.]+)/([\d.]+) points")   # name, passed, n, points, max


class Refused(Exception):
    """The submission cannot be graded against any reference notebook (the reason is the message)."""


class GradingError(RuntimeError):
    """The grader itself could not run (not the learner's fault)."""


def _tags(cell) -> list[str]:
    tags = cell.get("metadata", {}).get("tags", [])
    return list(tags) if isinstance(tags, list) else []


def _cid(cell) -> str:
    return str(cell.get("id", "") or "")


def is_check_cell(cell) -> bool:
    return cell.get("cell_type") == "code" and ("check" in _tags(cell) or _cid(cell).startswith("check-"))


def is_exercise_cell(cell) -> bool:
    return cell.get("cell_type") == "code" and (
        "exercise" in _tags(cell) or _cid(cell).startswith("exercise-") or "### BEGIN SOLUTION" in cell.get("source", ""))


@dataclass
class RefExercise:
    """One exercise of a reference notebook: its check cell and the exercise cell before it."""

    name: str                 # "01.reward_to_go"
    fn: str                   # the learner function the check cell passes
    check_cell: dict
    exercise_id: str
    n_cases: int
    points: float             # what it is worth (from the reference's ✓ line)


@dataclass
class Reference:
    path: Path
    exercises: list[RefExercise]

    @property
    def stem(self) -> str:
        return self.path.stem

    @property
    def ids(self) -> set[str]:
        return {e.exercise_id for e in self.exercises} | {_cid(e.check_cell) for e in self.exercises}


def load_reference(path: Path) -> Reference:
    """The exercises of a solution notebook, in order, with their expected check output."""
    import nbformat
    nb = nbformat.read(path, as_version=4)
    out: list[RefExercise] = []
    last_exercise = None
    for cell in nb.cells:
        if is_check_cell(cell):
            m = CHECK_CALL.search(cell.source)
            if not m:
                raise GradingError(f"{path.name}: check cell {_cid(cell)!r} does not call check(\"name\", fn)")
            text = "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")
            p = PASS_LINE.search(text)
            if not p or cell.get("execution_count") is None:
                raise GradingError(f"{path.name}: check cell {_cid(cell)!r} has no '✓ name: N/N cases, P/P points' output; "
                                   "execute the solution notebook first")
            if last_exercise is None:
                raise GradingError(f"{path.name}: check cell {_cid(cell)!r} follows no exercise cell")
            out.append(RefExercise(m.group(1), m.group(2), cell, _cid(last_exercise), n_cases=int(p.group(3)),
                                   points=float(p.group(5))))
        elif is_exercise_cell(cell):
            last_exercise = cell
    return Reference(path, out)


def identify(nb, sub_path: Path, solutions: Path, expected: str | None = None) -> Path:
    """The reference solution notebook of a submission, or :class:`Refused` with the reason.

    By its ``pgcourse.generated_from`` metadata, else its file name, else the assignment ``expected``.
    """
    refs = {p.name: p for p in sorted(solutions.glob("*.ipynb"))}
    if not refs:
        raise GradingError(f"no solution notebooks in {solutions}")
    meta = nb.get("metadata", {}).get("pgcourse", {})
    source = meta.get("generated_from") if isinstance(meta, dict) else None
    if isinstance(source, str) and source:
        name = Path(source).name
        if name not in refs:
            raise Refused(f"made from {source!r}, which is not a notebook of this course "
                          f"(known: {', '.join(sorted(refs))})")
    else:
        hits = sorted((p for p in refs if Path(p).stem in sub_path.name), key=len)
        if not hits and expected:                # the assignment says which (a file renamed by the learner)
            hits = [_match_expected(expected, refs)]
        if not hits:
            raise Refused("cannot tell which course notebook this is: no pgcourse metadata and the file name "
                          f"names none of {', '.join(sorted(refs))}")
        name = hits[-1]
    if expected:
        want = _match_expected(expected, refs)
        if want != name:
            raise Refused(f"this is notebook {Path(name).stem}, not the assignment {Path(want).stem}")
    return refs[name]


def _match_expected(expected: str, refs: dict[str, Path]) -> str:
    hits = [n for n in refs if n == expected or Path(n).stem == expected or Path(n).stem.startswith(expected)]
    if len(hits) != 1:
        raise GradingError(f"--notebook {expected!r} matches {hits or 'no notebook'}; known: {sorted(refs)}")
    return hits[0]
