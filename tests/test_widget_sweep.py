"""Every widget, at every slider's minimum, middle and maximum and every dropdown choice (the others at
their defaults): it draws without an error, and the picture differs from the one at the defaults.

A slider a lecturer can move must never break the widget (a ZeroDivisionError at one end of a range)
and must never do nothing visible (a slider whose effect the axis rescales away).
"""
from __future__ import annotations

import math

import pytest

from pgcourse.device import torch_threads
from pgcourse.widgets import render_png, widgets

TABLE = widgets()


def positions(spec) -> list:
    """The values a sweep visits: min, middle and max of a slider (on its step grid); every choice."""
    kind = spec[0]
    if kind == "choice":
        return list(spec[2])
    _, value, lo, hi, step = spec
    n = round((hi - lo) / step)
    mid = lo + (n // 2) * step
    if kind == "log":
        return [10 ** e for e in (lo, mid, hi)]
    if kind == "int":
        return [int(lo), int(mid), int(hi)]
    return [float(lo), float(round(mid, 10)), float(hi)]


def same_value(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


CASES = [(name, param, v) for name, w in TABLE.items() for param, spec in w.sliders.items()
         for v in positions(spec)]
_DEFAULT_PNG: dict[str, bytes] = {}


def default_png(name: str) -> bytes:
    if name not in _DEFAULT_PNG:
        with torch_threads(1):
            _DEFAULT_PNG[name] = render_png(TABLE[name].draw(**TABLE[name].defaults))
    return _DEFAULT_PNG[name]


def test_every_widget_has_sliders():
    assert TABLE, "no widgets registered"
    for name, w in TABLE.items():
        assert w.sliders, f"{name} has no slider"
        for param, spec in w.sliders.items():
            if spec[0] != "choice":
                _, value, lo, hi, step = spec
                assert lo <= (math.log10(value) if spec[0] == "log" else value) <= hi, (name, param)


@pytest.mark.parametrize("name,param,value", CASES, ids=[f"{n}-{p}={v:.4g}" if isinstance(v, float) else f"{n}-{p}={v}"
                                                          for n, p, v in CASES])
def test_slider_position_draws_and_changes_the_picture(name, param, value):
    w = TABLE[name]
    params = dict(w.defaults, **{param: value})
    with torch_threads(1):
        png = render_png(w.draw(**params))
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    if not same_value(value, w.defaults[param]):
        assert png != default_png(name), (f"{name}: moving {param} from {w.defaults[param]!r} to {value!r} "
                                          "leaves the picture unchanged")
