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


def _encode(canvas, fig) -> bytes:
    from matplotlib.image import imsave
    buf = io.BytesIO()
    imsave(buf, canvas.buffer_rgba(), format="png", dpi=fig.dpi, pil_kwargs={"compress_level": 1})
    return buf.getvalue()


def render_png(fig) -> bytes:
    """The PNG of ``fig``: one Agg render at the figure's own dpi, fast zlib (the figures use a constrained
    layout, so no second "tight" pass is needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return _encode(canvas, fig)


class Redrawer:
    """Draws one widget's pictures as PNG bytes, fast: after the first picture it keeps that picture's axes
    positions and skips the constrained-layout pass (most of a redraw's time goes to measuring text), as long
    as everything drawn still fits inside the figure; where it would not (longer tick labels, say), it lays
    the figure out afresh and keeps the new positions."""

    def __init__(self, widget: "Widget"):
        self.widget = widget
        self._layout: tuple | None = None         # (number of axes, size in inches), axes positions

    def png(self, **params) -> bytes:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        fig = self.widget.draw(**params)
        key = (len(fig.axes), tuple(round(float(x), 3) for x in fig.get_size_inches()))
        if self._layout is not None and self._layout[0] == key and fig.get_layout_engine() is not None:
            fig.set_layout_engine("none")
            for ax, pos in zip(fig.axes, self._layout[1]):
                ax.set_position(pos)
            canvas = FigureCanvasAgg(fig)
            canvas.draw()
            drawn = fig.get_tightbbox(canvas.get_renderer())
            w, h = fig.get_size_inches()
            if drawn.x0 >= -0.01 and drawn.y0 >= -0.01 and drawn.x1 <= w + 0.01 and drawn.y1 <= h + 0.01:
                return _encode(canvas, fig)
            fig = self.widget.draw(**params)          # it would clip: lay it out afresh
        canvas = FigureCanvasAgg(fig)
        canvas.draw()
        if fig.get_layout_engine() is not None:
            self._layout = (key, [ax.get_position() for ax in fig.axes])
        return _encode(canvas, fig)


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

    pictures = Redrawer(w)

    def redraw(*_):
        params = {k: c.value for k, c in controls.items()}
        try:
            with torch_threads(1):
                png = pictures.png(**params)
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
