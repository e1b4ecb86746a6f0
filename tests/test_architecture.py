"""The house rules of the package, checked on its source: imports only go down the floors, and no
module is over ~400 lines.

Floors (COURSE.md, "Architecture"): 1 the math, 2 the methods, 3 the classroom. Inside the classroom,
``plots`` and ``claims`` are the ground, the lessons stand on them, widgets and figures use the
lessons, grading and the student tool come next, and the benchmarks and the command line are the roof.
A module may import from its own level or below, never above.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "pgcourse"
MAX_LINES = 400

LEVELS = {
    # floor 1: the math
    "__init__": 1.0, "stats": 1.0, "returns": 1.0, "mdp": 1.0, "policies": 1.0, "device": 1.0, "validate": 1.0,
    # floor 2: the methods
    "estimators": 2.0, "baselines": 2.0, "variance": 2.0, "rollout": 2.0, "train": 2.0, "ppo": 2.0,
    "grpo": 2.0, "tinylm": 2.0, "tokenizer": 2.0, "digitsort": 2.0, "kl": 2.0, "lm": 2.0, "tasks": 2.0, "transformer": 2.0,
    # floor 3: the classroom
    "plots": 3.0, "claims": 3.0,
    "lessons": 3.1,
    "widgets": 3.2, "figures": 3.2,
    "grading": 3.3, "student": 3.3,
    "bench": 3.4, "__main__": 3.4,
}


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def top(path: Path) -> str:
    """The top-level name under pgcourse/ a file belongs to (``lessons`` for lessons/nb04/plots.py)."""
    rel = path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py")


def dotted(path: Path) -> list[str]:
    rel = path.relative_to(PACKAGE).with_suffix("")
    parts = ["pgcourse", *rel.parts]
    return parts[:-1] if parts[-1] == "__init__" else parts


def imported_tops(path: Path) -> set[str]:
    """Every pgcourse top-level name this file imports, anywhere in it (function-level imports too)."""
    here = dotted(path)
    package = here if path.name == "__init__.py" else here[:-1]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name.split(".") for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                mod = base + (node.module.split(".") if node.module else [])
            else:
                mod = (node.module or "").split(".")
            names = [mod + [a.name] for a in node.names] if not node.module or len(mod) == 1 else [mod]
        else:
            continue
        for parts in names:
            if parts[0] == "pgcourse" and len(parts) > 1:
                out.add(parts[1])
    return out


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_only_go_down(path):
    me = top(path)
    assert me in LEVELS, f"pgcourse/{me} has no floor: add it to LEVELS (and to COURSE.md's architecture)"
    up = sorted(t for t in imported_tops(path) if t in LEVELS and LEVELS[t] > LEVELS[me])
    unknown = sorted(t for t in imported_tops(path) if t not in LEVELS)
    assert not unknown, f"{path.relative_to(PACKAGE)} imports pgcourse modules with no floor: {unknown}"
    assert not up, (f"{path.relative_to(PACKAGE)} (level {LEVELS[me]}) imports from a higher floor: "
                    + ", ".join(f"{t} ({LEVELS[t]})" for t in up))


def test_lessons_never_use_widgets_or_grading():
    for path in (PACKAGE / "lessons").rglob("*.py"):
        bad = imported_tops(path) & {"widgets", "grading", "figures", "student", "bench", "__main__"}
        assert not bad, f"{path.relative_to(PACKAGE)} imports {sorted(bad)}"


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_size(path):
    n = len(path.read_text(encoding="utf-8").splitlines())
    assert n <= MAX_LINES, f"{path.relative_to(PACKAGE)} has {n} lines (at most {MAX_LINES}): split it by job"


def test_the_checker_sees_imports():
    """The import scanner itself: relative, absolute and function-level imports are all found."""
    assert {"variance", "mdp", "plots"} <= imported_tops(PACKAGE / "lessons" / "nb01.py")
    assert "lessons" in imported_tops(PACKAGE / "widgets" / "nb03.py")
    assert "lessons" in imported_tops(PACKAGE / "figures.py")
