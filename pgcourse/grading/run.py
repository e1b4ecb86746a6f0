"""Running nbval on a restored copy, in a temporary folder, and reading what the kernel's grader recorded.

The copy runs under nbval's pytest plugin (``--nbval-lax``: the restored check cells are compared
with the reference output) with a per-cell and a total timeout, and an IPython startup file that
installs the in-kernel grader (:mod:`.recorder`). Only records signed with the run's secret count.
"""
from __future__ import annotations

import hmac
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .recorder import _CONFTEST, _STARTUP, CONFIG_ENV, _sign
from .reference import GradingError, Reference
from .restore import Plan


@dataclass
class Run:
    """What one nbval run left: whether the kernel's grader started, the exercises' points it knows, the
    signed records by exercise, nbval's cell outcomes by code-cell index, and why it stopped early."""

    ready: bool
    max_points: dict[str, float]
    records: dict[str, list[dict]]
    cells: dict[int, dict]
    stopped: str = ""


def _read_records(path: Path, key: bytes) -> tuple[dict | None, dict[str, list[dict]]]:
    """The kernel's "ready" record (None if it never started) and the other signed records by exercise."""
    ready, by = None, {}
    if not path.exists():
        return ready, by
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            rec = json.loads(line)
            sig = rec.pop("sig")
        except (ValueError, KeyError, AttributeError, TypeError):
            continue
        if not isinstance(sig, str) or not hmac.compare_digest(sig, _sign(key, rec)):
            continue
        if rec.get("result") == "ready" and rec.get("exercise") == "":
            ready = rec
        else:
            by.setdefault(str(rec.get("exercise")), []).append(rec)
    return ready, by


def _read_cells(path: Path) -> dict[int, dict]:
    out: dict[int, dict] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                rec = json.loads(line)
                k = int(rec["cell"].split()[-1])
            except (ValueError, KeyError, IndexError, AttributeError):
                continue
            if k not in out or rec.get("when") == "call":
                out[k] = rec
    return out


def _run_nbval(plan: Plan, ref: Reference, timeout: float, total_timeout: float,
               extra_modules: list[str], keep: Path | None, held_out: dict[str, int] | None = None) -> Run:
    """Run the restored copy under nbval; ``held_out`` maps an exercise to its held-out seed."""
    import nbformat
    tmp = Path(tempfile.mkdtemp(prefix="pgcourse-grade-"))
    try:
        work, grader = tmp / "work", tmp / "grader"
        work.mkdir()
        grader.mkdir(mode=0o700)
        startup = tmp / "ipython" / "profile_default" / "startup"
        startup.mkdir(parents=True)
        (startup / "00-pgcourse-grade.py").write_text(_STARTUP)
        (work / "conftest.py").write_text(_CONFTEST)
        (tmp / "pytest.ini").write_text("[pytest]\n")
        nb_path = work / "submission.ipynb"
        nbformat.write(plan.notebook, nb_path)
        secret = secrets.token_bytes(32)
        results, cells = grader / "results.jsonl", grader / "cells.jsonl"
        config = grader / f"config-{secrets.token_hex(8)}.json"
        config.write_text(json.dumps({"secret": secret.hex(), "results": str(results), "extra_modules": extra_modules,
                                      "checks": {e.name: e.check_cell.source for e in ref.exercises},
                                      "held_out": held_out or {}}))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "PGCOURSE_GRADE"))}
        env.update({"IPYTHONDIR": str(tmp / "ipython"), CONFIG_ENV: str(config), "PGCOURSE_GRADE_CELLS": str(cells),
                    "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "PYTHONDONTWRITEBYTECODE": "1"})
        cmd = [sys.executable, "-m", "pytest", "-c", str(tmp / "pytest.ini"), "--rootdir", str(work),
               "-p", "nbval.plugin", "-p", "no:cacheprovider", "--nbval-lax", "--nbval-current-env",
               f"--nbval-cell-timeout={timeout:g}", "-q", "--color=no", "-W", "ignore", str(nb_path)]
        proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)
        stopped = ""
        try:
            out, _ = proc.communicate(timeout=total_timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            stopped = f"grading stopped after the total timeout of {total_timeout:g} s"
        log = out.decode(errors="replace")
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            shutil.copytree(tmp, keep / tmp.name, dirs_exist_ok=True)
            (keep / tmp.name / "pytest.log").write_text(log)
        ready, records = _read_records(results, secret)
        if ready is None and not stopped:
            raise GradingError("the grader did not start in the kernel; nbval said:\n" + log[-3000:])
        points = (ready or {}).get("points") or {}
        return Run(ready is not None, {str(k): float(v) for k, v in points.items()}, records, _read_cells(cells),
                   stopped)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
