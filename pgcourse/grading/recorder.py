"""The grader inside the kernel: installed by an IPython startup file before any learner code runs.

:func:`_kernel_startup` loads a private copy of :mod:`pgcourse.grading` (so patching
``pgcourse.grading`` changes nothing), becomes ``pgcourse.grading.check``, and writes each verdict,
signed (HMAC, :func:`_sign`) with a per-run secret the kernel reads from a file it then deletes, to a
results file the grader reads. It records only a call made directly by a restored check cell (the
execute request's code is the reference check source and the caller is the cell's own top-level
code), refuses to record when ``pgcourse``, ``torch``, ``math``, ``copy`` or key builtins were
replaced (:mod:`.tamper`; a library's own lazy re-wrapping is not tampering) or no longer tell
different values apart, and checks the learner's function returns plain values (no tensor subclass or object
with its own ``==``).

``_STARTUP`` is that startup file; ``_CONFTEST`` is the pytest plugin that logs each nbval cell's outcome.
"""
from __future__ import annotations

import copy
import hashlib
import hmac
import json
import os
import secrets
import sys

from .reference import GRADING_DIR, PACKAGE_DIR
from .heldout import case_drawer, summarize
from .tamper import comparison_canary, environment_watch

CONFIG_ENV = "PGCOURSE_GRADE_CONFIG"


def _sign(key: bytes, record: dict) -> str:
    body = json.dumps(record, sort_keys=True, ensure_ascii=True)
    return hmac.new(key, body.encode(), hashlib.sha256).hexdigest()


def _kernel_startup() -> None:
    """Run by an IPython startup file in the grading kernel, before any learner code.

    Reads the grading config (then deletes it), loads a private copy of ``pgcourse.grading``,
    and installs the recording ``check`` (see the module docstring).
    """
    import builtins
    import contextlib
    import importlib
    import importlib.util
    import inspect
    import io
    import math
    import pkgutil
    import threading
    import time

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
    held_seeds: dict[str, int] = {k: int(v) for k, v in cfg.get("held_out", {}).items()}
    for mod in cfg.get("extra_modules", []):
        importlib.import_module(mod)
    shell = get_ipython()
    kernel = getattr(shell, "kernel", None)
    get_parent = kernel.get_parent if kernel is not None else (lambda channel: {})
    user_ns = shell.user_ns
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

    ours = [m for n, m in sys.modules.items() if n == "pgcourse" or n.startswith("pgcourse.")
            or n == private_name or n.startswith(private_name + ".")]
    watched = ours + [torch, math, copy, np]
    watched_builtins = ("print", "isinstance", "type", "len", "range", "repr", "str", "float", "int", "bool",
                        "tuple", "list", "dict", "zip", "enumerate", "getattr", "hasattr", "super", "__import__",
                        "sorted", "min", "max", "abs", "sum", "any", "all", "open", "Exception", "BaseException",
                        "NotImplementedError")
    library_dirs = [os.path.dirname(torch.__file__), os.path.dirname(np.__file__)]
    classes = [torch.Tensor, torch._C.TensorBase] + [v for m in ours for v in list(vars(m).values())
                                                     if isinstance(v, type) and v.__module__ == m.__name__]
    take_snapshot, changed = environment_watch(watched, classes, watched_builtins, library_dirs)
    comparisons_work = comparison_canary(private.differ, torch)

    state = {"active": False, "seq": 0}
    lock = threading.Lock()
    draw = case_drawer(torch, inspect.signature)
    evaluate, announce, summary = private.evaluate, private.announce, summarize
    quiet_out, quiet_err, StringIO, clock = contextlib.redirect_stdout, contextlib.redirect_stderr, io.StringIO, time.perf_counter
    public_seed, last = private.PUBLIC_SEED, public._LAST
    makers = {k: v.make_cases for k, v in table.items()}

    def record(name: str, result: str, message: str = "", cases: int = 0, **extra) -> None:
        if getframe(1).f_code not in own_code:        # only this grader's check (not a function taken from it)
            return
        state["seq"] += 1
        rec = {"exercise": name, "result": result, "message": message, "cases": cases, "seq": state["seq"], **extra}
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
        if not bad and not comparisons_work():
            bad = ["the comparison of values (torch, math or pgcourse.grading.differ)"]
        if bad:
            msg = f"{name}: the grading environment was modified ({', '.join(bad[:3])} replaced)"
            record(name, "fail", msg)
            raise ExerciseFailed(msg)

    def check(name, fn):
        """Run exercise ``name``'s visible and held-out cases on ``fn``; record a signed verdict; show the visible."""
        caller = getframe(1)
        ok = call_site_ok(name, caller) and not state["active"] and name in makers
        del caller
        if not ok:
            return private_check(name, fn)
        with lock:
            state["active"] = True
            t0 = clock()
            try:
                fail_if_changed(name)
                code = getattr(fn, "__code__", None)
                if code is not None and os.path.realpath(code.co_filename).startswith(str(PACKAGE_DIR) + os.sep):
                    msg = f"{name}: the function checked is pgcourse's own code, not yours"
                    record(name, "fail", msg)
                    raise ExerciseFailed(msg)

                def learner(*args, **kwargs):
                    return plain(fn(*args, **kwargs))

                try:
                    visible = evaluate(name, learner, cases=draw(makers[name], public_seed))
                    held = None
                    if visible.attempted and name in held_seeds:      # silently: the cell shows the visible only
                        with quiet_out(StringIO()), quiet_err(StringIO()):
                            held = evaluate(name, learner, cases=draw(makers[name], held_seeds[name]))
                except KeyboardInterrupt:
                    record(name, "timeout", f"{name}: interrupted (the cell ran past the per-cell timeout)")
                    raise
                except BaseException as err:
                    record(name, "fail", f"{name}: {type(err).__name__}: {err}")
                    raise
                fail_if_changed(name)
                record(name, **summary(name, visible, held), seconds=round(clock() - t0, 4))
                last[name] = visible.passed
                announce(visible)                          # prints the ✓/○ line, or raises ExerciseFailed
            finally:
                state["active"] = False

    own_code = {check.__code__, fail_if_changed.__code__, _kernel_startup.__code__}
    check.__module__, check.__qualname__ = "pgcourse.grading", "check"
    public.check = check
    take_snapshot()
    record("", "ready", points={k: table[k].points for k in sources if k in table})


_STARTUP = """\
def __pgcourse_grade_start():
    from pgcourse.grading.recorder import _kernel_startup
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
