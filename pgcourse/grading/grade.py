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
   compared with the reference output) with a per-cell timeout and a total timeout.
4. **Verdict.** An exercise passes only when its restored check cell passed under nbval *and*
   the kernel's grader recorded a verified pass for it. The grader is installed in the kernel
   by an IPython startup file before any learner code runs: it loads a private copy of
   :mod:`pgcourse.grading` (so patching ``pgcourse.grading`` changes nothing), becomes
   ``pgcourse.grading.check``, and writes each verdict, signed (HMAC) with a per-run secret the
   kernel reads from a file it then deletes, to a results file the grader reads. It records only
   a call made directly by a restored check cell (the execute request's code is the reference
   check source and the caller is the cell's own top-level code), refuses to record when
   ``pgcourse``, ``torch``, ``math``, ``copy`` or key builtins were replaced, and checks the
   learner's function returns plain values (no tensor subclass or object with its own ``==``).
   Printing the success line, replacing ``check``, wrapping it, or patching what it uses yields
   no verified pass: the exercise fails.

Prints a table per submission (exercise, result, first line of the message) and a score; with
several submissions or a folder, writes a CSV gradebook (``learner_file, exercise, result,
message``). Exit status 0 only when every exercise of every submission passes.

What in-process grading cannot stop: a learner who deliberately reverse-engineers the grader
inside the kernel (reads its private state by introspection), or whose function simply calls
``pgcourse``'s reference implementation (a grader reading the code sees that).
"""
from __future__ import annotations

import argparse
import copy
import csv
import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
PACKAGE_DIR = ROOT / "pgcourse"
GRADING_DIR = Path(__file__).resolve().parent
DEFAULT_SOLUTIONS = ROOT / "notebooks" / "solutions"

CHECK_CALL = re.compile(r"""check\(\s*["']([^"']+)["']\s*,\s*([A-Za-z_]\w*)\s*\)""")
PASS_LINE = re.compile(r"✓ (\S+): all (\d+) cases? pass")
CONFIG_ENV = "PGCOURSE_GRADE_CONFIG"
RESULTS = ("pass", "fail", "timeout", "refused")


class Refused(Exception):
    """The submission cannot be graded against any reference notebook (the reason is the message)."""


class GradingError(RuntimeError):
    """The grader itself could not run (not the learner's fault)."""


# --------------------------------------------------------------------------------------------
# Reading notebooks
# --------------------------------------------------------------------------------------------

def _tags(cell) -> list[str]:
    tags = cell.get("metadata", {}).get("tags", [])
    return list(tags) if isinstance(tags, list) else []


def _cid(cell) -> str:
    return str(cell.get("id", "") or "")


def is_check_cell(cell) -> bool:
    return cell.get("cell_type") == "code" and ("check" in _tags(cell) or _cid(cell).startswith("check-"))


def is_exercise_cell(cell) -> bool:
    return cell.get("cell_type") == "code" and (
        "exercise" in _tags(cell) or _cid(cell).startswith("exercise-") or "### BEGIN SOLUTION" in cell.get("source", ""))


@dataclass
class RefExercise:
    """One exercise of a reference notebook: its check cell and the exercise cell before it."""

    name: str                 # "01.reward_to_go"
    fn: str                   # the learner function the check cell passes
    check_cell: dict
    exercise_id: str
    n_cases: int


@dataclass
class Reference:
    path: Path
    exercises: list[RefExercise]

    @property
    def stem(self) -> str:
        return self.path.stem

    @property
    def ids(self) -> set[str]:
        return {e.exercise_id for e in self.exercises} | {_cid(e.check_cell) for e in self.exercises}


def load_reference(path: Path) -> Reference:
    """The exercises of a solution notebook, in order, with their expected check output."""
    import nbformat
    nb = nbformat.read(path, as_version=4)
    out: list[RefExercise] = []
    last_exercise = None
    for cell in nb.cells:
        if is_check_cell(cell):
            m = CHECK_CALL.search(cell.source)
            if not m:
                raise GradingError(f"{path.name}: check cell {_cid(cell)!r} does not call check(\"name\", fn)")
            text = "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")
            p = PASS_LINE.search(text)
            if not p or cell.get("execution_count") is None:
                raise GradingError(f"{path.name}: check cell {_cid(cell)!r} has no '✓ … cases pass' output; "
                                   "execute the solution notebook first")
            if last_exercise is None:
                raise GradingError(f"{path.name}: check cell {_cid(cell)!r} follows no exercise cell")
            out.append(RefExercise(m.group(1), m.group(2), cell, _cid(last_exercise), int(p.group(2))))
        elif is_exercise_cell(cell):
            last_exercise = cell
    return Reference(path, out)


def identify(nb, sub_path: Path, solutions: Path, expected: str | None = None) -> Path:
    """The reference solution notebook of a submission, or :class:`Refused` with the reason."""
    refs = {p.name: p for p in sorted(solutions.glob("*.ipynb"))}
    if not refs:
        raise GradingError(f"no solution notebooks in {solutions}")
    meta = nb.get("metadata", {}).get("pgcourse", {})
    source = meta.get("generated_from") if isinstance(meta, dict) else None
    if isinstance(source, str) and source:
        name = Path(source).name
        if name not in refs:
            raise Refused(f"made from {source!r}, which is not a notebook of this course "
                          f"(known: {', '.join(sorted(refs))})")
    else:
        hits = sorted((p for p in refs if Path(p).stem in sub_path.name), key=len)
        if not hits:
            raise Refused("cannot tell which course notebook this is: no pgcourse metadata and the file name "
                          f"names none of {', '.join(sorted(refs))}")
        name = hits[-1]
    if expected:
        want = _match_expected(expected, refs)
        if want != name:
            raise Refused(f"this is notebook {Path(name).stem}, not the assignment {Path(want).stem}")
    return refs[name]


def _match_expected(expected: str, refs: dict[str, Path]) -> str:
    hits = [n for n in refs if n == expected or Path(n).stem == expected or Path(n).stem.startswith(expected)]
    if len(hits) != 1:
        raise GradingError(f"--notebook {expected!r} matches {hits or 'no notebook'}; known: {sorted(refs)}")
    return hits[0]


# --------------------------------------------------------------------------------------------
# Restoring the check cells
# --------------------------------------------------------------------------------------------

@dataclass
class Plan:
    """The notebook nbval runs, and where each exercise's check cell is in it."""

    notebook: object
    check_index: dict[str, int | None]      # exercise -> index among code cells (None: exercise cell missing)
    warnings: list[str] = field(default_factory=list)


def _defines(cell, fn: str) -> bool:
    return cell.get("cell_type") == "code" and re.search(rf"^def\s+{re.escape(fn)}\s*\(", cell.source, re.M) is not None


def restore(sub_nb, ref: Reference) -> Plan:
    """A copy of the submission with every check cell replaced by the reference's (the input is unchanged)."""
    nb = copy.deepcopy(sub_nb)
    check_ids = {_cid(e.check_cell) for e in ref.exercises}
    check_sources = {e.check_cell.source.strip() for e in ref.exercises}
    foreign = sorted({_cid(c) for c in nb.cells
                      if c.get("cell_type") == "code" and re.match(r"(exercise|check)-\d+-", _cid(c))} - ref.ids)
    shared = {_cid(c) for c in nb.cells} & ref.ids
    if ref.exercises and not shared and (foreign or not any(_defines(c, e.fn) for c in nb.cells for e in ref.exercises)):
        why = f"its exercise cells ({', '.join(foreign[:3])}…) are not those of" if foreign else "it has none of the exercises of"
        raise Refused(f"{why} {ref.stem}: a submission from another notebook?")
    warnings = [f"cells from another notebook: {', '.join(foreign)}"] if foreign else []

    cells = [c for c in nb.cells if not (is_check_cell(c) or _cid(c) in check_ids
                                         or (c.get("cell_type") == "code" and c.source.strip() in check_sources))]
    inserts: dict[int, list] = {}
    missing: set[str] = set()
    for ex in ref.exercises:
        at = next((i for i, c in enumerate(cells) if _cid(c) == ex.exercise_id), None)
        if at is None:
            at = next((i for i in range(len(cells) - 1, -1, -1) if _defines(cells[i], ex.fn)), None)
        if at is None:
            missing.add(ex.name)
            continue
        cell = copy.deepcopy(ex.check_cell)
        cell.metadata["tags"] = sorted(set(_tags(cell)) | {"check", "nbval-check-output"})
        inserts.setdefault(at, []).append((ex.name, cell))
    out, where = [], {}
    for i, c in enumerate(cells):
        out.append(c)
        for name, cell in inserts.get(i, []):
            out.append(cell)
            where[name] = id(cell)
    seen: set[str] = set()
    for k, c in enumerate(out):                      # unique ids (nbformat 4.5); old notebooks have none
        cid = _cid(c) or f"cell-{k}"
        while cid in seen:
            cid = f"{cid}-{k}"
        c["id"] = cid
        seen.add(cid)
    nb.cells = out
    nb.nbformat, nb.nbformat_minor = 4, max(5, int(nb.get("nbformat_minor", 5)))
    code = [c for c in out if c.get("cell_type") == "code"]
    index = {id(c): k for k, c in enumerate(code)}
    check_index = {e.name: (None if e.name in missing else index[where[e.name]]) for e in ref.exercises}
    return Plan(nb, check_index, warnings)


# --------------------------------------------------------------------------------------------
# The grader inside the kernel
# --------------------------------------------------------------------------------------------

def _sign(key: bytes, record: dict) -> str:
    body = json.dumps(record, sort_keys=True, ensure_ascii=True)
    return hmac.new(key, body.encode(), hashlib.sha256).hexdigest()


def _kernel_startup() -> None:
    """Run by an IPython startup file in the grading kernel, before any learner code.

    Reads the grading config (then deletes it), loads a private copy of ``pgcourse.grading``,
    and installs the recording ``check`` (see the module docstring).
    """
    import builtins
    import importlib
    import importlib.util
    import math
    import pkgutil
    import threading
    import types

    import numpy as np
    import torch
    from IPython import get_ipython

    cfg_path = os.environ.pop(CONFIG_ENV)
    with open(cfg_path) as f:
        cfg = json.load(f)
    os.unlink(cfg_path)
    key = bytes.fromhex(cfg["secret"])
    results_path = cfg["results"]
    sources: dict[str, str] = cfg["checks"]            # exercise -> the reference check cell source
    for mod in cfg.get("extra_modules", []):
        importlib.import_module(mod)
    shell = get_ipython()
    kernel = getattr(shell, "kernel", None)
    get_parent = kernel.get_parent if kernel is not None else (lambda channel: {})
    user_ns = shell.user_ns
    hooks = (sys.gettrace(), sys.getprofile())
    sign, dumps, open_, getframe = _sign, json.dumps, builtins.open, sys._getframe
    code_names = {}
    for name, src in sources.items():
        try:
            code_names[name] = shell.compile.get_code_name(src, src, 0)
        except Exception:                                  # an IPython without ipykernel's cell names
            code_names[name] = None

    import pgcourse.grading as public
    public_table = {k: copy.copy(v) for k, v in public.exercises().items()}
    private_name = f"pgcourse._grading_{secrets.token_hex(4)}"
    spec = importlib.util.spec_from_file_location(private_name, GRADING_DIR / "__init__.py",
                                                  submodule_search_locations=[str(GRADING_DIR)])
    private = importlib.util.module_from_spec(spec)
    sys.modules[private_name] = private
    spec.loader.exec_module(private)
    for m in pkgutil.iter_modules([str(GRADING_DIR)]):
        if m.name.startswith("nb"):
            try:
                importlib.import_module(f"{private_name}.{m.name}")
            except Exception:      # registers in the public registry (absolute import): use that copy
                pass
    table = {**public_table, **{k: copy.copy(v) for k, v in private._REGISTRY.items()}}
    private.exercises = lambda: dict(table)
    private_check, ExerciseFailed = private.check, private.ExerciseFailed

    allowed_modules = ("torch", "numpy", "pgcourse", "builtins", "collections")

    def plain(x, depth=0):
        """``x`` as plain values the comparison can trust, or TypeError."""
        t = type(x)
        if depth > 20:
            raise TypeError("returned a structure nested too deeply")
        if x is None or t in (bool, int, float, complex, str, torch.Tensor, torch.dtype, torch.Size):
            return x
        if isinstance(x, torch.Tensor):
            if t.__module__.split(".")[0] == "torch":
                return plain(torch.Tensor.detach(x), depth + 1)
            raise TypeError(f"returned a {t.__name__} (a torch.Tensor subclass); return a plain tensor")
        if isinstance(x, np.generic) and t.__module__ == "numpy":
            return x.item()
        if t is np.ndarray:
            return x
        if isinstance(x, tuple):
            items = [plain(tuple.__getitem__(x, i), depth + 1) for i in range(tuple.__len__(x))]
            if t.__module__.split(".")[0] in allowed_modules and t is not tuple:
                return t(*items) if hasattr(t, "_fields") else t(items)
            return tuple(items)
        if isinstance(x, list):
            return [plain(list.__getitem__(x, i), depth + 1) for i in range(list.__len__(x))]
        if isinstance(x, dict):
            return {plain(k, depth + 1): plain(v, depth + 1) for k, v in dict.items(x)}
        if t.__module__.split(".")[0] in allowed_modules and not isinstance(x, (int, float, str)):
            return x
        raise TypeError(f"returned a {t.__module__}.{t.__qualname__}; return tensors, numbers, "
                        "or tuples/lists/dicts of them")

    watched = [m for n, m in sys.modules.items() if n == "pgcourse" or n.startswith("pgcourse.")
               or n == private_name or n.startswith(private_name + ".")]
    watched += [torch, math, copy, np]
    watched_builtins = ("print", "isinstance", "type", "len", "range", "repr", "str", "float", "int", "bool",
                        "tuple", "list", "dict", "zip", "enumerate", "getattr", "hasattr", "super", "__import__",
                        "sorted", "min", "max", "abs", "sum", "any", "all", "open", "Exception", "BaseException",
                        "NotImplementedError")
    snapshot: list[tuple[object, str, object]] = []

    def take_snapshot():
        snapshot.clear()
        for mod in watched:
            for k, v in list(vars(mod).items()):
                if callable(v) or isinstance(v, types.ModuleType):
                    snapshot.append((mod, k, v))
        for cls in (torch.Tensor, torch._C.TensorBase):
            for k, v in list(vars(cls).items()):
                snapshot.append((cls, k, v))
        for k in watched_builtins:
            snapshot.append((builtins, k, getattr(builtins, k)))

    def changed() -> list[str]:
        out = [] if (sys.gettrace(), sys.getprofile()) == hooks else ["sys.settrace/setprofile hook"]
        for owner, k, v in snapshot:
            if vars(owner).get(k, None) is not v:
                out.append(f"{getattr(owner, '__name__', owner)}.{k}")
        return out

    state = {"active": False, "seq": 0}
    lock = threading.Lock()

    def record(name: str, result: str, message: str = "", cases: int = 0) -> None:
        if getframe(1).f_code not in own_code:        # only this grader's check (not a function taken from it)
            return
        state["seq"] += 1
        rec = {"exercise": name, "result": result, "message": message, "cases": cases, "seq": state["seq"]}
        with open_(results_path, "a", encoding="utf-8") as f:
            f.write(dumps({**rec, "sig": sign(key, rec)}) + "\n")

    def call_site_ok(name: str, caller) -> bool:
        """A direct call from the top-level code of the restored check cell, as the kernel executes it."""
        code = ((get_parent("shell") or {}).get("content") or {}).get("code")
        if name not in sources or code != sources[name]:
            return False
        if caller is None or caller.f_code.co_name != "<module>" or caller.f_globals is not user_ns:
            return False
        if caller.f_back is None or caller.f_back.f_code.co_name != "run_code":
            return False
        if code_names.get(name) not in (None, caller.f_code.co_filename):
            return False
        frame = caller.f_back                    # no other cell below it: not a run_cell nested in a cell
        while frame is not None:
            if frame.f_code.co_name == "<module>" and frame.f_globals is user_ns:
                return False
            frame = frame.f_back
        return True

    def fail_if_changed(name: str) -> None:
        bad = changed()
        if bad:
            msg = f"{name}: the grading environment was modified ({', '.join(bad[:3])} replaced)"
            record(name, "fail", msg)
            raise ExerciseFailed(msg)

    def check(name, fn):
        """Run exercise ``name``'s cases on ``fn`` (the grader's check: it records a signed verdict)."""
        caller = getframe(1)
        ok = call_site_ok(name, caller) and not state["active"]
        del caller
        if not ok:
            return private_check(name, fn)
        with lock:
            state["active"] = True
            try:
                fail_if_changed(name)
                code = getattr(fn, "__code__", None)
                if code is not None and os.path.realpath(code.co_filename).startswith(str(PACKAGE_DIR) + os.sep):
                    msg = f"{name}: the function checked is pgcourse's own code, not yours"
                    record(name, "fail", msg)
                    raise ExerciseFailed(msg)
                calls = [0]

                def learner(*args, **kwargs):
                    calls[0] += 1
                    return plain(fn(*args, **kwargs))

                try:
                    passed = private_check(name, learner)
                except ExerciseFailed as err:
                    record(name, "fail", str(err))
                    raise
                except KeyboardInterrupt:
                    record(name, "timeout", f"{name}: interrupted (the cell ran past the per-cell timeout)")
                    raise
                except BaseException as err:
                    record(name, "fail", f"{name}: {type(err).__name__}: {err}")
                    raise
                fail_if_changed(name)
                if passed:
                    record(name, "pass", f"{name}: all {calls[0]} cases pass", calls[0])
                else:
                    record(name, "fail", f"{name}: not attempted (raise NotImplementedError)")
                return passed
            finally:
                state["active"] = False

    own_code = {check.__code__, fail_if_changed.__code__, _kernel_startup.__code__}
    check.__module__, check.__qualname__ = "pgcourse.grading", "check"
    public.check = check
    take_snapshot()
    record("", "ready")


_STARTUP = """\
def __pgcourse_grade_start():
    from pgcourse.grading.grade import _kernel_startup
    _kernel_startup()
__pgcourse_grade_start()
del __pgcourse_grade_start
"""

# A pytest plugin (the conftest.py of the grading folder): log every nbval cell's outcome as it happens.
_CONFTEST = """\
import json, os
_LOG = os.environ.pop("PGCOURSE_GRADE_CELLS", None)

def pytest_runtest_logreport(report):
    if _LOG is None or (report.when != "call" and report.outcome == "passed"):
        return
    text = report.longreprtext if report.failed else ""
    with open(_LOG, "a", encoding="utf-8") as f:
        f.write(json.dumps({"cell": report.nodeid.rsplit("::", 1)[-1], "when": report.when,
                            "outcome": report.outcome, "xfail": bool(getattr(report, "wasxfail", "")),
                            "text": text[-4000:]}) + "\\n")
"""


# --------------------------------------------------------------------------------------------
# Running nbval and reading the verdicts
# --------------------------------------------------------------------------------------------

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


def _read_records(path: Path, key: bytes) -> tuple[bool, dict[str, list[dict]]]:
    ready, by = False, {}
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
            ready = True
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


def _run_nbval(plan: Plan, ref: Reference, timeout: float, total_timeout: float,
               extra_modules: list[str], keep: Path | None) -> tuple[bool, dict, dict, str]:
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
                                      "checks": {e.name: e.check_cell.source for e in ref.exercises}}))
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
        if not ready and not stopped:
            raise GradingError("the grader did not start in the kernel; nbval said:\n" + log[-3000:])
        return ready, records, _read_cells(cells), stopped
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


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


def grade_notebook(path: Path, solutions: Path = DEFAULT_SOLUTIONS, *, expected: str | None = None,
                   timeout: float = 120, total_timeout: float = 1200, extra_modules: list[str] | None = None,
                   keep: Path | None = None, label: str | None = None) -> Report:
    """Grade one submitted notebook (only read, never written); see the module docstring."""
    import nbformat
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
        plan = restore(nb, ref)
        report.notes += plan.warnings
        if not ref.exercises:
            report.notes.append(f"{ref.stem} has no exercises")
            return report
        if all(i is None for i in plan.check_index.values()):
            records, cells, stopped = {}, {}, ""
        else:
            _, records, cells, stopped = _run_nbval(plan, ref, timeout, total_timeout, extra_modules or [], keep)
        if stopped:
            report.notes.append(stopped)
        for ex in ref.exercises:
            i = plan.check_index[ex.name]
            report.rows.append(_verdict(ex, i, records.get(ex.name, []), cells.get(i) if i is not None else None,
                                        stopped))
    except Refused as err:
        report.rows = [Row("-", "refused", str(err))]
    report.seconds = time.perf_counter() - t0
    return report


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------

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


def main(args: argparse.Namespace) -> int:
    paths, folder = find_submissions(args.submissions)
    if not paths:
        raise SystemExit("no notebooks to grade")
    keep = Path(args.keep) if args.keep else None

    def one(p: Path) -> Report:
        return grade_notebook(p, Path(args.solutions), expected=args.notebook, timeout=args.timeout,
                              total_timeout=args.total_timeout, extra_modules=args.exercises_module, keep=keep)

    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        reports = []
        for r in pool.map(one, paths):
            print(format_report(r), flush=True)
            reports.append(r)
    book = args.gradebook or ("gradebook.csv" if folder or len(paths) > 1 else None)
    if book:
        write_gradebook(reports, Path(book))
        print(f"wrote gradebook {book}")
    n_pass = sum(r.passed for r in reports)
    if len(reports) > 1:
        print(f"{n_pass}/{len(reports)} submissions pass every exercise")
    return 0 if n_pass == len(reports) else 1
