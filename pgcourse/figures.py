"""``python -m pgcourse figures``: regenerate every figure in ``figures/``, deterministically.

Each lesson module ``pgcourse.lessons.nbNN`` defines ``FIGURES = {"NN_name.png": make}`` where
``make()`` returns a matplotlib Figure built from seeded package code, the same figure its
notebook shows. PNGs are written without a timestamp or version in their metadata, so the same
code gives the same bytes.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
FIGURES_DIR = ROOT / "figures"
DPI = 110


def registry() -> dict[str, Callable]:
    """Every figure, by file name, in notebook order."""
    from . import lessons
    out: dict[str, Callable] = {}
    for m in sorted(pkgutil.iter_modules(lessons.__path__), key=lambda m: m.name):
        if m.name.startswith("nb"):
            figs = getattr(importlib.import_module(f"{lessons.__name__}.{m.name}"), "FIGURES", {})
            for name in figs:
                if name in out:
                    raise ValueError(f"figure {name!r} is defined twice")
            out.update(figs)
    return out


def save(fig, path: Path) -> None:
    """Save a figure as a PNG with no time-stamp or software metadata (same code, same bytes)."""
    fig.savefig(path, dpi=DPI, metadata={"Software": None})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("names", nargs="*", help="only these figures (file names); default: all")
    parser.add_argument("--out", default=str(FIGURES_DIR), help="folder to write to (default: figures/)")


def main(args: argparse.Namespace) -> int:
    import matplotlib
    matplotlib.use("Agg")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    figs = registry()
    unknown = set(args.names) - set(figs)
    if unknown:
        raise SystemExit(f"unknown figure(s): {sorted(unknown)}; known: {sorted(figs)}")
    for name, make in figs.items():
        if args.names and name not in args.names:
            continue
        save(make(), out / name)
        print(f"wrote {out / name}")
    return 0
