"""``python -m pgcourse grade SUBMISSION.ipynb...``: grade learners' notebooks with nbval.

For each submission (a notebook, or every notebook in a folder):

1. **Identify** its reference solution notebook: the ``pgcourse.generated_from`` metadata the
   student tool writes, else the file name (``…01_full_return….ipynb``). A notebook from another
   notebook or from no course notebook is *refused* (grade 0), with the reason.
2. **Restore** the check cells in a copy, in a temporary folder (the submission is only read):
   every check cell of the submission (tagged ``check``, or with a ``check-…`` id, or the source of
   a reference check) is dropped, and the reference's check cell (source and expected output)
   is put right after the matching exercise cell (same cell id; else the cell that defines the
   exercise's function). An exercise whose cell is gone fails.
3. **Run** the copy with nbval's pytest plugin (``--nbval-lax``; the restored check cells are
   compared with the reference output) with a per-cell timeout and a total timeout. The cells after
   the last check cannot change a verdict and are skipped (``--run-all`` runs them).
4. **Verdict.** An exercise passes only when its restored check cell passed under nbval *and*
   the kernel's grader recorded a verified pass for it. The grader is installed in the kernel
   by an IPython startup file before any learner code runs (:mod:`.recorder`): it loads a private
   copy of :mod:`pgcourse.grading`, becomes ``pgcourse.grading.check``, runs the visible cases and
   then, silently, the held-out cases drawn from the grader's secret (:mod:`.heldout`), and writes
   each verdict with its points, signed (HMAC), to a results file the grader reads. It records only
   a call made directly by a restored check cell, refuses to record when what the check relies on
   was replaced (:mod:`.tamper`), and checks the learner's function returns plain values.
   Printing the success line, replacing ``check``, wrapping it, or patching what it uses yields
   no verified pass: the exercise fails.

The jobs live in their own modules: :mod:`.reference` (1), :mod:`.restore` (2), :mod:`.run` (3),
:mod:`.recorder`, :mod:`.heldout` and :mod:`.tamper` (the grader in the kernel) and :mod:`.report`
(4, the table and the gradebook); this module is the command line.

Prints a table per submission (exercise, result, points, held-out cases, first line of the message),
the score and the seconds; with several submissions or a folder, writes a CSV gradebook (one row per
learner file and exercise: points, max_points, result, held_out, message, seconds) and a summary CSV
(one row per learner file: total points, max points, seconds). Exit status 0 only when every
exercise of every submission passes.

What in-process grading cannot stop: a learner who deliberately reverse-engineers the grader
inside the kernel (reads or rewrites its private state by introspection), or whose function simply
calls ``pgcourse``'s reference implementation (a grader reading the code sees that).
"""
from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .recorder import CONFIG_ENV, _kernel_startup, _sign  # noqa: F401  (re-exported)
from .reference import (CHECK_CALL, DEFAULT_SOLUTIONS, GRADING_DIR, PACKAGE_DIR, PASS_LINE, ROOT,  # noqa: F401
                        GradingError, Reference, RefExercise, Refused, _match_expected, identify, is_check_cell,
                        is_exercise_cell, load_reference)
from .autograder import write_results
from .heldout import SECRET_ENV, new_secret, seed_for
from .report import (GRADEBOOK_COLUMNS, RESULTS, SUMMARY_COLUMNS, Report, Row, _first_line,  # noqa: F401
                     _verdict, format_report, one_line, summary_path, write_gradebook, write_summary)
from .restore import Plan, restore  # noqa: F401
from .run import Run, _run_nbval

__all__ = ["GradingError", "Refused", "Report", "Row", "add_arguments", "find_submissions", "format_report",
           "grade_notebook", "identify", "load_reference", "main", "restore", "write_gradebook"]


def grade_notebook(path: Path, solutions: Path = DEFAULT_SOLUTIONS, *, expected: str | None = None,
                   timeout: float = 120, total_timeout: float = 1200, extra_modules: list[str] | None = None,
                   keep: Path | None = None, label: str | None = None, secret: str | None = None,
                   run_all: bool = False) -> Report:
    """Grade one submitted notebook (only read, never written); see the module docstring.

    ``secret`` draws the held-out cases (default: a random one); ``run_all`` also runs the cells after
    the last check.
    """
    import nbformat
    secret = secret or new_secret()
    report = Report(label or str(path))
    t0 = time.perf_counter()
    try:
        try:
            nb = nbformat.reads(Path(path).read_text(encoding="utf-8"), as_version=4)
        except Exception as err:
            raise Refused(f"not a readable notebook ({type(err).__name__}: {_first_line(str(err))})") from None
        ref_path = identify(nb, Path(path), Path(solutions), expected)
        ref = load_reference(ref_path)
        report.reference = str(ref_path)
        plan = restore(nb, ref, skip_after_last_check=not run_all)
        report.notes += plan.warnings
        if not ref.exercises:
            report.notes.append(f"{ref.stem} has no exercises")
            return report
        if all(i is None for i in plan.check_index.values()):
            run = Run(False, {}, {}, {}, "")
        else:
            held_out = {e.name: seed_for(secret, e.name) for e in ref.exercises}
            run = _run_nbval(plan, ref, timeout, total_timeout, extra_modules or [], keep, held_out)
        if run.stopped:
            report.notes.append(run.stopped)
        for ex in ref.exercises:
            i = plan.check_index[ex.name]
            cell = run.cells.get(i) if i is not None else None
            report.rows.append(_verdict(ex, i, run.records.get(ex.name, []), cell, run.stopped,
                                        run.max_points.get(ex.name)))
    except Refused as err:
        report.rows = [Row("-", "refused", str(err))]
    except GradingError as err:                     # the grader's fault, not the learner's: say so, go on
        report.rows = [Row("-", "error", f"the grader could not grade this: {one_line(str(err), 1000)}")]
    report.seconds = time.perf_counter() - t0
    return report


def find_submissions(items: list[str]) -> tuple[list[Path], bool]:
    """Notebook files named or found (recursively) in the folders named; and whether a folder was given."""
    found, folder = [], False
    for item in items:
        p = Path(item)
        if p.is_dir():
            folder = True
            found += sorted(q for q in p.rglob("*.ipynb") if ".ipynb_checkpoints" not in q.parts)
        elif p.exists():
            found.append(p)
        else:
            raise SystemExit(f"no such file or folder: {item}")
    return found, folder


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("submissions", nargs="+", help="submitted notebooks, or folders of them")
    parser.add_argument("--solutions", default=str(DEFAULT_SOLUTIONS),
                        help="folder of the reference solution notebooks (default: notebooks/solutions)")
    parser.add_argument("--notebook", default=None,
                        help="the assignment (e.g. 01 or 01_full_return): refuse submissions of another notebook")
    parser.add_argument("--timeout", type=float, default=120, help="per-cell timeout in seconds (default 120)")
    parser.add_argument("--total-timeout", type=float, default=1200,
                        help="timeout for a whole submission in seconds (default 1200)")
    parser.add_argument("--gradebook", default=None,
                        help="write a CSV gradebook here (default gradebook.csv with several submissions or a folder)")
    parser.add_argument("--jobs", "-j", type=int, default=1, help="grade this many submissions at once")
    parser.add_argument("--keep", default=None, help="keep the graded copies and logs in this folder (debugging)")
    parser.add_argument("--exercises-module", action="append", default=[],
                        help="also import this module in the kernel: it registers extra exercises (tests)")
    parser.add_argument("--secret", default=None,
                        help=f"the secret the held-out cases are drawn from (default ${SECRET_ENV}, else random "
                             "per run; the same secret draws the same cases)")
    parser.add_argument("--summary", default=None,
                        help="write the one-row-per-learner summary CSV here (default: next to the gradebook, "
                             "gradebook-summary.csv)")
    parser.add_argument("--gradescope", default=None, metavar="RESULTS_JSON",
                        help="also write Gradescope's results.json here (one submission; see pgcourse autograder)")
    parser.add_argument("--run-all", action="store_true",
                        help="also run the cells after the last check (they cannot change a grade)")


def _assignment(solutions: Path, notebook: str | None) -> Reference | None:
    if not notebook:
        return None
    refs = {p.name: p for p in sorted(Path(solutions).glob("*.ipynb"))}
    return load_reference(refs[_match_expected(notebook, refs)])


def main(args: argparse.Namespace) -> int:
    paths, folder = find_submissions(args.submissions)
    if not paths and args.gradescope:
        write_results(Path(args.gradescope), [], _assignment(Path(args.solutions), args.notebook),
                      "no .ipynb notebook in the submission")
        print(f"no notebooks to grade; wrote {args.gradescope}")
        return 1
    if not paths:
        raise SystemExit("no notebooks to grade")
    keep = Path(args.keep) if args.keep else None
    secret = args.secret or os.environ.get(SECRET_ENV) or new_secret()    # one per run: every learner, same cases

    def one(p: Path) -> Report:
        return grade_notebook(p, Path(args.solutions), expected=args.notebook, timeout=args.timeout,
                              total_timeout=args.total_timeout, extra_modules=args.exercises_module, keep=keep,
                              secret=secret, run_all=args.run_all)

    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        reports = []
        for r in pool.map(one, paths):
            print(format_report(r), flush=True)
            reports.append(r)
    book = args.gradebook or ("gradebook.csv" if folder or len(paths) > 1 else None)
    if book:
        write_gradebook(reports, Path(book))
        print(f"wrote gradebook {book}")
    summary = args.summary or (summary_path(Path(book)) if book else None)
    if summary:
        write_summary(reports, Path(summary))
        print(f"wrote summary {summary}")
    if args.gradescope:
        write_results(Path(args.gradescope), reports, _assignment(Path(args.solutions), args.notebook))
        print(f"wrote {args.gradescope}")
    n_pass = sum(r.passed for r in reports)
    if len(reports) > 1:
        print(f"{n_pass}/{len(reports)} submissions pass every exercise")
    return 0 if n_pass == len(reports) else 1
