"""``python -m pgcourse bench widgets``: each widget's redraw time at its default settings.

For every registered widget (:func:`pgcourse.widgets.widgets`) it times ``draw(**defaults)`` (the
figure) and the full redraw a learner waits for after moving a slider: the draw plus rendering the
figure to PNG bytes as the notebook's inline backend does (``bbox_inches="tight"``). Medians of
several runs after a first, cold call (which may fill caches, and is printed too). Budget: a redraw
within 250 ms on a 2-core CPU.
"""
from __future__ import annotations

import io
import statistics
import time

BUDGET_MS = 250.0


def render_png(fig) -> bytes:
    """The PNG a notebook shows for ``fig`` (IPython's inline formatter where there is one)."""
    try:
        from IPython.core.pylabtools import print_figure
        return print_figure(fig, "png", bbox_inches="tight", base64=False)
    except ImportError:  # pragma: no cover - IPython is a dependency of the notebooks
        buf = io.BytesIO()
        fig.savefig(buf, format="png", bbox_inches="tight")
        return buf.getvalue()


def _ms(fn) -> tuple[float, float, object]:
    """Wall and CPU (this process, all threads) milliseconds of ``fn()``, and its result."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return (time.perf_counter() - t0) * 1e3, (time.process_time() - c0) * 1e3, out


def time_widget(widget, repeat: int = 5) -> dict:
    """Cold, draw-only and full-redraw (draw + PNG) times of ``widget`` at its defaults, in ms.

    ``redraw_cpu_ms`` is the CPU time of the redraw: on a busy machine it stays near what an idle one
    would take, where the wall time grows."""
    cold, _, fig = _ms(lambda: widget.draw(**widget.defaults))
    render_png(fig)
    draws, redraws, cpus = [], [], []
    for _ in range(repeat):
        t, c, fig = _ms(lambda: widget.draw(**widget.defaults))
        t2, c2, png = _ms(lambda: render_png(fig))
        draws.append(t)
        redraws.append(t + t2)
        cpus.append(c + c2)
    return {"cold_ms": round(cold, 1), "draw_ms": round(statistics.median(draws), 1),
            "redraw_ms": round(statistics.median(redraws), 1), "redraw_cpu_ms": round(statistics.median(cpus), 1),
            "png_bytes": len(png)}


def run(quick: bool = False) -> dict:
    import matplotlib
    matplotlib.use("Agg")
    from ..widgets import widgets

    table = widgets()
    results: dict = {}
    if not table:
        print("no widgets registered")
        return results
    width = max(len(n) for n in table)
    print(f"{'widget':<{width}}  {'first':>8}  {'draw':>8}  {'redraw':>8}  {'cpu':>8}  "
          f"(redraw = draw + PNG, median; cpu = its CPU time; budget {BUDGET_MS:.0f} ms)")
    for name, w in table.items():
        r = time_widget(w, repeat=2 if quick else 5)
        verdict = "ok" if r["redraw_ms"] <= BUDGET_MS else "OVER BUDGET"
        print(f"{name:<{width}}  {r['cold_ms']:>6.0f}ms  {r['draw_ms']:>6.0f}ms  {r['redraw_ms']:>6.0f}ms  "
              f"{r['redraw_cpu_ms']:>6.0f}ms  {verdict}")
        results[name] = r
    worst = max(r["redraw_ms"] for r in results.values())
    results["max_redraw_ms"] = worst
    print(f"slowest redraw: {worst:.0f} ms (budget {BUDGET_MS:.0f} ms)")
    return results
