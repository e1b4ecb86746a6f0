"""``python -m pgcourse grade``: restoring check cells, refusals, and tamper-proof verdicts.

A tiny synthetic course (one reference notebook ``99_gradetest`` with two exercises registered by a
throwaway module) is built in a temporary folder; a set of submissions (correct, wrong, tampered,
hanging, from another notebook...) is graded once, as a folder, with the real command, and each test
reads its rows of the gradebook. The real course notebooks get structural tests (fast) and one
end-to-end grading (slow).
"""
from __future__ import annotations

import contextlib
import copy
import csv
import io
import os
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from pgcourse import __main__ as cli
from pgcourse.grading import grade
from pgcourse.student import make_student

ROOT = Path(__file__).resolve().parent.parent
REAL_SOLUTIONS = sorted((ROOT / "notebooks" / "solutions").glob("[0-9][0-9]_*.ipynb"))

EXERCISES_MODULE = '''
import torch
from pgcourse.grading import Case, exercise

@exercise("99.double")
def _double():
    return [Case((torch.tensor([1.0, 2.0]),), expected=torch.tensor([2.0, 4.0])),
            Case((torch.tensor([-3.0]),), expected=torch.tensor([-6.0])),
            Case((torch.zeros(0),), expected=torch.zeros(0), note="empty")]

@exercise("99.total")
def _total():
    return [Case((torch.tensor([1.0, 2.0, 3.0]),), expected=6.0),
            Case((torch.tensor([-1.0]),), expected=-1.0)]
'''
DOUBLE = "def double(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION"
TOTAL = "def total(x):\n    ### BEGIN SOLUTION\n    return x.sum().item()\n    ### END SOLUTION"
GOOD = {"double": "def double(x):\n    return 2 * x", "total": "def total(x):\n    return float(x.sum())"}
BAD = {"double": "def double(x):\n    return 3 * x", "total": "def total(x):\n    return float(x.mean())"}


# Fakes the kernel's current request as the check cell's, runs the check source in a nested cell with a
# correct function, then replaces check (so the real check cell records nothing).
RUNCELL = """import pgcourse.grading as G
k = get_ipython().kernel
SRC = 'from pgcourse.grading import check\\ncheck("99.double", double)'
saved = k.get_parent("shell")
k.set_parent(k._shell_parent_ident.get(), {**saved, "content": {**saved["content"], "code": SRC}})
double = lambda x: 2 * x
get_ipython().run_cell(SRC)
k.set_parent(k._shell_parent_ident.get(), saved)
G.check = lambda name, fn: print(f"✓ {name}: all 3 cases pass") or True"""


def _code(cid, src, out=None, tags=(), n=1):
    cell = new_code_cell(src, id=cid, execution_count=n)
    if out is not None:
        cell.outputs = [new_output("stream", name="stdout", text=out)]
    if "check" in tags:      # check() returns a bool: the cell also shows it
        cell.outputs.append(new_output("execute_result", data={"text/plain": "True"}, execution_count=n))
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def reference(nn="99", names=("double", "total")) -> nbformat.NotebookNode:
    """A reference solution notebook as the course writes them (executed outputs written by hand)."""
    cells = [new_markdown_cell(f"# {nn} grading test", id="title"),
             _code("setup", "import torch\nprint(torch.ones(2).sum().item())", "2.0\n", n=1)]
    n_cases = {"double": 3, "total": 2}
    for k, name in enumerate(names):
        body = {"double": DOUBLE, "total": TOTAL}.get(name, f"def {name}(x):\n    ### BEGIN SOLUTION\n"
                                                             "    return x\n    ### END SOLUTION")
        cells.append(_code(f"exercise-{nn}-{name}", body, tags=["exercise"], n=2 + 2 * k))
        cells.append(_code(f"check-{nn}-{name}", f'from pgcourse.grading import check\ncheck("{nn}.{name}", {name})',
                           f"✓ {nn}.{name}: all {n_cases.get(name, 1)} cases pass\n", tags=["check"], n=3 + 2 * k))
    cells.append(_code("after", "print(torch.arange(3).tolist())", "[0, 1, 2]\n", n=9))
    nb = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                            "language": "python"}})
    nb.nbformat_minor = 5
    return nb


def cell(nb, cid):
    return next(c for c in nb.cells if c.get("id") == cid)


def answer(nb, **bodies):
    """The learner's copy with these exercise functions written in."""
    nb = copy.deepcopy(nb)
    for name, body in bodies.items():
        cell(nb, f"exercise-99-{name}").source = body
    return nb


def insert(nb, before_id, source, cid="learner-cell"):
    nb = copy.deepcopy(nb)
    i = next(k for k, c in enumerate(nb.cells) if c.get("id") == before_id)
    nb.cells.insert(i, new_code_cell(source, id=cid))
    return nb


def drop(nb, *ids):
    nb = copy.deepcopy(nb)
    nb.cells = [c for c in nb.cells if c.get("id") not in ids]
    return nb


def submissions(student) -> dict[str, nbformat.NotebookNode]:
    good = answer(student, **GOOD)
    moved = copy.deepcopy(good)
    chk = cell(moved, "check-99-double")
    moved.cells.remove(chk)
    moved.cells.insert(1, chk)
    edited = answer(student, double=BAD["double"], total=GOOD["total"])
    cell(edited, "check-99-double").source = 'print("✓ 99.double: all 3 cases pass")'
    foreign = copy.deepcopy(student)
    for c in foreign.cells:
        c["id"] = c["id"].replace("-99-", "-98-")
    del foreign.metadata["pgcourse"]
    mislabelled = copy.deepcopy(student)
    mislabelled.metadata["pgcourse"]["generated_from"] = "solutions/07_nowhere.ipynb"
    liar = ("class Liar(torch.Tensor):\n"
            "    @classmethod\n"
            "    def __torch_function__(cls, func, types, args=(), kwargs=None):\n"
            "        out = super().__torch_function__(func, types, args, kwargs or {})\n"
            "        return True if func is torch.allclose else out\n"
            "def double(x):\n"
            "    return torch.zeros_like(x).as_subclass(Liar)")
    return {
        "correct": good,
        "student": student,
        "wrong": answer(student, double=BAD["double"], total=GOOD["total"]),
        "edited": edited,
        "deleted": drop(answer(student, double=GOOD["double"], total=BAD["total"]), "check-99-double", "check-99-total"),
        "moved": moved,
        "noexercise": drop(good, "exercise-99-total", "check-99-total"),
        "fakecheck": insert(answer(student, **BAD), "exercise-99-double",
                            "import pgcourse.grading as G\n"
                            "G.check = lambda name, fn: print(f'✓ {name}: all 3 cases pass') or True"),
        "wrapcheck": insert(answer(student, **BAD), "exercise-99-double",
                            "import pgcourse.grading as G\nreal = G.check\n"
                            "G.check = lambda name, fn: real(name, {'99.double': lambda x: 2 * x,\n"
                            "                                       '99.total': lambda x: float(x.sum())}[name])"),
        "selfcheck": insert(answer(student, **BAD), "exercise-99-double",
                            "import pgcourse.grading as G\nG.check('99.double', lambda x: 2 * x)\n"
                            "G.check = lambda name, fn: print(f'✓ {name}: all 3 cases pass') or True"),
        "patchtorch": insert(answer(student, **BAD), "exercise-99-double",
                             "import torch, math, pgcourse.grading as G\n"
                             "torch.allclose = lambda *a, **k: True\nmath.isclose = lambda *a, **k: True\n"
                             "G.differ = lambda *a, **k: None\n"
                             "for ex in G.exercises().values():\n    ex.make_cases = lambda: []"),
        "runcell": insert(answer(student, **BAD), "exercise-99-double", RUNCELL),
        "closure": insert(answer(student, **BAD), "exercise-99-double",
                          "import pgcourse.grading as G\n"
                          "rec = next(c.cell_contents for c in G.check.__closure__\n"
                          "           if getattr(c.cell_contents, '__name__', '') == 'record')\n"
                          "rec('99.double', 'pass', 'forged', 3)\nrec('99.total', 'pass', 'forged', 2)\n"
                          "G.check = lambda name, fn: print(f'✓ {name}: all 3 cases pass') or True"),
        "settrace": insert(answer(student, **BAD), "exercise-99-double", "import sys\nsys.settrace(lambda *a: None)"),
        "subclass": answer(student, double=liar, total=GOOD["total"]),
        "printing": answer(student, double="def double(x):\n    print('debug', x)\n    return 2 * x",
                           total=GOOD["total"]),
        "hang": answer(student, double="def double(x):\n    import time\n    time.sleep(600)", total=GOOD["total"]),
        "deadlock": answer(student, double="def double(x):\n    import time\n    while True:\n        try:\n"
                                           "            time.sleep(600)\n        except KeyboardInterrupt:\n"
                                           "            pass", total=GOOD["total"]),
        "foreign": foreign,
        "mislabelled": mislabelled,
    }


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    base = tmp_path_factory.mktemp("course")
    solutions = base / "solutions"
    solutions.mkdir()
    (base / "gradetest_exercises.py").write_text(EXERCISES_MODULE)
    ref = reference()
    nbformat.write(ref, solutions / "99_gradetest.ipynb")
    nbformat.write(reference("98", ("ident",)), solutions / "98_other.ipynb")
    student = make_student(ref, "99_gradetest.ipynb")
    folder = base / "submitted"
    folder.mkdir()
    paths = {}
    for name, nb in submissions(student).items():
        paths[name] = folder / f"{name}_99_gradetest.ipynb"
        nbformat.write(nb, paths[name])
    paths["garbage"] = folder / "garbage_99_gradetest.ipynb"
    paths["garbage"].write_text("{ this is not json")
    return base, solutions, folder, paths


@pytest.fixture(scope="module")
def graded(course):
    """Grade the whole folder once with the real command; the gradebook rows by (variant, exercise)."""
    base, solutions, folder, paths = course
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in paths.values()}
    book = base / "gradebook.csv"
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTHONPATH", os.pathsep.join([str(base), os.environ.get("PYTHONPATH", "")]))
        with contextlib.redirect_stdout(out):
            rc = cli.main(["grade", str(folder), "--solutions", str(solutions), "--gradebook", str(book),
                           "--exercises-module", "gradetest_exercises", "--timeout", "4", "--total-timeout", "120",
                           "--jobs", "2"])
    with open(book, newline="") as f:
        rows = list(csv.DictReader(f))
    table = {(Path(r["learner_file"]).name.split("_99_")[0], r["exercise"]): (r["result"], r["message"]) for r in rows}
    return rc, out.getvalue(), rows, table, before


def results(table, variant):
    return {ex: rm for (v, ex), rm in table.items() if v == variant}


@pytest.mark.slow
def test_correct_submission_passes(graded):
    rc, printed, _, table, _ = graded
    assert results(table, "correct") == {"99.double": ("pass", "99.double: all 3 cases pass"),
                                         "99.total": ("pass", "99.total: all 2 cases pass")}
    assert "score: 2/2" in printed
    assert rc == 1, "other submissions fail, so the command exits 1"


@pytest.mark.slow
def test_wrong_answer_fails_with_the_first_failing_case(graded):
    r = results(graded[3], "wrong")
    assert r["99.double"][0] == "fail" and "case 1 of 3 fails" in r["99.double"][1]
    assert r["99.total"][0] == "pass"


@pytest.mark.slow
def test_not_attempted_fails(graded):
    r = results(graded[3], "student")
    assert {k: v[0] for k, v in r.items()} == {"99.double": "fail", "99.total": "fail"}
    assert all("not attempted" in v[1] for v in r.values())


@pytest.mark.slow
@pytest.mark.parametrize("variant,expected", [
    ("edited", {"99.double": "fail", "99.total": "pass"}),     # the edited check printed a fake success line
    ("deleted", {"99.double": "pass", "99.total": "fail"}),
    ("moved", {"99.double": "pass", "99.total": "pass"}),
    ("noexercise", {"99.double": "pass", "99.total": "fail"}),
])
def test_check_cells_are_restored(graded, variant, expected):
    r = results(graded[3], variant)
    assert {k: v[0] for k, v in r.items()} == expected
    if variant == "noexercise":
        assert "missing" in r["99.total"][1]
    if variant in ("edited", "deleted"):
        assert "fails" in r[[k for k, v in expected.items() if v == "fail"][0]][1]


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["fakecheck", "wrapcheck", "selfcheck", "patchtorch", "runcell", "closure",
                                     "settrace", "subclass"])
def test_tampering_with_the_grader_fails(graded, variant):
    r = results(graded[3], variant)
    if variant == "subclass":
        assert r["99.double"][0] == "fail" and "subclass" in r["99.double"][1]
        assert r["99.total"][0] == "pass"
        return
    assert {k: v[0] for k, v in r.items()} == {"99.double": "fail", "99.total": "fail"}, r
    if variant in ("patchtorch", "settrace"):
        assert all("modified" in v[1] for v in r.values())


@pytest.mark.slow
def test_a_function_that_prints_fails_because_the_output_differs(graded):
    r = results(graded[3], "printing")
    assert r["99.double"][0] == "fail" and "output differs" in r["99.double"][1]
    assert r["99.total"][0] == "pass"


@pytest.mark.slow
def test_a_hanging_cell_times_out_and_grading_goes_on(graded):
    r = results(graded[3], "hang")          # interrupted: the next exercise still runs
    assert r["99.double"][0] == "timeout" and r["99.total"][0] == "pass"
    r = results(graded[3], "deadlock")      # ignores the interrupt: nbval stops the kernel
    assert r["99.double"][0] == "timeout"
    assert r["99.total"][0] == "fail" and r["99.total"][1]


@pytest.mark.slow
@pytest.mark.parametrize("variant,why", [("foreign", "another notebook"), ("mislabelled", "07_nowhere"),
                                         ("garbage", "not a readable notebook")])
def test_submissions_from_another_notebook_are_refused(graded, variant, why):
    r = results(graded[3], variant)
    assert list(r) == ["-"] and r["-"][0] == "refused" and why in r["-"][1]


@pytest.mark.slow
def test_gradebook_has_a_row_per_exercise_and_the_submissions_are_untouched(graded, course):
    rc, printed, rows, table, before = graded
    _, _, folder, paths = course
    assert list(rows[0]) == ["learner_file", "exercise", "result", "message"]
    graded_files = {r["learner_file"] for r in rows}
    assert graded_files == {str(p) for p in paths.values()}
    assert all(r["result"] in grade.RESULTS for r in rows)
    for p, (data, mtime) in before.items():
        assert p.read_bytes() == data and p.stat().st_mtime_ns == mtime, f"{p.name} was written to"
    assert sorted(q.name for q in folder.iterdir()) == sorted(p.name for p in paths.values())
    assert f"2/{len(paths)} submissions pass every exercise" in printed   # correct and moved


def test_restore_puts_the_reference_check_after_its_exercise(tmp_path):
    ref_nb = reference()
    student = make_student(ref_nb, "99_gradetest.ipynb")
    ref = grade.Reference(Path("99_gradetest.ipynb"), _exercises(ref_nb, tmp_path))
    sub = copy.deepcopy(student)
    chk = cell(sub, "check-99-double")
    sub.cells.remove(chk)
    sub.cells.insert(0, chk)                          # moved to the top
    cell(sub, "check-99-total").source = "print('hi')"  # edited
    plan = grade.restore(sub, ref)
    ids = [c.id for c in plan.notebook.cells]
    assert ids.index("check-99-double") == ids.index("exercise-99-double") + 1
    assert ids.index("check-99-total") == ids.index("exercise-99-total") + 1
    assert cell(plan.notebook, "check-99-total").source == cell(ref_nb, "check-99-total").source
    assert cell(plan.notebook, "check-99-total").outputs == cell(ref_nb, "check-99-total").outputs
    assert len(set(ids)) == len(ids)
    code = [c for c in plan.notebook.cells if c.cell_type == "code"]
    assert code[plan.check_index["99.double"]].id == "check-99-double"
    assert student == make_student(ref_nb, "99_gradetest.ipynb"), "restore changed its input"


def test_restore_finds_a_renamed_exercise_cell_by_its_function(tmp_path):
    ref_nb = reference()
    sub = make_student(ref_nb, "99_gradetest.ipynb")
    cell(sub, "exercise-99-double")["id"] = "a1b2c3"    # e.g. a notebook saved without the course's ids
    ref = grade.Reference(Path("99_gradetest.ipynb"), _exercises(ref_nb, tmp_path))
    plan = grade.restore(sub, ref)
    ids = [c.id for c in plan.notebook.cells]
    assert ids[ids.index("a1b2c3") + 1] == "check-99-double"


def test_identify_by_metadata_file_name_and_assignment(tmp_path):
    (tmp_path / "01_a.ipynb").write_text("{}")
    (tmp_path / "02_b.ipynb").write_text("{}")
    meta = {"metadata": {"pgcourse": {"generated_from": "solutions/02_b.ipynb"}}}
    assert grade.identify(meta, Path("alice_01_a.ipynb"), tmp_path).name == "02_b.ipynb"   # metadata wins
    assert grade.identify({"metadata": {}}, Path("alice_01_a.ipynb"), tmp_path).name == "01_a.ipynb"
    with pytest.raises(grade.Refused, match="not the assignment 01_a"):
        grade.identify(meta, Path("x.ipynb"), tmp_path, expected="01")
    with pytest.raises(grade.Refused, match="cannot tell"):
        grade.identify({"metadata": {}}, Path("homework.ipynb"), tmp_path)


def _exercises(nb, tmp_path):
    nbformat.write(nb, tmp_path / "99_gradetest.ipynb")
    return grade.load_reference(tmp_path / "99_gradetest.ipynb").exercises


# ---- the real course notebooks (whatever exists) ----

@pytest.mark.parametrize("path", REAL_SOLUTIONS, ids=[p.stem for p in REAL_SOLUTIONS])
def test_real_notebook_check_cells_are_gradable(path):
    ref = grade.load_reference(path)
    student_path = ROOT / "notebooks" / path.name
    if not student_path.exists():
        pytest.skip(f"no student notebook {student_path.name} yet")
    student = nbformat.read(student_path, as_version=4)
    assert grade.identify(student, student_path, path.parent) == path
    plan = grade.restore(student, ref)
    assert all(i is not None for i in plan.check_index.values()), "an exercise cell is not found in the student notebook"
    assert not plan.warnings


@pytest.mark.slow
@pytest.mark.skipif(not REAL_SOLUTIONS, reason="no solution notebooks yet")
def test_real_notebook_solution_passes_and_student_version_does_not(tmp_path):
    path = min(REAL_SOLUTIONS, key=lambda p: p.stat().st_size)
    student = ROOT / "notebooks" / path.name
    if not student.exists():
        pytest.skip(f"no student notebook {student.name} yet")
    ref = grade.load_reference(path)
    if not ref.exercises:
        pytest.skip(f"{path.name} has no exercises")
    sol = grade.grade_notebook(path, path.parent, timeout=300)
    assert sol.passed and len(sol.rows) == len(ref.exercises), grade.format_report(sol)
    stu = grade.grade_notebook(student, path.parent, timeout=300)
    assert not any(r.result == "pass" for r in stu.rows), grade.format_report(stu)
    assert all("not attempted" in r.message for r in stu.rows), grade.format_report(stu)
