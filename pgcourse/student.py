"""Write the student notebooks from the solution notebooks (the one source).

In each code cell of ``notebooks/solutions/NN_*.ipynb`` a block between ``### BEGIN SOLUTION``
and ``### END SOLUTION`` becomes ``raise NotImplementedError(...)`` (same indentation); such
exercise cells and their check cells (a code cell calling ``check("name", fn)``) lose their
outputs, so no verdict shows before the learner works; every other cell keeps its outputs so that a
learner sees what to expect. The student notebook records a hash of what was written, so a notebook a learner has
edited since is never overwritten without ``--force``. ``--check`` only reports drift.

Exercises must be function bodies (the block indented inside a ``def``): then the student's
cell still runs, the check cell below reports "not attempted", and Run All goes on.
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import json
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = ROOT / "notebooks" / "solutions"
STUDENT = ROOT / "notebooks"
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
STUB = 'raise NotImplementedError("Exercise: replace this line with your code")'
_BLOCK = re.compile(r"^([ \t]*)" + re.escape(BEGIN) + r"[^\n]*\n.*?^[ \t]*" + re.escape(END) + r"[^\n]*$",
                    re.S | re.M)


_CHECK_CALL = re.compile(r"""(^|\n)\s*check\(\s*["'][^"']+["']\s*,""")


# A cell that feeds the learner's function onward prints which one it uses (grading.yours_or_reference). In the
# solution run the check passed; a learner who has not worked yet is told the reference is used instead.
_YOURS = re.compile(r"^using your (\S+) \(its check (\S+) passed\)$", re.M)
_REFERENCE = r"using pgcourse's reference for \2 (your version has not passed its check yet)"


def as_not_yet_attempted(text: str) -> str:
    """A saved output as a learner who has not solved the exercises sees it (see ``_YOURS``)."""
    return _YOURS.sub(_REFERENCE, text)


def is_exercise(cell) -> bool:
    return cell.cell_type == "code" and BEGIN in cell.source


def is_check(cell) -> bool:
    """A check cell: a code cell that calls ``check("name", fn)`` (or is tagged ``check``)."""
    return cell.cell_type == "code" and ("check" in cell.metadata.get("tags", []) or bool(_CHECK_CALL.search(cell.source)))


def strip_solutions(source: str, where: str = "cell") -> str:
    """Replace every solution block by a ``raise NotImplementedError`` at the block's indentation."""
    if source.count(BEGIN) != source.count(END):
        raise ValueError(f"{where}: unbalanced {BEGIN!r} / {END!r}")

    def repl(m: re.Match) -> str:
        indent = m.group(1)
        if not indent:
            raise ValueError(f"{where}: a solution block must be indented inside a def, so the student's "
                             "cell still runs; found one at the top level")
        return indent + STUB

    return _BLOCK.sub(repl, source)


def _content_hash(nb) -> str:
    cells = [{"type": c.cell_type, "source": c.source, "outputs": c.get("outputs", [])} for c in nb.cells]
    return hashlib.sha256(json.dumps(cells, sort_keys=True).encode()).hexdigest()[:16]


def make_student(solution, source_name: str = "") -> nbformat.NotebookNode:
    """The student version of a solution notebook (a new notebook; the input is unchanged)."""
    nb = copy.deepcopy(solution)
    for i, cell in enumerate(nb.cells):
        tags = list(cell.metadata.get("tags", []))
        if is_exercise(cell):
            cell.source = strip_solutions(cell.source, f"cell {i}")
            cell.outputs, cell.execution_count = [], None
            if "exercise" not in tags:
                tags.append("exercise")
        elif is_check(cell):
            cell.outputs, cell.execution_count = [], None
        elif cell.cell_type == "code":
            for out in cell.get("outputs", []):
                if out.get("output_type") == "stream":
                    out["text"] = as_not_yet_attempted(out.get("text", ""))
        if tags:
            cell.metadata["tags"] = tags
    nb.metadata["pgcourse"] = {"generated_from": f"solutions/{source_name}", "content_hash": _content_hash(nb)}
    return nb


def dumps(nb) -> str:
    return nbformat.writes(nb, version=4) + "\n"


def learner_edited(path: Path) -> bool:
    """True when the student notebook at ``path`` differs from what this tool last wrote there."""
    nb = nbformat.read(path, as_version=4)
    recorded = nb.metadata.get("pgcourse", {}).get("content_hash")
    return recorded is None or recorded != _content_hash(nb)


def solution_paths() -> list[Path]:
    return sorted(SOLUTIONS.glob("[0-9][0-9]_*.ipynb"))


def render(path: Path) -> str:
    return dumps(make_student(nbformat.read(path, as_version=4), path.name))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--check", action="store_true", help="only report student notebooks that are out of date")
    parser.add_argument("--force", action="store_true", help="overwrite student notebooks a learner has edited")


def main(args: argparse.Namespace) -> int:
    drift = []
    for path in solution_paths():
        target = STUDENT / path.name
        text = render(path)
        current = target.read_text() if target.exists() else None
        if current == text:
            continue
        if args.check:
            drift.append(target)
            print(f"out of date: {target.relative_to(ROOT)}")
            continue
        if current is not None and learner_edited(target) and not args.force:
            print(f"skipped {target.relative_to(ROOT)}: edited since it was written (use --force to overwrite)")
            drift.append(target)
            continue
        target.write_text(text)
        print(f"wrote {target.relative_to(ROOT)}")
    if args.check:
        print("student notebooks are up to date" if not drift else f"{len(drift)} student notebook(s) out of date; "
              "run: python -m pgcourse student")
    return 1 if drift else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    sys.exit(main(parser.parse_args()))
