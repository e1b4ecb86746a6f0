"""Interactive widgets for the notebooks, and a registry that ``bench widgets`` times.

A widget is a pure drawing function ``draw(**params) -> matplotlib.figure.Figure`` plus its
sliders. Register it with :func:`register` (in a module ``pgcourse.widgets.nbNN``) and show it in
a notebook with :func:`show` (tag that cell ``nbval-ignore-output``: widget ids change every run). The first slider of a
notebook's variance widget is what the browser test moves.
"""
from __future__ import annotations

import html
import importlib
import io
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


def render_png(fig) -> bytes:
    """The PNG the widget shows for ``fig``: one Agg render at the figure's own dpi (the figures use a
    constrained layout, so no second "tight" pass is needed)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi)
    return buf.getvalue()


def _error_html(err: Exception) -> str:
    return (f"<span style='color:#b00020'>could not draw: {html.escape(type(err).__name__)}: "
            f"{html.escape(str(err))}</span>")


def show(name: str, **overrides) -> None:
    """Display widget ``name``: its sliders and a picture redrawn in place whenever one moves.

    The picture is an ``ipywidgets.Image`` whose PNG bytes are replaced on each move: the browser swaps
    one image, with no output area to clear and re-render, so a move answers in about the time of the draw.
    Redraws run single-threaded: a redraw is many small tensor ops, which a second thread only slows down
    (and on a busy machine, by a lot). A draw that raises shows its message under the picture. Returns None,
    so the widget is shown once.
    """
    from ..device import torch_threads

    import ipywidgets as W
    from IPython.display import display

    table = widgets()
    if name not in table:
        raise KeyError(f"no widget named {name!r}; known: {sorted(table)}")
    w = table[name]
    unknown = set(overrides) - set(w.sliders)
    if unknown:
        raise TypeError(f"widget {name!r} has no slider(s) {sorted(unknown)}; its sliders: {list(w.sliders)}")
    controls = {k: _control(k, spec) for k, spec in w.sliders.items()}
    for k, v in overrides.items():
        controls[k].value = v
    image = W.Image(format="png")
    image.add_class("pgcourse-picture")
    status = W.HTML("")

    def redraw(*_):
        params = {k: c.value for k, c in controls.items()}
        try:
            with torch_threads(1):
                png = render_png(w.draw(**params))
        except Exception as err:      # shown to the learner under the picture, not swallowed
            status.value = _error_html(err)
            return
        image.value = png
        status.value = ""

    for c in controls.values():
        c.observe(redraw, names="value")
    redraw()
    ui = W.VBox([*controls.values(), image, status])
    ui.add_class(f"pgcourse-widget-{name.replace('.', '-')}")
    display(ui)


matplotlib.rcParams.setdefault("figure.dpi", 100)
