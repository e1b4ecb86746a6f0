"""The lecturers' tools: ``python -m pgcourse figures`` (every figure registered, built by its notebook's code,
deterministic, in figures/ and listed in the README) and ``python -m pgcourse bench widgets``."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from pgcourse.figures import FIGURES_DIR, registry

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = ROOT / "notebooks" / "solutions"
FIGS = registry()
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def notebook_of(figure: str) -> Path | None:
    """The solution notebook a figure comes from (its NN_ prefix)."""
    hits = sorted(SOLUTIONS.glob(figure[:3] + "*.ipynb"))
    return hits[0] if hits else None


def figures_cli(out: Path, *names: str) -> dict[str, bytes]:
    """Run the real command in a fresh interpreter; the bytes of what it wrote."""
    proc = subprocess.run([sys.executable, "-m", "pgcourse", "figures", "--out", str(out), *names],
                          capture_output=True, text=True, cwd=ROOT, timeout=1800)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return {p.name: p.read_bytes() for p in sorted(out.glob("*.png"))}


def test_figures_are_registered_with_notebook_names():
    assert FIGS, "no figures registered"
    for name, make in FIGS.items():
        assert re.fullmatch(r"\d\d_[a-z0-9_]+\.png", name), name
        assert callable(make)


@pytest.mark.parametrize("name", sorted(FIGS))
def test_each_notebook_shows_its_figure_with_the_same_function(name):
    nb_path = notebook_of(name)
    if nb_path is None:
        pytest.skip(f"notebook {name[:2]} not written yet")
    nb = nbformat.read(nb_path, as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert re.search(rf"\b{re.escape(FIGS[name].__name__)}\s*\(", code), \
        f"{nb_path.name} never calls {FIGS[name].__module__}.{FIGS[name].__name__}() (the code of {name})"


def test_the_first_figure_is_the_same_bytes_twice(tmp_path):
    first = next(iter(FIGS))
    a, b = figures_cli(tmp_path / "a", first), figures_cli(tmp_path / "b", first)
    assert list(a) == [first] and a[first].startswith(PNG_MAGIC)
    assert a == b, f"{first} differs between two runs"


@pytest.mark.slow
def test_every_figure_builds_and_is_deterministic(tmp_path):
    a, b = figures_cli(tmp_path / "a"), figures_cli(tmp_path / "b")
    assert sorted(a) == sorted(FIGS)
    for name, data in a.items():
        assert data.startswith(PNG_MAGIC) and len(data) > 5000, f"{name} looks empty"
    assert [n for n in a if a[n] != b[n]] == [], "these figures differ between two runs"


def test_figures_folder_holds_every_figure():
    missing = [n for n in FIGS if not (FIGURES_DIR / n).exists()]
    assert not missing, f"not in figures/: {missing}; run: python -m pgcourse figures"


def test_readme_lists_every_figure_for_lecturers():
    text = (ROOT / "README.md").read_text()
    section = text.split("## For lecturers", 1)[-1].split("\n## ", 1)[0]
    missing = [n for n in FIGS if n not in section]
    assert not missing, f"README 'For lecturers' does not list {missing}"


@pytest.mark.slow
def test_bench_widgets_times_every_widget_at_its_defaults(capsys):
    from pgcourse.bench import widgets as bench
    from pgcourse.widgets import widgets

    result = bench.run(quick=True)
    out = capsys.readouterr().out
    for name in widgets():
        r = result[name]
        assert 0 < r["draw_ms"] <= r["redraw_ms"] and r["redraw_cpu_ms"] > 0 and r["png_bytes"] > 1000, (name, r)
        assert r["moved_ms"] > 0, (name, r)
        assert name in out
    assert result["max_redraw_ms"] == max(result[n]["redraw_ms"] for n in widgets())
    for name, w in widgets().items():      # the moved setting is a new, valid value of the first slider
        first, spec = next(iter(w.sliders.items()))
        moved = bench.moved_params(w, 1)[first]
        assert moved != w.defaults[first]
        if spec[0] != "choice":
            lo, hi = (10 ** spec[2], 10 ** spec[3]) if spec[0] == "log" else (spec[2], spec[3])
            assert lo - 1e-9 <= moved <= hi + 1e-9, (name, moved)
    assert "budget 250 ms" in out


def test_readme_names_real_functions_for_every_figure():
    """Each row of the lecturers' table names the function that makes it, and that function exists."""
    import importlib
    text = (ROOT / "README.md").read_text()
    section = text.split("## For lecturers", 1)[-1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(\d\d_[a-z0-9_]+\.png)` \|.*\| `(pgcourse\.[\w.]+)` \|$", section, re.M)
    assert sorted(n for n, _ in rows) == sorted(FIGS), "the table's figures are not exactly the registered ones"
    for name, dotted in rows:
        module, attr = dotted.rsplit(".", 1)
        assert callable(getattr(importlib.import_module(module), attr, None)), f"{name}: {dotted} does not exist"
