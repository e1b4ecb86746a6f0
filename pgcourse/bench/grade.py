"""``python -m pgcourse bench grade``: how fast the grader grades a class, for notebooks 01 and 06.

For each notebook, several correct submissions (its student notebook with the solution blocks put
back: :func:`pgcourse.grading.submissions.make_submission`) are graded as ``pgcourse grade --jobs 2``
grades a folder, two at a time. Printed: the seconds per submission (each one's own wall time,
median and maximum) and the throughput, submissions per minute with two at once (on a 2-core CPU:
2 cores). Budget: ≤ 45 s per submission of any notebook on 2 cores. ``--quick``: two of 01 only.
"""
from __future__ import annotations

import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat

from ..grading.grade import grade_notebook
from ..grading.heldout import new_secret
from ..grading.submissions import course_solutions, make_submission

BUDGET_S = 45.0
JOBS = 2


def _pick(stems: tuple[str, ...]) -> list[Path]:
    found = course_solutions()
    picked = [p for s in stems for p in found if p.name.startswith(s)]
    return picked or found[:1] + found[-1:]


def run(quick: bool = False) -> dict:
    notebooks = _pick(("01",) if quick else ("01", "06"))
    n = 2 if quick else 4
    secret = new_secret()
    print(f"grading {n} correct submissions each of {', '.join(p.stem for p in notebooks)}, {JOBS} at a time "
          f"({os.cpu_count()} CPUs here); budget {BUDGET_S:g} s per submission on 2 cores")
    out: dict = {}
    for path in notebooks:
        with tempfile.TemporaryDirectory(prefix="pgcourse-bench-grade-") as tmp:
            subs = []
            for k in range(n):
                subs.append(Path(tmp) / f"learner{k}_{path.name}")
                nbformat.write(make_submission(path, "correct"), subs[-1])
            t0 = time.perf_counter()
            with ThreadPoolExecutor(JOBS) as pool:
                reports = list(pool.map(lambda p: grade_notebook(p, path.parent, secret=secret), subs))
            wall = time.perf_counter() - t0
        seconds = [r.seconds for r in reports]
        full = sum(r.passed for r in reports)
        key = path.stem.split("_")[0]
        out[f"nb{key}_seconds_per_submission_median"] = round(statistics.median(seconds), 2)
        out[f"nb{key}_seconds_per_submission_max"] = round(max(seconds), 2)
        out[f"nb{key}_submissions_per_minute"] = round(60 * n / wall, 2)
        out[f"nb{key}_full_marks"] = full
        print(f"{path.stem}: {statistics.median(seconds):.1f} s per submission (median; max {max(seconds):.1f} s), "
              f"{60 * n / wall:.2f} submissions per minute with {JOBS} at once; {full}/{n} got full marks"
              + ("" if max(seconds) <= BUDGET_S else f"  [over the {BUDGET_S:g} s budget]"))
    return out
