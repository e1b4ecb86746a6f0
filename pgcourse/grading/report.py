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

RESULTS = ("pass", "fail", "timeout", "refused")


@dataclass
class Row:
    exercise: str
    result: str              # pass / fail / timeout / refused
    message: str = ""


@dataclass
class Report:
    learner_file: str
    reference: str = ""
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return all(r.result == "pass" for r in self.rows)

    @property
    def score(self) -> str:
        graded = [r for r in self.rows if r.result != "refused"]
        return f"{sum(r.result == 'pass' for r in graded)}/{len(graded)}"


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


def _verdict(ex: RefExercise, index: int | None, records: list[dict], cell: dict | None, stopped: str) -> Row:
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
    msg = str(rec.get("message", ""))
    if rec["result"] == "pass":
        if rec.get("cases") != ex.n_cases:
            return Row(ex.name, "fail", f"ran {rec.get('cases')} cases, the reference has {ex.n_cases}")
        if cell_failed or cell is None:
            return Row(ex.name, "fail", "the check passed but its cell output differs from the reference "
                                        f"(does the function print?): {problem or stopped}")
        return Row(ex.name, "pass", msg)
    return Row(ex.name, rec["result"] if rec["result"] in RESULTS else "fail", msg)


def format_report(r: Report) -> str:
    width = max([len("exercise")] + [len(row.exercise) for row in r.rows])
    lines = [f"== {r.learner_file}" + (f"  (reference {Path(r.reference).name})" if r.reference else "")]
    lines += [f"   note: {n}" for n in r.notes]
    lines.append(f"   {'exercise':<{width}}  {'result':<8} message")
    for row in r.rows:
        lines.append(f"   {row.exercise:<{width}}  {row.result:<8} {one_line(row.message, 200)}")
    lines.append(f"   score: {r.score}")
    return "\n".join(lines)


def write_gradebook(reports: list[Report], path: Path) -> None:
    """CSV: one row per (learner file, exercise): ``learner_file, exercise, result, message``."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["learner_file", "exercise", "result", "message"])
        for r in reports:
            for row in r.rows:
                w.writerow([r.learner_file, row.exercise, row.result, one_line(row.message, 500)])
