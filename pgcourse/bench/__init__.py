"""Benchmarks: ``python -m pgcourse bench NAME [--json]``.

Each benchmark is a module ``pgcourse.bench.NAME`` with a function ``run(quick: bool) -> dict``
that prints its figures as it goes and returns them (numbers only). ``--json`` prints the dict
as one JSON object on the last line.
"""
from __future__ import annotations

import argparse
import importlib
import json
import pkgutil


def available() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", choices=available(), help="which benchmark")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON on the last line")
    parser.add_argument("--quick", action="store_true", help="a smaller, faster run (for smoke tests)")


def main(args: argparse.Namespace) -> int:
    result = importlib.import_module(f"{__name__}.{args.name}").run(quick=args.quick)
    if args.json:
        print(json.dumps(result, sort_keys=True))
    return 0
