"""``python -m pgcourse autograder --notebook NN --out autograder.zip``: a Gradescope autograder for one notebook.

The zip holds, at its root (Gradescope's autograder specification):

* ``setup.sh``: run once when Gradescope builds the image: a virtual environment at ``$ROOT/venv``
  with the course's pinned requirements (``requirements.txt``: the course's, less what only
  developers need), offline from ``wheels/`` when wheels are vendored there (``--wheels DIR``), else
  from PyPI with PyTorch's CPU wheels; then the course package (``course/``) on that environment's path;
* ``run_autograder``: run for each submission: ``python -m pgcourse grade $ROOT/submission --notebook
  NN --gradescope $ROOT/results/results.json``;
* ``course/``: the ``pgcourse`` package and the assignment's solution notebook (the reference).

``$ROOT`` is ``$AUTOGRADER_ROOT``, default ``/autograder``. ``results.json`` (:func:`results`) has the
total ``score`` and per exercise two ``tests``: the exercise (its points, counting the held-out
cases; output: the visible cases) and its held-out cases (no points of their own; visibility
``after_due_date``). The held-out cases are drawn from a secret made afresh in the grader's process
for each submission (never written where the submission's code could read it).
"""
from __future__ import annotations

import argparse
import json
import zipfile
from pathlib import Path

from .reference import DEFAULT_SOLUTIONS, PACKAGE_DIR, ROOT, GradingError, Reference, _match_expected
from .report import Report, fmt_points

DEV_ONLY = ("jupyterlab", "hypothesis", "playwright")     # not needed to grade
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"

SETUP_SH = """#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder image.
set -euo pipefail
ROOT="${AUTOGRADER_ROOT:-/autograder}"
SRC="$ROOT/source"
if ! python3 -m venv --help >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv python3-pip
fi
python3 -m venv "$ROOT/venv"
PY="$ROOT/venv/bin/python"
if compgen -G "$SRC/wheels/*.whl" >/dev/null; then
  "$PY" -m pip install --no-index --find-links "$SRC/wheels" -r "$SRC/requirements.txt"    # offline
else
  "$PY" -m pip install -q --upgrade pip
  "$PY" -m pip install --extra-index-url __TORCH_CPU_INDEX__ -r "$SRC/requirements.txt"
fi
# the course package, as an editable install would put it (nothing to build)
echo "$SRC/course" > "$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/pgcourse.pth"
"$PY" -c "import pgcourse.grading, nbval, ipykernel; print('pgcourse autograder ready')"
"""

RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope runs this for each submission; it writes $ROOT/results/results.json.
set -uo pipefail
ROOT="${AUTOGRADER_ROOT:-/autograder}"
SRC="$ROOT/source"
PY="${PGCOURSE_PYTHON:-$ROOT/venv/bin/python}"
[ -x "$PY" ] || PY="$(command -v python3)"
export PYTHONPATH="$SRC/course${PYTHONPATH:+:$PYTHONPATH}" MPLBACKEND=Agg PYTHONHASHSEED=0
mkdir -p "$ROOT/results"
cd "$ROOT"
"$PY" -m pgcourse grade "$ROOT/submission" --notebook __NOTEBOOK__ --solutions "$SRC/course/notebooks/solutions" \\
    --gradescope "$ROOT/results/results.json" --gradebook "$ROOT/results/gradebook.csv" \
    --timeout __TIMEOUT__ --total-timeout __TOTAL_TIMEOUT__
[ -s "$ROOT/results/results.json" ] || exit 1        # graded or not, Gradescope needs results.json
exit 0
"""


def grading_requirements(requirements: Path = ROOT / "requirements.txt") -> str:
    """The course's pinned requirements less the developers' own (and less the editable install)."""
    keep = []
    for line in requirements.read_text().splitlines():
        name = line.split("#")[0].strip()
        if not name or name.startswith("-e") or name.split("=")[0].split(">")[0].split("<")[0].strip() in DEV_ONLY:
            continue
        keep.append(name)
    return "\n".join(keep) + "\n"


def _add(z: zipfile.ZipFile, arcname: str, data: str | bytes, executable: bool = False) -> None:
    info = zipfile.ZipInfo(arcname, date_time=(2020, 1, 1, 0, 0, 0))
    info.external_attr = (0o100755 if executable else 0o100644) << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    z.writestr(info, data)


def build(notebook: str, out: Path, solutions: Path = DEFAULT_SOLUTIONS, wheels: Path | None = None,
          timeout: float = 300, total_timeout: float = 1200) -> Path:
    """Write the Gradescope autograder zip for ``notebook`` (e.g. ``06`` or ``06_grpo``) to ``out``."""
    solutions = Path(solutions)
    refs = {p.name: p for p in sorted(solutions.glob("*.ipynb"))}
    name = _match_expected(notebook, refs)
    wheel_files = sorted(Path(wheels).glob("*.whl")) if wheels else []
    if wheels and not wheel_files:
        raise ValueError(f"wheels: no .whl files in {wheels}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    run = (RUN_AUTOGRADER.replace("__NOTEBOOK__", Path(name).stem).replace("__TIMEOUT__", f"{timeout:g}")
           .replace("__TOTAL_TIMEOUT__", f"{total_timeout:g}"))
    with zipfile.ZipFile(out, "w") as z:
        _add(z, "setup.sh", SETUP_SH.replace("__TORCH_CPU_INDEX__", TORCH_CPU_INDEX), executable=True)
        _add(z, "run_autograder", run, executable=True)
        _add(z, "requirements.txt", grading_requirements())
        _add(z, "assignment.json", json.dumps({"notebook": Path(name).stem, "reference": name}, indent=1) + "\n")
        for f in sorted(PACKAGE_DIR.rglob("*.py")):
            if "__pycache__" not in f.parts:
                _add(z, f"course/pgcourse/{f.relative_to(PACKAGE_DIR).as_posix()}", f.read_bytes())
        _add(z, f"course/notebooks/solutions/{name}", refs[name].read_bytes())
        for w in wheel_files:
            _add(z, f"wheels/{w.name}", w.read_bytes())
    return out


def results(reports: list[Report], reference: Reference | None, note: str = "") -> dict:
    """Gradescope's results.json for one submission (the best-scoring notebook where there are several)."""
    graded = [r for r in reports if r.rows and r.rows[0].exercise != "-"]
    best = max(graded, key=lambda r: r.points) if graded else (reports[0] if reports else None)
    expected = [(e.name, e.points) for e in reference.exercises] if reference else []
    rows = {row.exercise: row for row in best.rows} if best else {}
    refused = next((row.message for row in best.rows if row.result in ("refused", "error")), "") if best else ""
    why = refused or note or "no notebook in the submission"
    tests = []
    for k, (name, top) in enumerate(expected or [(n, rows[n].max_points) for n in rows], 1):
        row = rows.get(name)
        if row is None:
            tests.append({"name": name, "number": str(k), "score": 0.0, "max_score": top, "status": "failed",
                          "output": f"not graded: {why}", "visibility": "visible"})
            continue
        d = row.detail
        visible = (f"visible cases: {d['visible']} pass" + (f"\n\n{d['visible_failure']}" if d.get("visible_failure")
                                                             else "")) if "visible" in d else row.message
        tests.append({"name": name, "number": str(k), "score": round(row.points, 4), "max_score": top,
                      "status": "passed" if row.result == "pass" else "failed",
                      "output": f"{visible}\n\n{fmt_points(row.points)}/{fmt_points(top)} points (the held-out cases "
                                "count too: points × the smaller share of visible and of held-out cases passed)",
                      "visibility": "visible"})
        if row.held_out:
            k_, n_ = row.held_out.split("/")
            tests.append({"name": f"{name}: held-out cases", "number": f"{k}.1", "score": 0.0, "max_score": 0.0,
                          "status": "passed" if k_ == n_ else "failed",
                          "output": f"held-out cases (drawn from a seed only the grader held): {row.held_out} pass"
                                    + (f"\n\n{d['held_out_failure']}" if d.get("held_out_failure") else ""),
                          "visibility": "after_due_date"})
    total = sum(t["score"] for t in tests)
    lines = [f"{fmt_points(total)}/{fmt_points(sum(t['max_score'] for t in tests))} points"]
    if best is None or refused or note:
        lines.append(why)
    if best is not None:
        lines += [f"note: {n}" for n in best.notes]
    others = [r.learner_file for r in reports if r is not best]
    if others:
        lines.append("also submitted (not counted): " + ", ".join(Path(o).name for o in others))
    return {"score": round(total, 4), "execution_time": round(sum(r.seconds for r in reports), 1),
            "output": "\n".join(lines), "stdout_visibility": "hidden", "tests": tests}


def write_results(path: Path, reports: list[Report], reference: Reference | None, note: str = "") -> None:
    """Write :func:`results` as JSON to ``path`` (its folder is made)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results(reports, reference, note), indent=1, ensure_ascii=False) + "\n",
                    encoding="utf-8")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--notebook", required=True, help="the assignment, e.g. 06 or 06_grpo")
    parser.add_argument("--out", default="autograder.zip", help="the zip to write (default autograder.zip)")
    parser.add_argument("--solutions", default=str(DEFAULT_SOLUTIONS),
                        help="folder of the reference solution notebooks (default: notebooks/solutions)")
    parser.add_argument("--wheels", default=None,
                        help="a folder of .whl files to vendor (setup.sh then installs offline from them), e.g. "
                             "made with: pip download -r requirements.txt -d wheels --extra-index-url "
                             + TORCH_CPU_INDEX)
    parser.add_argument("--timeout", type=float, default=300, help="per-cell timeout in seconds (default 300)")
    parser.add_argument("--total-timeout", type=float, default=1200,
                        help="timeout for a whole submission in seconds (default 1200)")


def main(args: argparse.Namespace) -> int:
    try:
        out = build(args.notebook, Path(args.out), Path(args.solutions), Path(args.wheels) if args.wheels else None,
                    args.timeout, args.total_timeout)
    except (GradingError, ValueError) as err:
        raise SystemExit(str(err)) from None
    n_wheels = len(list(Path(args.wheels).glob("*.whl"))) if args.wheels else 0
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB): setup.sh, run_autograder, requirements.txt, "
          f"course/ (pgcourse and the reference notebook)" + (f", wheels/ ({n_wheels} wheels)" if n_wheels else ""))
    return 0
