"""Interactive widgets for the notebooks, and a registry that ``bench widgets`` times.

A widget is a pure drawing function ``draw(**params) -> matplotlib.figure.Figure`` plus its
sliders. Register it with :func:`register` (in a module ``pgcourse.widgets.nbNN``) and show it in
a notebook with :func:`show` (mark that cell ``# NBVAL_IGNORE_OUTPUT``). The first slider of a
notebook's variance widget is what the browser test moves.
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import Any, Callable

import matplotlib

from ..plots import new_figure  # noqa: F401  (the widget modules draw with it)

_REGISTRY: dict[str, "Widget"] = {}


@dataclass
class Widget:
    name: str
    draw: Callable[..., Any]
    sliders: dict[str, Any]      # param -> ipywidgets control factory args, see show()
    defaults: dict[str, Any]


def register(name: str, **sliders):
    """Register ``draw`` under ``name``. Each slider is ``param=(kind, default, min, max, step)`` with kind
    ``"int"``, ``"float"``, ``"log"`` (FloatLogSlider, min/max are base-10 exponents) or
    ``param=("choice", default, [options])``."""
    def deco(draw):
        if name in _REGISTRY:
            raise ValueError(f"widget {name!r} is registered twice")
        defaults = {k: v[1] for k, v in sliders.items()}
        _REGISTRY[name] = Widget(name, draw, sliders, defaults)
        return draw
    return deco


def widgets() -> dict[str, Widget]:
    for m in pkgutil.iter_modules(__path__):
        if m.name.startswith("nb"):
            importlib.import_module(f"{__name__}.{m.name}")
    return dict(_REGISTRY)


def _control(param: str, spec):
    import ipywidgets as W
    kind = spec[0]
    style = {"description_width": "initial"}
    if kind == "int":
        _, v, lo, hi, step = spec
        return W.IntSlider(value=v, min=lo, max=hi, step=step, description=param, continuous_update=False, style=style)
    if kind == "float":
        _, v, lo, hi, step = spec
        return W.FloatSlider(value=v, min=lo, max=hi, step=step, description=param, continuous_update=False,
                             style=style)
    if kind == "log":
        _, v, lo, hi, step = spec
        return W.FloatLogSlider(value=v, base=10, min=lo, max=hi, step=step, description=param,
                                continuous_update=False, style=style)
    if kind == "choice":
        _, v, options = spec
        return W.Dropdown(value=v, options=options, description=param, style=style)
    raise ValueError(f"slider kind must be int, float, log or choice, got {kind!r}")


def show(name: str, **overrides) -> None:
    """Display widget ``name``: its sliders and a plot redrawn whenever one moves.

    Redraws run single-threaded: a redraw is many small tensor ops, which a second thread only
    slows down (and on a busy machine, by a lot). Returns None, so the widget is shown once.
    """
    from ..device import torch_threads

    import ipywidgets as W
    from IPython.display import display

    w = widgets()[name]
    controls = {k: _control(k, spec) for k, spec in w.sliders.items()}
    for k, v in overrides.items():
        controls[k].value = v

    def redraw(**params):
        with torch_threads(1):
            fig = w.draw(**params)
        display(fig)

    ui = W.interactive(redraw, **controls)
    ui.add_class(f"pgcourse-widget-{name.replace('.', '-')}")
    display(ui)


matplotlib.rcParams.setdefault("figure.dpi", 100)
