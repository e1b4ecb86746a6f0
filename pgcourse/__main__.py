"""The command line: ``python -m pgcourse {student,grade,autograder,figures,bench} ...``.

Each sub-command lives in its own module (``pgcourse.student``, ``pgcourse.grading.grade``,
``pgcourse.grading.autograder``, ``pgcourse.figures``, ``pgcourse.bench``) and exposes
``add_arguments(parser)`` and ``main(args)``.
"""
from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "student": ("pgcourse.student", "write the student notebooks from notebooks/solutions (--check: report drift)"),
    "grade": ("pgcourse.grading.grade", "grade submitted notebooks with nbval; exit 0 only if every exercise passes"),
    "autograder": ("pgcourse.grading.autograder", "write a Gradescope autograder zip for one notebook"),
    "figures": ("pgcourse.figures", "regenerate every figure in figures/"),
    "bench": ("pgcourse.bench", "run a benchmark and print its figures"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s module is imported (its arguments are needed), so help is quick."""
    parser = argparse.ArgumentParser(prog="python -m pgcourse", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        if name == command:
            importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(command).parse_args(argv)
    return int(importlib.import_module(args._module).main(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
