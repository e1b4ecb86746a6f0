"""What a learner sees before working, and what nbval needs, checked on every committed notebook.

Student notebooks (``notebooks/NN_*.ipynb``):
- a check cell has no saved output (no verdict before the learner works), nor does an exercise cell;
- no saved output before an exercise's check shows a line of its solution;

Every notebook (student and solution):
- no text progress bar, no memory address in a saved output;
- nbval markers are cell tags, never ``# NBVAL_…`` comments a learner has to read past;
- a widget cell (``show(...)``) is tagged ``nbval-ignore-output`` (widget ids change every run);

Solution notebooks: each check cell printed exactly its one ✓ line (no trailing ``True``, nothing else).
"""
from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from pgcourse.student import BEGIN, END, is_check

ROOT = Path(__file__).resolve().parent.parent
STUDENT = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
SOLUTION = sorted((ROOT / "notebooks" / "solutions").glob("[0-9][0-9]_*.ipynb"))
PROGRESS_BAR = re.compile(r"\d+%\|[^\n]*\||\d+/\d+ \[\d+:\d+<|it/s\]")
ADDRESS = re.compile(r"\b0x[0-9a-fA-F]{6,}\b")
PASS_LINE = re.compile(r"✓ \S+: (\d+)/\1 cases, ([\d.]+)/\2 points")


def output_text(cell) -> str:
    parts = []
    for o in cell.get("outputs", []):
        if o.get("output_type") == "stream":
            parts.append(o.get("text", ""))
        elif o.get("output_type") in ("execute_result", "display_data"):
            parts.append(str(o.get("data", {}).get("text/plain", "")))
            parts.append(str(o.get("data", {}).get("text/html", "")))
        elif o.get("output_type") == "error":
            parts.append("\n".join(o.get("traceback", [])))
    return "\n".join(parts)


def read(path: Path):
    return nbformat.read(path, as_version=4)


def solution_lines(source: str) -> list[str]:
    """The telling lines of a cell's solution blocks (long enough not to occur by chance)."""
    out, inside = [], False
    for line in source.splitlines():
        if BEGIN in line:
            inside = True
        elif END in line:
            inside = False
        elif inside:
            s = line.strip()
            if len(s) >= 25 and not s.startswith("#"):
                out.append(s)
    return out


def exercises_with_checks(nb, sol) -> list[tuple[list[str], int]]:
    """For each exercise of the student notebook: its solution's telling lines (from the solution cell with the
    same id) and the index of its check cell (the first check cell after it)."""
    by_id = {c.get("id"): c for c in sol.cells if c.cell_type == "code"}
    out = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and "NotImplementedError(\"Exercise" in cell.source:
            lines = solution_lines(by_id.get(cell.get("id"), cell).source)
            j = next((k for k in range(i + 1, len(nb.cells)) if is_check(nb.cells[k])), len(nb.cells))
            if lines:
                out.append((lines, j))
    return out


def reveals(text: str, answer: list[str]) -> bool:
    """An output reveals a solution when it shows every one of its telling lines. (A debug exercise prints the
    buggy code the learner starts from, which shares all but the bug with its fix: that is no answer.)"""
    return bool(answer) and all(a in text for a in answer)


@pytest.mark.parametrize("path", STUDENT, ids=lambda p: p.stem)
def test_student_notebook_shows_no_verdict_or_answer_before_work(path):
    nb = read(path)
    sol = read(ROOT / "notebooks" / "solutions" / path.name)
    exercises = exercises_with_checks(nb, sol)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        if is_check(cell):
            assert not cell.get("outputs"), f"{path.name} cell {i}: a check cell keeps a saved output (a verdict)"
        if BEGIN in cell.source or "NotImplementedError(\"Exercise" in cell.source:
            assert not cell.get("outputs"), f"{path.name} cell {i}: an exercise cell keeps a saved output"
        text = output_text(cell)
        assert not PASS_LINE.search(text), f"{path.name} cell {i}: a saved check verdict"
        assert "using your " not in text, f"{path.name} cell {i}: a saved output says the learner's own function is used"
        for answer, check_at in exercises:
            assert not (i < check_at and reveals(text, answer)), (
                f"{path.name} cell {i}: a saved output before the check (cell {check_at}) shows the solution: {answer[:2]}")


@pytest.mark.parametrize("path", STUDENT + SOLUTION, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_saved_outputs_are_clean_and_markers_are_tags(path):
    nb = read(path)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        text = output_text(cell)
        assert not PROGRESS_BAR.search(text), f"{path.name} cell {i}: a text progress bar in a saved output"
        assert not ADDRESS.search(text), f"{path.name} cell {i}: a memory address in a saved output"
        assert "execution" not in cell.metadata, (f"{path.name} cell {i}: execution timestamps in the cell's metadata "
                                                  "(execute with --ExecutePreprocessor.record_timing=False)")
        assert not re.search(r"^\s*#\s*NBVAL_", cell.source, re.M), \
            f"{path.name} cell {i}: an nbval marker as a comment; use the cell tag (e.g. nbval-ignore-output)"
        if re.search(r"(^|\W)show\(\s*[\"']\d\d\.", cell.source):
            tags = cell.metadata.get("tags", [])
            assert "nbval-ignore-output" in tags or "nbval-skip" in tags, \
                f"{path.name} cell {i}: a widget cell without the nbval-ignore-output tag"


@pytest.mark.parametrize("path", SOLUTION, ids=lambda p: p.stem)
def test_solution_check_cells_print_exactly_their_line(path):
    nb = read(path)
    checks = [c for c in nb.cells if c.cell_type == "code" and is_check(c)]
    for cell in checks:
        kinds = [o.get("output_type") for o in cell.get("outputs", [])]
        assert kinds == ["stream"], f"{path.name}: check cell {cell.get('id')} outputs {kinds} (one printed line only)"
        text = output_text(cell).strip()
        assert PASS_LINE.fullmatch(text), f"{path.name}: check cell {cell.get('id')} printed {text!r}"


def test_the_answer_detector_finds_a_leak():
    src = f"def f(x):\n    {BEGIN}\n    return torch.flip(torch.cumsum(torch.flip(x, [-1]), -1), [-1])\n    {END}\n"
    answer = solution_lines(src)
    assert answer == ["return torch.flip(torch.cumsum(torch.flip(x, [-1]), -1), [-1])"]
    assert reveals("def g(x):\n    return torch.flip(torch.cumsum(torch.flip(x, [-1]), -1), [-1])\n", answer)
    assert not reveals("def g(x):\n    return x\n", answer)
    assert not reveals("line one\nline two", ["line one", "line two", "the fixed line"])
    assert reveals("line one\nline two\nthe fixed line", ["line one", "line two", "the fixed line"])
