"""``python -m pgcourse student``: student notebooks written from the solution notebooks."""
from __future__ import annotations

import argparse
import ast
import copy
import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from pgcourse import student

SOLVED = '''def reward_to_go(rewards):
    """Sum of the rewards from t on."""
    ### BEGIN SOLUTION
    out = rewards.flip(-1).cumsum(-1).flip(-1)
    return out
    ### END SOLUTION


class Agent:
    def act(self, s):
        if s:
            ### BEGIN SOLUTION
            return 1
            ### END SOLUTION
        return 0'''


def solution_notebook() -> nbformat.NotebookNode:
    run = new_code_cell("print(1 + 1)", id="run", execution_count=1,
                        outputs=[new_output("stream", name="stdout", text="2\n")])
    ex = new_code_cell(SOLVED, id="exercise-01-rtg", execution_count=2,
                       outputs=[new_output("stream", name="stdout", text="solution output\n")])
    chk = new_code_cell('from pgcourse.grading import check\ncheck("01.rtg", reward_to_go)', id="check-01-rtg",
                        execution_count=3, outputs=[new_output("stream", name="stdout", text="✓ 01.rtg: all 2 cases pass\n")])
    chk.metadata["tags"] = ["check"]
    nb = new_notebook(cells=[new_markdown_cell("# 01", id="title"), run, ex, chk])
    nb.nbformat_minor = 5
    return nb


def test_solution_blocks_become_raise_at_their_indentation():
    out = student.strip_solutions(SOLVED)
    assert "BEGIN SOLUTION" not in out and "cumsum" not in out and "return 1" not in out
    lines = out.splitlines()
    assert f"    {student.STUB}" in lines and f"            {student.STUB}" in lines
    assert '    """Sum of the rewards from t on."""' in lines and "        return 0" in lines
    ast.parse(out)    # still valid Python: the learner's cell runs


def test_a_top_level_or_unbalanced_block_is_refused():
    with pytest.raises(ValueError, match="indented inside a def"):
        student.strip_solutions("### BEGIN SOLUTION\nx = 1\n### END SOLUTION", "cell 3")
    with pytest.raises(ValueError, match="unbalanced"):
        student.strip_solutions("def f():\n    ### BEGIN SOLUTION\n    return 1\n")


def test_exercise_and_check_outputs_are_cleared_and_other_outputs_kept():
    sol = solution_notebook()
    before = copy.deepcopy(sol)
    nb = student.make_student(sol, "01_x.ipynb")
    assert sol == before, "make_student changed the solution notebook"
    ex = next(c for c in nb.cells if c.id == "exercise-01-rtg")
    assert ex.outputs == [] and ex.execution_count is None and "exercise" in ex.metadata["tags"]
    assert student.STUB in ex.source
    chk = next(c for c in nb.cells if c.id == "check-01-rtg")      # no verdict before the learner works
    assert chk.outputs == [] and chk.execution_count is None
    assert chk.source == next(c for c in sol.cells if c.id == "check-01-rtg").source
    kept = next(c for c in nb.cells if c.id == "run")
    orig = next(c for c in sol.cells if c.id == "run")
    assert kept.outputs == orig.outputs and kept.source == orig.source
    assert nb.metadata["pgcourse"]["generated_from"] == "solutions/01_x.ipynb"
    assert [c.id for c in nb.cells] == [c.id for c in sol.cells]


@pytest.fixture
def course(tmp_path, monkeypatch):
    """A throwaway repository layout with one solution notebook; pgcourse.student pointed at it."""
    sols = tmp_path / "notebooks" / "solutions"
    sols.mkdir(parents=True)
    nbformat.write(solution_notebook(), sols / "01_x.ipynb")
    monkeypatch.setattr(student, "ROOT", tmp_path)
    monkeypatch.setattr(student, "SOLUTIONS", sols)
    monkeypatch.setattr(student, "STUDENT", tmp_path / "notebooks")
    return tmp_path


def run(check=False, force=False) -> int:
    return student.main(argparse.Namespace(check=check, force=force))


def test_check_reports_drift_and_passes_when_up_to_date(course, capsys):
    target = course / "notebooks" / "01_x.ipynb"
    assert run(check=True) == 1 and not target.exists()
    assert "out of date: notebooks/01_x.ipynb" in capsys.readouterr().out
    assert run() == 0 and target.exists()
    assert run(check=True) == 0
    assert "up to date" in capsys.readouterr().out
    sol = nbformat.read(course / "notebooks" / "solutions" / "01_x.ipynb", as_version=4)
    sol.cells[1].source = "print(2 + 2)"                     # the solution changes: the student copy drifts
    nbformat.write(sol, course / "notebooks" / "solutions" / "01_x.ipynb")
    assert run(check=True) == 1
    assert run() == 0 and "print(2 + 2)" in target.read_text()


def test_a_learner_edited_notebook_is_not_overwritten_without_force(course, capsys):
    target = course / "notebooks" / "01_x.ipynb"
    run()
    nb = nbformat.read(target, as_version=4)
    nb.cells[2].source = "def reward_to_go(rewards):\n    return rewards  # my attempt"
    nbformat.write(nb, target)
    edited = target.read_bytes()
    sol_path = course / "notebooks" / "solutions" / "01_x.ipynb"
    sol = nbformat.read(sol_path, as_version=4)
    sol.cells[1].source = "print(3)"
    nbformat.write(sol, sol_path)
    assert run() == 1 and target.read_bytes() == edited
    assert "edited since it was written" in capsys.readouterr().out
    assert run(force=True) == 0 and "my attempt" not in target.read_text()
    assert not student.learner_edited(target)


def test_the_student_notebooks_in_the_repository_are_up_to_date(capsys):
    assert run(check=True) == 0, capsys.readouterr().out


@pytest.mark.parametrize("path", student.solution_paths(), ids=[p.stem for p in student.solution_paths()])
def test_every_student_exercise_cell_is_valid_python_that_raises_only_when_called(path):
    nb = student.make_student(nbformat.read(path, as_version=4), path.name)
    exercises = [c for c in nb.cells if "exercise" in c.metadata.get("tags", [])]
    for c in exercises:
        tree = ast.parse(c.source)
        top = [type(node).__name__ for node in tree.body if isinstance(node, ast.Raise)]
        assert not top, f"{path.name}: an exercise cell raises at the top level:\n{c.source}"


def test_a_saved_yours_or_reference_line_reads_as_for_a_learner_who_has_not_worked():
    from pgcourse.student import as_not_yet_attempted
    text = "before\nusing your reinforce_weights (its check 01.reinforce_weights passed)\nafter\n"
    assert as_not_yet_attempted(text) == ("before\nusing pgcourse's reference for 01.reinforce_weights "
                                          "(your version has not passed its check yet)\nafter\n")
    assert as_not_yet_attempted("using your own words\n") == "using your own words\n"
