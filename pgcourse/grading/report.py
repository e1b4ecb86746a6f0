"""Verdicts and the gradebook: a row per exercise, a report per submission, the printed table and the CSV.

An exercise passes only when its restored check cell passed under nbval *and* the kernel's grader
recorded a verified pass for it (:func:`_verdict`).
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

from .reference import RefExercise

RESULTS = ("pass", "fail", "timeout", "refused", "error")   # error: the grader could not run (not the learner's)


@dataclass
class Row:
    """One exercise of one submission: the verdict, the points and why."""

    exercise: str
    result: str              # one of RESULTS
    message: str = ""
    points: float = 0.0
    max_points: float = 0.0
    held_out: str = ""       # "k/n" held-out cases passed; "" when they did not run
    seconds: float = 0.0     # the check's own time in the kernel (visible and held-out cases)
    detail: dict = field(default_factory=dict)   # visible ("k/n"), visible_failure, held_out_failure


@dataclass
class Report:
    """One graded submission."""

    learner_file: str
    reference: str = ""
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return all(r.result == "pass" for r in self.rows)

    @property
    def points(self) -> float:
        return sum(r.points for r in self.rows)

    @property
    def max_points(self) -> float:
        return sum(r.max_points for r in self.rows)

    @property
    def score(self) -> str:
        graded = [r for r in self.rows if r.result not in ("refused", "error")]
        return (f"{fmt_points(self.points)}/{fmt_points(self.max_points)} points, "
                f"{sum(r.result == 'pass' for r in graded)}/{len(graded)} exercises pass")


def fmt_points(x: float) -> str:
    """Points as a grader reads them: 3, 2.5, 2.14."""
    return f"{x:.2f}".rstrip("0").rstrip(".")


def _first_line(text: str) -> str:
    for line in text.splitlines():
        line = line.strip()
        if line:
            return line
    return ""


def one_line(text: str, limit: int = 300) -> str:
    """A message on one line: its lines joined by `` | ``, spaces squeezed, cut at ``limit`` characters."""
    flat = " | ".join(" ".join(line.split()) for line in str(text).splitlines() if line.strip())
    return flat if len(flat) <= limit else flat[:limit - 1] + "…"


def _cell_problem(rec: dict) -> str:
    """The reason nbval gives for a failed cell, in one line (the exception where there is one)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", rec.get("text", ""))
    if "Timeout of" in text:
        return re.search(r"Timeout of [^\n]*", text).group(0).strip()
    errors = re.findall(r"^\s*(\w*(?:Error|Exception|Interrupt|Failed)\b:?[^\n]*)", text, re.M)
    if errors:
        return errors[-1].strip()
    for pat in (r"(Kernel dead[^\n]*)", r"Cell \d+: ([^\n]+)"):
        m = re.search(pat, text)
        if m:
            return m.group(1).strip()
    return _first_line(text) or rec.get("outcome", "")


def _verdict(ex: RefExercise, index: int | None, records: list[dict], cell: dict | None, stopped: str,
             max_points: float | None = None) -> Row:
    """The row of one exercise: a pass needs one signed record of a pass and a check cell that matched.

    Points come only from that one record (partial credit for a failed case is kept; a check whose cell
    output differs, or that ran another number of cases than the reference, earns none).
    """
    row = _verdict_of(ex, index, records, cell, stopped)
    row.max_points = ex.points if max_points is None else max_points
    row.points = min(row.max_points, max(0.0, row.points))
    if len(records) == 1:
        row.held_out = str(records[0].get("held_out", ""))
        row.seconds = float(records[0].get("seconds", 0.0) or 0.0)
        row.detail = {k: str(records[0][k]) for k in DETAIL if k in records[0]}
    return row


DETAIL = ("visible", "visible_failure", "held_out_failure")


def _verdict_of(ex: RefExercise, index: int | None, records: list[dict], cell: dict | None, stopped: str) -> Row:
    if index is None:
        return Row(ex.name, "fail", f"the exercise cell ({ex.exercise_id}) is missing from the submission")
    cell_failed = cell is not None and (cell["outcome"] == "failed" or (cell["outcome"] == "skipped" and cell["xfail"]))
    problem = _cell_problem(cell) if cell_failed else ""
    if len(records) > 1:
        return Row(ex.name, "fail", "the check ran more than once in the check cell (tampering?)")
    if not records:
        if "Timeout" in problem:
            return Row(ex.name, "timeout", problem)
        if cell is None:
            return Row(ex.name, "fail", f"not run ({stopped or 'the notebook stopped before this check'})")
        if cell_failed and problem != "Cell outputs differ":
            return Row(ex.name, "fail", problem)
        return Row(ex.name, "fail", "no verified result: the check cell did not run the grader's check "
                                    "(was pgcourse.grading changed?)" + (f"; nbval: {problem}" if problem else ""))
    rec = records[0]
    msg, points = str(rec.get("message", "")), float(rec.get("points", 0.0) or 0.0)
    if rec.get("cases") not in (0, ex.n_cases) or (rec["result"] == "pass" and rec.get("cases") != ex.n_cases):
        return Row(ex.name, "fail", f"ran {rec.get('cases')} cases, the reference has {ex.n_cases}")
    if rec["result"] == "pass":
        if cell_failed or cell is None:
            return Row(ex.name, "fail", "the check passed but its cell output differs from the reference "
                                        f"(does the function print?): {problem or stopped}")
        return Row(ex.name, "pass", msg, points)
    return Row(ex.name, rec["result"] if rec["result"] in RESULTS else "fail", msg, points)


def format_report(r: Report) -> str:
    """The table printed for one submission."""
    width = max([len("exercise")] + [len(row.exercise) for row in r.rows])
    lines = [f"== {r.learner_file}" + (f"  (reference {Path(r.reference).name})" if r.reference else "")]
    lines += [f"   note: {n}" for n in r.notes]
    lines.append(f"   {'exercise':<{width}}  {'result':<8} {'points':>9}  {'held-out':<8} message")
    for row in r.rows:
        pts = f"{fmt_points(row.points)}/{fmt_points(row.max_points)}"
        lines.append(f"   {row.exercise:<{width}}  {row.result:<8} {pts:>9}  {row.held_out or '-':<8} "
                     f"{one_line(row.message, 200)}")
    lines.append(f"   score: {r.score}; graded in {r.seconds:.1f} s")
    return "\n".join(lines)


GRADEBOOK_COLUMNS = ["learner_file", "exercise", "points", "max_points", "result", "held_out", "message", "seconds"]
SUMMARY_COLUMNS = ["learner_file", "reference", "points", "max_points", "exercises_passed", "exercises", "seconds"]


def write_gradebook(reports: list[Report], path: Path) -> None:
    """CSV, one row per (learner file, exercise): :data:`GRADEBOOK_COLUMNS`."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(GRADEBOOK_COLUMNS)
        for r in reports:
            for row in r.rows:
                w.writerow([r.learner_file, row.exercise, round(row.points, 4), round(row.max_points, 4), row.result,
                            row.held_out, one_line(row.message, 500), round(row.seconds, 2)])


def write_summary(reports: list[Report], path: Path) -> None:
    """CSV, one row per learner file: :data:`SUMMARY_COLUMNS` (total points, exercises passed, seconds)."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(SUMMARY_COLUMNS)
        for r in reports:
            graded = [row for row in r.rows if row.result not in ("refused", "error")]
            w.writerow([r.learner_file, Path(r.reference).name if r.reference else "", round(r.points, 4),
                        round(r.max_points, 4), sum(row.result == "pass" for row in graded), len(graded),
                        round(r.seconds, 1)])


def summary_path(gradebook: Path) -> Path:
    """Where the summary goes next to a gradebook: ``gradebook.csv`` → ``gradebook-summary.csv``."""
    return gradebook.with_name(gradebook.stem + "-summary" + (gradebook.suffix or ".csv"))
