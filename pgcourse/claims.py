"""Claims: every statement of the theory that a notebook measures is printed by :func:`claim`.

``claim(statement, holds, evidence)`` prints one line::

    ✓ claim: <statement> — <evidence>

and when ``holds`` is false it prints ``✗ claim: …`` and raises :class:`ClaimFailed`, so Run All and
nbval stop at a claim the numbers do not carry. The evidence is computed in the cell (the statistic,
its standard error, the seeds, and what the statistic is worth under "no effect"), so a notebook's
prose never types a measured number: it points at the claim line.
"""
from __future__ import annotations

import numbers

__all__ = ["ClaimFailed", "claim"]

PASS, FAIL = "✓", "✗"


class ClaimFailed(AssertionError):
    """A claim of the course does not hold on the numbers measured."""


def _truth(holds) -> bool:
    """``holds`` as a bool: a bool, a numpy bool or a one-element tensor; anything else is a TypeError."""
    if isinstance(holds, bool):
        return holds
    if (type(holds).__module__ == "numpy" and type(holds).__name__ in ("bool", "bool_")) or (
            isinstance(holds, numbers.Integral) and holds in (0, 1)):
        return bool(holds)
    if hasattr(holds, "numel") and hasattr(holds, "dtype") and holds.numel() == 1 and "bool" in str(holds.dtype):
        return bool(holds)
    raise TypeError(f"holds must be a bool (the outcome of the claim's test), got {type(holds).__name__}")


def claim(statement: str, holds, evidence: str) -> None:
    """Print ``✓ claim: statement — evidence``; if ``holds`` is false print ``✗ …`` and raise ClaimFailed."""
    if not isinstance(statement, str) or not statement.strip():
        raise TypeError(f"statement must be a non-empty str, got {statement!r}")
    if not isinstance(evidence, str) or not evidence.strip():
        raise TypeError(f"evidence must be a non-empty str (the computed numbers), got {evidence!r}")
    ok = _truth(holds)
    line = f"{PASS if ok else FAIL} claim: {statement.strip()} — {evidence.strip()}"
    print(line)
    if not ok:
        raise ClaimFailed(line)
