"""``python -m pgcourse bench notebooks``: each solution notebook run top to bottom, timed.

Each notebook of ``notebooks/solutions`` is executed in a fresh kernel (nbclient, a temporary copy, so
nothing in the repository changes), one after the other. Printed per notebook: the wall time, and the
CPU time of its kernel process (user + system), which on a busy machine stays near what an idle one
takes where the wall time grows. Budgets: each notebook ≤ 60 s, the whole course ≤ 5 min on a 2-core CPU.
``--quick`` runs only the first notebook.
"""
from __future__ import annotations

import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
SOLUTIONS = ROOT / "notebooks" / "solutions"
NOTEBOOK_BUDGET_S, COURSE_BUDGET_S = 60.0, 300.0


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def time_notebook(path: Path, timeout: float = 600) -> dict:
    """Execute ``path`` in a fresh kernel in a temporary folder: wall and kernel CPU seconds."""
    import nbformat
    from nbclient import NotebookClient

    tmp = Path(tempfile.mkdtemp(prefix="pgcourse-bench-nb-"))
    try:
        copy = tmp / path.name
        shutil.copy(path, copy)
        nb = nbformat.read(copy, as_version=4)
        env_before = os.environ.get("MPLBACKEND")
        os.environ.setdefault("MPLBACKEND", "Agg")
        cpu0, t0 = _children_cpu(), time.perf_counter()
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(tmp)}})
        client.execute()                  # the kernel is shut down (and reaped) at the end
        wall, cpu = time.perf_counter() - t0, _children_cpu() - cpu0
        if env_before is None:
            os.environ.pop("MPLBACKEND", None)
        return {"wall_s": round(wall, 1), "kernel_cpu_s": round(cpu, 1)}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(quick: bool = False) -> dict:
    paths = sorted(SOLUTIONS.glob("[0-9][0-9]_*.ipynb"))[: 1 if quick else None]
    results: dict = {}
    width = max((len(p.stem) for p in paths), default=8)
    print(f"{'notebook':<{width}}  {'wall':>8}  {'cpu':>8}")
    for p in paths:
        r = time_notebook(p)
        verdict = "ok" if r["kernel_cpu_s"] <= NOTEBOOK_BUDGET_S else "OVER BUDGET"
        print(f"{p.stem:<{width}}  {r['wall_s']:>7.1f}s  {r['kernel_cpu_s']:>7.1f}s  {verdict}", flush=True)
        results[p.stem] = r
    total_wall = sum(r["wall_s"] for r in results.values())
    total_cpu = sum(r["kernel_cpu_s"] for r in results.values())
    results["total_wall_s"], results["total_kernel_cpu_s"] = round(total_wall, 1), round(total_cpu, 1)
    print(f"whole course: {total_wall:.0f} s wall, {total_cpu:.0f} s kernel CPU (budgets: {NOTEBOOK_BUDGET_S:.0f} s "
          f"per notebook, {COURSE_BUDGET_S:.0f} s in all, on 2 cores; cpu: the kernel's user + system time)")
    return results
