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

import torch

from pgcourse import __main__ as cli
from pgcourse.grading import PUBLIC_SEED, grade
from pgcourse.student import make_student

ROOT = Path(__file__).resolve().parent.parent
REAL_SOLUTIONS = sorted((ROOT / "notebooks" / "solutions").glob("[0-9][0-9]_*.ipynb"))
SECRET = "test-grade-secret"

EXERCISES_MODULE = '''
import torch
from pgcourse.grading import Case, exercise

@exercise("99.double", points=2)
def _double(gen):
    x = torch.randn(5, generator=gen)
    return [Case((torch.tensor([1.0, 2.0]),), expected=torch.tensor([2.0, 4.0])),
            Case((torch.tensor([-3.0]),), expected=torch.tensor([-6.0])),
            Case((torch.zeros(0),), expected=torch.zeros(0), note="empty"),
            Case((x,), expected=2 * x, note="random", weight=2.0)]

@exercise("99.total")
def _total(gen):
    x = torch.randn(3, generator=gen)
    return [Case((torch.tensor([1.0, 2.0, 3.0]),), expected=6.0),
            Case((x,), expected=float(x.sum()), note="random")]
'''
N_CASES, POINTS = {"double": 4, "total": 2}, {"double": 2, "total": 1}
VISIBLE_RANDOM = torch.randn(5, generator=torch.Generator().manual_seed(PUBLIC_SEED))  # 99.double's, as a learner sees
HARDCODED = ("def double(x):\n    import torch\n"
             "    seen = {(1.0, 2.0): [2.0, 4.0], (-3.0,): [-6.0], (): [], "
             f"{tuple(VISIBLE_RANDOM.tolist())!r}: {(2 * VISIBLE_RANDOM).tolist()!r}}}\n"
             "    return torch.tensor(seen.get(tuple(x.tolist()), [0.0] * len(x)))")
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
G.check = lambda name, fn: print(f"✓ {name}: 4/4 cases, 2/2 points")"""
FAKE = "G.check = lambda name, fn: print(f'✓ {name}: 4/4 cases, 2/2 points')"


# What a course notebook does before its first check: the first optimizer imports torch._dynamo (which re-wraps
# torch.manual_seed), gymnasium, matplotlib and tqdm: none of that is tampering.
LAZY_IMPORTS = """import torch, gymnasium, matplotlib.pyplot as plt, tqdm.auto
p = torch.nn.Parameter(torch.ones(3))
opt = torch.optim.Adam([p], lr=0.1)
p.sum().backward(); opt.step()
gymnasium.make("CartPole-v1").reset(seed=0)
plt.close(plt.figure())"""

# Looks, before any check ran, for what would give the held-out cases away; prints what it finds.
SNOOP = """import gc, os
found = [k for k in os.environ if k.startswith("PGCOURSE_GRADE")]
found += [type(o).__name__ for o in gc.get_objects() if type(o).__name__ in ("Case", "LossAndGrad", "Outcome")]
with open(os.environ["SNOOP_OUT"], "a") as f:
    f.write(repr(found) + "\\n")"""


def _code(cid, src, out=None, tags=(), n=1):
    cell = new_code_cell(src, id=cid, execution_count=n)
    if out is not None:
        cell.outputs = [new_output("stream", name="stdout", text=out)]
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def reference(nn="99", names=("double", "total")) -> nbformat.NotebookNode:
    """A reference solution notebook as the course writes them (executed outputs written by hand)."""
    cells = [new_markdown_cell(f"# {nn} grading test", id="title"),
             _code("setup", "import torch\nprint(torch.ones(2).sum().item())", "2.0\n", n=1)]
    for k, name in enumerate(names):
        body = {"double": DOUBLE, "total": TOTAL}.get(name, f"def {name}(x):\n    ### BEGIN SOLUTION\n"
                                                             "    return x\n    ### END SOLUTION")
        cells.append(_code(f"exercise-{nn}-{name}", body, tags=["exercise"], n=2 + 2 * k))
        cells.append(_code(f"check-{nn}-{name}", f'from pgcourse.grading import check\ncheck("{nn}.{name}", {name})',
                           f"✓ {nn}.{name}: {N_CASES.get(name, 1)}/{N_CASES.get(name, 1)} cases, "
                           f"{POINTS.get(name, 1)}/{POINTS.get(name, 1)} points\n", tags=["check"], n=3 + 2 * k))
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
    cell(edited, "check-99-double").source = 'print("✓ 99.double: 4/4 cases, 2/2 points")'
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
                            "import pgcourse.grading as G\n" + FAKE),
        "wrapcheck": insert(answer(student, **BAD), "exercise-99-double",
                            "import pgcourse.grading as G\nreal = G.check\n"
                            "G.check = lambda name, fn: real(name, {'99.double': lambda x: 2 * x,\n"
                            "                                       '99.total': lambda x: float(x.sum())}[name])"),
        "selfcheck": insert(answer(student, **BAD), "exercise-99-double",
                            "import pgcourse.grading as G\nG.check('99.double', lambda x: 2 * x)\n" + FAKE),
        "patchtorch": insert(answer(student, **BAD), "exercise-99-double",
                             "import torch, math, pgcourse.grading as G\n"
                             "torch.allclose = lambda *a, **k: True\nmath.isclose = lambda *a, **k: True\n"
                             "G.differ = lambda *a, **k: None\n"
                             "for ex in G.exercises().values():\n    ex.make_cases = lambda gen: []"),
        "fakewrap": insert(answer(student, **BAD), "exercise-99-double",
                           "import functools, torch\n"
                           "torch.allclose = functools.wraps(torch.allclose)(lambda *a, **k: True)"),
        "optimizer": insert(answer(student, **GOOD), "exercise-99-double", LAZY_IMPORTS),
        "hardcoded": answer(student, double=HARDCODED, total=GOOD["total"]),
        "snoop": insert(insert(answer(student, **GOOD), "exercise-99-double", SNOOP),
                        "exercise-99-total", SNOOP, cid="learner-cell-2"),
        "runcell": insert(answer(student, **BAD), "exercise-99-double", RUNCELL),
        "closure": insert(answer(student, **BAD), "exercise-99-double",
                          "import pgcourse.grading as G\n"
                          "rec = next(c.cell_contents for c in G.check.__closure__\n"
                          "           if getattr(c.cell_contents, '__name__', '') == 'record')\n"
                          "rec('99.double', 'pass', 'forged', 4, points=2)\nrec('99.total', 'pass', 'forged', 2, points=1)\n"
                          + FAKE),
        "settrace": insert(answer(student, **BAD), "exercise-99-double", "import sys\nsys.settrace(lambda *a: None)"),
        "subclass": answer(student, double=liar, total=GOOD["total"]),
        "partial": answer(student, double="def double(x):\n    return 2 * x if len(x) < 3 else x", total=GOOD["total"]),
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
        mp.setenv("SNOOP_OUT", str(base / "snooped.txt"))
        mp.setenv("PGCOURSE_GRADE_SECRET", "not this one")     # --secret wins over the environment
        with contextlib.redirect_stdout(out):
            rc = cli.main(["grade", str(folder), "--solutions", str(solutions), "--gradebook", str(book),
                           "--exercises-module", "gradetest_exercises", "--timeout", "20", "--total-timeout", "200",
                           "--jobs", "2", "--secret", SECRET])
    with open(book, newline="") as f:
        rows = list(csv.DictReader(f))
    with open(grade.summary_path(book), newline="") as f:
        summary = list(csv.DictReader(f))
    table = {(Path(r["learner_file"]).name.split("_99_")[0], r["exercise"]): (r["result"], r["message"]) for r in rows}
    return rc, out.getvalue(), rows, table, before, summary


def results(table, variant):
    return {ex: rm for (v, ex), rm in table.items() if v == variant}


def book_rows(graded, variant):
    return {r["exercise"]: r for r in graded[2] if Path(r["learner_file"]).name.split("_99_")[0] == variant}


@pytest.mark.slow
def test_correct_submission_passes(graded):
    rc, printed, _, table, _, _ = graded
    assert results(table, "correct") == {
        "99.double": ("pass", "✓ 99.double: 4/4 cases, held-out 4/4, 2/2 points"),
        "99.total": ("pass", "✓ 99.total: 2/2 cases, held-out 2/2, 1/1 points")}
    rows = book_rows(graded, "correct")
    assert {k: (float(r["points"]), float(r["max_points"]), r["held_out"]) for k, r in rows.items()} == {
        "99.double": (2.0, 2.0, "4/4"), "99.total": (1.0, 1.0, "2/2")}
    assert all(float(r["seconds"]) >= 0 for r in rows.values())     # the check's own time (tiny here)
    assert "score: 3/3 points, 2/2 exercises pass; graded in" in printed
    assert rc == 1, "other submissions fail, so the command exits 1"


@pytest.mark.slow
def test_wrong_answer_fails_with_the_first_failing_case(graded):
    r = results(graded[3], "wrong")
    assert r["99.double"][0] == "fail" and "Case 1 of 4 fails" in r["99.double"][1]
    assert r["99.total"][0] == "pass"
    assert float(book_rows(graded, "wrong")["99.double"]["points"]) == pytest.approx(2 * 1 / 5)   # right when empty


@pytest.mark.slow
def test_partial_credit_is_by_case_weight(graded):
    rows = book_rows(graded, "partial")               # right on the cases of length < 3: weights 1 + 1 + 1 of 5
    assert rows["99.double"]["result"] == "fail" and "Case 4 of 4 fails (random)" in rows["99.double"]["message"]
    assert float(rows["99.double"]["points"]) == pytest.approx(2 * 3 / 5) and rows["99.double"]["held_out"] == "3/4"
    summary = {Path(r["learner_file"]).name.split("_99_")[0]: r for r in graded[5]}
    assert float(summary["partial"]["points"]) == pytest.approx(1 + 2 * 3 / 5)
    assert float(summary["partial"]["max_points"]) == 3.0 and summary["partial"]["exercises_passed"] == "1"
    assert float(summary["partial"]["seconds"]) > 0


@pytest.mark.slow
def test_hard_coding_the_visible_cases_passes_the_check_but_fails_the_held_out_cases(graded):
    rows = book_rows(graded, "hardcoded")
    double = rows["99.double"]
    assert double["result"] == "fail" and double["held_out"] == "3/4", double   # the random case is new
    assert "✗ 99.double: 4/4 cases, held-out 3/4" in double["message"] and "Held-out case 4 of 4 fails" in double["message"]
    assert float(double["points"]) == pytest.approx(2 * min(1.0, 3 / 5))
    assert rows["99.total"]["result"] == "pass"


@pytest.mark.slow
def test_nothing_gives_the_held_out_cases_away_before_the_check(graded, course):
    assert {k: v[0] for k, v in results(graded[3], "snoop").items()} == {"99.double": "pass", "99.total": "pass"}
    assert (course[0] / "snooped.txt").read_text().splitlines() == ["[]", "[]"]


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
        assert "Case 1 of" in r[[k for k, v in expected.items() if v == "fail"][0]][1]


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["fakecheck", "wrapcheck", "selfcheck", "patchtorch", "runcell", "closure",
                                     "settrace", "subclass", "fakewrap"])
def test_tampering_with_the_grader_fails(graded, variant):
    r = results(graded[3], variant)
    if variant == "subclass":
        assert r["99.double"][0] == "fail" and "subclass" in r["99.double"][1]
        assert r["99.total"][0] == "pass"
        return
    assert {k: v[0] for k, v in r.items()} == {"99.double": "fail", "99.total": "fail"}, r
    if variant in ("patchtorch", "settrace", "fakewrap"):
        assert all("modified" in v[1] for v in r.values())
    assert all(float(row["points"]) == 0 for row in book_rows(graded, variant).values())


@pytest.mark.slow
def test_the_libraries_own_lazy_imports_are_not_tampering(graded):
    """An optimizer (torch._dynamo re-wraps torch.manual_seed), gymnasium, matplotlib, tqdm before the checks."""
    r = results(graded[3], "optimizer")
    assert {k: v[0] for k, v in r.items()} == {"99.double": "pass", "99.total": "pass"}, r


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
    rc, printed, rows, table, before, summary = graded
    _, _, folder, paths = course
    assert list(rows[0]) == grade.GRADEBOOK_COLUMNS
    assert list(summary[0]) == grade.SUMMARY_COLUMNS and len(summary) == len(paths)
    graded_files = {r["learner_file"] for r in rows}
    assert graded_files == {str(p) for p in paths.values()}
    assert all(r["result"] in grade.RESULTS for r in rows)
    for p, (data, mtime) in before.items():
        assert p.read_bytes() == data and p.stat().st_mtime_ns == mtime, f"{p.name} was written to"
    assert sorted(q.name for q in folder.iterdir()) == sorted(p.name for p in paths.values())
    assert f"4/{len(paths)} submissions pass every exercise" in printed   # correct, moved, optimizer, snoop


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
    assert grade.identify({"metadata": {}}, Path("homework.ipynb"), tmp_path, expected="02").name == "02_b.ipynb"


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
