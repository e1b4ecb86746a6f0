"""``python -m pgcourse bench widgets``: each widget's redraw time at its default settings.

For every registered widget (:func:`pgcourse.widgets.widgets`) it times ``draw(**defaults)`` (the
figure) and the full redraw a learner waits for: the draw plus rendering the figure to the PNG bytes
:func:`pgcourse.widgets.show` sends to the browser, at the default settings and with the
first slider moved to values not drawn yet (a widget may cache what it drew). Medians of several
runs after a first, cold call (which may fill caches, and is printed too). Budget: a redraw within
250 ms on a 2-core CPU.
"""
from __future__ import annotations

import statistics
import time

BUDGET_MS = 250.0


from ..widgets import Redrawer  # noqa: E402  (what show() does on a move)


def _ms(fn) -> tuple[float, float, object]:
    """Wall and CPU (this process, all threads) milliseconds of ``fn()``, and its result."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return (time.perf_counter() - t0) * 1e3, (time.process_time() - c0) * 1e3, out


def moved_params(widget, k: int) -> dict:
    """The defaults with the first slider moved ``k`` steps (down where up leaves its range; other
    option for a choice): a setting the widget has not drawn yet, as after a learner moves it."""
    params = dict(widget.defaults)
    name, spec = next(iter(widget.sliders.items()))
    if spec[0] == "choice":
        options = list(spec[2])
        params[name] = options[(options.index(spec[1]) + k) % len(options)]
        return params
    kind, value, lo, hi, step = spec
    if kind == "log":                                    # lo, hi, step are base-10 exponents
        import math
        e = math.log10(value)
        e = e + k * step if e + k * step <= hi + 1e-9 else e - k * step
        params[name] = 10 ** max(lo, e)
        return params
    v = value + k * step if value + k * step <= hi else value - k * step
    params[name] = type(value)(min(max(v, lo), hi)) if kind == "int" else float(min(max(v, lo), hi))
    return params


def time_widget(widget, repeat: int = 5) -> dict:
    """Cold, draw-only and full-redraw times of ``widget`` at its defaults, in ms; the redraw is what
    :func:`pgcourse.widgets.show` does on a move (:class:`pgcourse.widgets.Redrawer`: draw + PNG).

    ``redraw_cpu_ms`` is the CPU time of the redraw: on a busy machine it stays near what an idle one
    would take, where the wall time grows."""
    pictures = Redrawer(widget)
    cold, _, _ = _ms(lambda: pictures.png(**widget.defaults))
    draws, redraws, cpus = [], [], []
    for _ in range(repeat):
        t, _, _ = _ms(lambda: widget.draw(**widget.defaults))
        t2, c2, png = _ms(lambda: pictures.png(**widget.defaults))
        draws.append(t)
        redraws.append(t2)
        cpus.append(c2)
    moved = []
    for k in range(1, repeat + 1):
        t, _, _ = _ms(lambda: pictures.png(**moved_params(widget, k)))
        moved.append(t)
    return {"cold_ms": round(cold, 1), "draw_ms": round(statistics.median(draws), 1),
            "redraw_ms": round(statistics.median(redraws), 1), "redraw_cpu_ms": round(statistics.median(cpus), 1),
            "moved_ms": round(statistics.median(moved), 1), "png_bytes": len(png)}


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
    print(f"{'widget':<{width}}  {'first':>8}  {'draw':>8}  {'redraw':>8}  {'cpu':>8}  {'moved':>8}")
    for name, w in table.items():
        r = time_widget(w, repeat=2 if quick else 5)
        verdict = "ok" if max(r["redraw_ms"], r["moved_ms"]) <= BUDGET_MS else "OVER BUDGET"
        print(f"{name:<{width}}  {r['cold_ms']:>6.0f}ms  {r['draw_ms']:>6.0f}ms  {r['redraw_ms']:>6.0f}ms  "
              f"{r['redraw_cpu_ms']:>6.0f}ms  {r['moved_ms']:>6.0f}ms  {verdict}")
        results[name] = r
    worst = max(r["redraw_ms"] for r in results.values())
    worst_moved = max(r["moved_ms"] for r in results.values())
    results["max_redraw_ms"], results["max_moved_ms"] = worst, worst_moved
    print("first: the first draw (fills caches, lays the figure out); draw: draw(**defaults); redraw: draw + PNG at\n"
          "the defaults, as show() does it; "
          "cpu: the redraw's CPU time; moved: draw + PNG with the first slider moved to a value not drawn yet "
          "(medians)")
    print(f"slowest redraw at the defaults: {worst:.0f} ms, after a move: {worst_moved:.0f} ms "
          f"(budget {BUDGET_MS:.0f} ms)")
    return results
