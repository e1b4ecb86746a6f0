"""Grading every course notebook for real: a correct submission gets full marks; a mixed one does not.

For EVERY solution notebook with exercises (whatever notebooks exist: a new 07 is covered by itself),
two submissions are made from its student notebook and the exercise registry
(:func:`pgcourse.grading.submissions.make_submission`), and all are graded in one run of the real
command (``--jobs 2``):

* **correct**: every solution block put back: every exercise passes, visible and held-out cases, with
  full points;
* **mixed**: the first exercise answered wrongly (its failing case named), the last exercise's check
  cell replaced by one printing the reference's success line, every other exercise untouched: no
  exercise passes, the untouched and the tampered ones are "not attempted" and earn nothing.

Nothing here names an exercise or counts them: everything comes from the notebooks.
"""
from __future__ import annotations

import contextlib
import csv
import io
from pathlib import Path

import nbformat
import pytest

from pgcourse import __main__ as cli
from pgcourse.grading import grade
from pgcourse.grading.submissions import make_submission

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = sorted((ROOT / "notebooks" / "solutions").glob("[0-9][0-9]_*.ipynb"))
SECRET = "test-grade-notebooks"


def exercise_names(path: Path) -> list[str]:
    return [e.name for e in grade.load_reference(path).exercises]


def exercises_or_skip(path: Path) -> list[str]:
    names = exercise_names(path)
    if not names:
        pytest.skip(f"{path.name} has no exercises")
    return names


def mixed_plan(names: list[str]) -> tuple[dict[str, str], list[str]]:
    """The first exercise wrong, the last one's check cell tampered (the same one when there is one)."""
    return {names[0]: "wrong"}, [names[-1]]


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Every notebook's correct and mixed submissions, graded in one run; rows by (notebook, variant)."""
    base = tmp_path_factory.mktemp("notebooks")
    folder = base / "submitted"
    folder.mkdir()
    for path in SOLUTIONS:
        try:
            names = exercise_names(path)
        except grade.GradingError:         # that notebook's own tests fail with the reason; the others go on
            continue
        if not names:
            continue
        answers, tamper = mixed_plan(names)
        nbformat.write(make_submission(path, "correct"), folder / f"correct_{path.name}")
        nbformat.write(make_submission(path, answers, tamper=tamper), folder / f"mixed_{path.name}")
    book = base / "gradebook.csv"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = cli.main(["grade", str(folder), "--gradebook", str(book), "--jobs", "2", "--secret", SECRET,
                       "--timeout", "300"])
    table: dict[tuple[str, str], dict[str, dict]] = {}
    with open(book, newline="") as f:
        for r in csv.DictReader(f):
            variant, stem = Path(r["learner_file"]).stem.split("_", 1)
            table.setdefault((stem, variant), {})[r["exercise"]] = r
    with open(grade.summary_path(book), newline="") as f:
        summary = {Path(r["learner_file"]).stem: r for r in csv.DictReader(f)}
    return rc, out.getvalue(), table, summary


@pytest.mark.slow
@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.stem)
def test_a_correct_submission_gets_full_marks(graded, path):
    names = exercises_or_skip(path)
    rc, printed, table, summary = graded
    rows = table[(path.stem, "correct")]
    assert list(rows) == names, printed
    for name, r in rows.items():
        assert r["result"] == "pass", (name, r["message"], printed[-3000:])
        assert float(r["points"]) == float(r["max_points"]) > 0, r
        k, n = r["held_out"].split("/")
        assert k == n and int(n) > 0, r
    s = summary[f"correct_{path.stem}"]
    assert float(s["points"]) == float(s["max_points"]) and int(s["exercises_passed"]) == len(names)
    assert float(s["seconds"]) > 0


@pytest.mark.slow
@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.stem)
def test_a_wrong_answer_fails_naming_its_case_and_a_tampered_check_does_not_pass(graded, path):
    names = exercises_or_skip(path)
    rows = graded[2][(path.stem, "mixed")]
    assert list(rows) == names
    assert all(r["result"] != "pass" for r in rows.values()), rows
    wrong = rows[names[0]]
    assert wrong["result"] == "fail" and "Case " in wrong["message"] and " fails" in wrong["message"], wrong
    assert float(wrong["points"]) < float(wrong["max_points"])
    for name in names[1:]:               # untouched, the last one with a check cell that prints the pass line
        assert "not attempted" in rows[name]["message"] and float(rows[name]["points"]) == 0, rows[name]
    s = graded[3][f"mixed_{path.stem}"]
    assert float(s["points"]) < float(s["max_points"]) and int(s["exercises_passed"]) == 0
    assert graded[0] == 1, "the mixed submissions fail, so the command exits 1"
