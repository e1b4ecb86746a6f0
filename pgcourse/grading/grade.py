"""``python -m pgcourse grade SUBMISSION.ipynb...``: grade learners' notebooks with nbval.

(Being built under issue 5: copy to a temporary folder, restore every check cell from the
solution notebook, run nbval with a per-cell timeout, print a table and write a gradebook.)
"""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("submissions", nargs="+", help="submitted notebooks or folders of them")


def main(args: argparse.Namespace) -> int:
    raise SystemExit("grading is not implemented yet")
