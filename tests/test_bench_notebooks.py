"""``bench notebooks`` times a notebook in a fresh kernel, on a copy (the notebook itself is not written)."""
import nbformat

from pgcourse.bench.notebooks import time_notebook


def test_time_notebook_runs_a_copy_and_counts_kernel_cpu(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("s = 0\nfor i in range(3_000_000):\n    s += i\nprint(s)")]
    path = tmp_path / "01_x.ipynb"
    nbformat.write(nb, path)
    before = path.read_bytes()
    r = time_notebook(path)
    assert path.read_bytes() == before
    assert r["wall_s"] >= r["kernel_cpu_s"] * 0.5 > 0     # the loop's CPU time is the kernel's, and is counted
