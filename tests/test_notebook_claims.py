"""Every claim of the theory is a checked ``claim(...)`` line in the notebook that teaches it.

Reads the executed solution notebooks (nbval re-runs them and compares their outputs, so the saved
outputs are what the code prints): no claim line may read ✗, and each claim of the course
(issue "Every claim true, checked and shown") must have a ✓ line in its notebook.
"""
from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

SOLUTIONS = Path(__file__).resolve().parent.parent / "notebooks" / "solutions"
CLAIM = re.compile(r"^([✓✗]) claim: (.+?) — (.+)$", re.M)

# (notebook prefix, what the course claims, a pattern its statement must match; case-insensitive)
REQUIRED = [
    ("01", "REINFORCE is unbiased", r"REINFORCE.*\bunbiased"),
    ("01", "it needs no model of the dynamics", r"no model of the dynamics"),
    ("01", "the full return's variance grows with the horizon", r"variance.*grows with the horizon"),
    ("01", "and falls as 1/N with the batch size", r"falls as 1/N"),
    ("02", "reward-to-go is still unbiased", r"reward-to-go.*\bunbiased"),
    ("02", "reward-to-go lowers the variance", r"reward-to-go.*lowers the variance"),
    ("03", "an action-independent baseline adds no bias", r"action-independent baseline adds no bias"),
    ("03", "an action-dependent one does", r"action-dependent .*bias"),
    ("03", "the batch-mean baseline shrinks the gradient by 1 − 1/N", r"batch-mean baseline shrinks the gradient by 1 ?[−-] ?1/N"),
    ("03", "leave-one-out and the moving average do not", r"leave-one-out.*moving average.*\bnot\b"),
    ("03", "V(s) is a variance-reducing baseline", r"V\(s\).*(reduces|lowers) the variance"),
    ("04", "the sign of A = Q − V says better or worse than expected", r"sign of A"),
    ("04", "the six Ψ forms are unbiased with the exact V and Q", r"six Ψ.*unbiased"),
    ("04", "an approximate critic biases the TD residual", r"approximate critic biases the TD residual"),
    ("05", "stale samples bias the gradient", r"stale samples bias the gradient"),
    ("05", "clipping limits the update", r"clipping limits the update"),
]


def notebooks() -> list[Path]:
    return sorted(SOLUTIONS.glob("[0-9][0-9]_*.ipynb"))


def claim_lines(path: Path) -> list[tuple[str, str, str]]:
    nb = nbformat.read(path, as_version=4)
    out = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for o in cell.get("outputs", []):
            text = o.get("text", "") if o.get("output_type") == "stream" else ""
            if o.get("output_type") == "error":
                text = "\n".join(o.get("traceback", []))
            out += CLAIM.findall(text)
    return out


@pytest.mark.parametrize("path", notebooks(), ids=lambda p: p.stem)
def test_no_claim_fails(path):
    bad = [f"{s} — {e}" for mark, s, e in claim_lines(path) if mark == "✗"]
    assert not bad, f"{path.name}: claims that do not hold: {bad}"


@pytest.mark.parametrize("prefix,what,pattern", REQUIRED, ids=[r[1] for r in REQUIRED])
def test_every_claim_of_the_course_is_shown(prefix, what, pattern):
    hits = [p for p in notebooks() if p.name.startswith(prefix)]
    assert hits, f"no notebook {prefix}_*"
    statements = [s for mark, s, _ in claim_lines(hits[0]) if mark == "✓"]
    assert any(re.search(pattern, s, re.I) for s in statements), (
        f"{hits[0].name} has no ✓ claim line for: {what} (statement matching {pattern!r}); its claims: {statements}")


@pytest.mark.parametrize("path", notebooks(), ids=lambda p: p.stem)
def test_claims_carry_evidence(path):
    """A claim's evidence is computed numbers, not prose: it holds at least one digit."""
    for _, statement, evidence in claim_lines(path):
        assert re.search(r"\d", evidence), f"{path.name}: claim {statement!r} has no numbers in its evidence"


def test_the_collector_reads_claim_lines(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("claim(...)", outputs=[nbformat.v4.new_output(
        "stream", name="stdout", text="✓ claim: REINFORCE is unbiased — max |z| = 1.9\nother\n✗ claim: x — z = 9\n")])]
    p = tmp_path / "99_t.ipynb"
    nbformat.write(nb, p)
    assert claim_lines(p) == [("✓", "REINFORCE is unbiased", "max |z| = 1.9"), ("✗", "x", "z = 9")]
