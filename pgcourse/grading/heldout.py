"""Held-out cases and points: each exercise's cases drawn again from a seed only the grader holds.

An exercise's ``make_cases(gen)`` draws every random input from ``gen``. The learner's check draws
them with the public seed; when grading, the kernel also draws them with

    seed(name) = the first 63 bits of HMAC-SHA256(secret, name)

where ``secret`` is the grader's (``--secret``, else ``$PGCOURSE_GRADE_SECRET``, else random per
run). The expected values come from the reference code, in the grading kernel, only when the check
runs; the kernel gets the seeds, never the secret.

Points: with ``s = (weight of the cases passed) / (total weight)`` for the visible and for the
held-out draw, an exercise earns ``points × min(s_visible, s_held_out)``, so hard-coding the visible
cases earns only what the held-out draw confirms. It passes when every case of both draws passes.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any, Callable

SECRET_ENV = "PGCOURSE_GRADE_SECRET"


def new_secret() -> str:
    """A random grading secret (the default: a fresh one per run)."""
    return secrets.token_hex(16)


def seed_for(secret: str, name: str) -> int:
    """The held-out seed of exercise ``name`` under ``secret``: 63 bits of HMAC-SHA256(secret, name)."""
    if not isinstance(secret, str) or not secret:
        raise ValueError(f"secret must be a non-empty string, got {secret!r}")
    digest = hmac.new(secret.encode(), name.encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") & (2 ** 63 - 1)


def case_drawer(torch, signature: Callable) -> Callable[[Callable, int], list]:
    """``draw(make_cases, seed)``: the cases of a maker drawn with ``seed`` (names bound now, for the kernel)."""
    Generator, bool_, int_ = torch.Generator, bool, int

    def draw(make_cases: Callable, seed: int) -> list:
        gen = Generator().manual_seed(int_(seed))
        return make_cases(gen) if bool_(signature(make_cases).parameters) else make_cases()

    return draw


def _points(x: float) -> str:
    return f"{x:.2f}".rstrip("0").rstrip(".")


def _share(out: Any) -> float:
    return out.weight_passed / out.weight_total if out.attempted and out.weight_total > 0 else 0.0


def summarize(name: str, visible: Any, held: Any | None) -> dict:
    """The record of one graded check from its visible and held-out :class:`~pgcourse.grading.Outcome`.

    Keys: ``result`` (pass/fail), ``message``, ``cases`` (visible cases run), ``points``,
    ``max_points``, ``held_out`` (``"k/n"``, or ``""`` when not run), and for a report of the visible
    and the held-out part on their own: ``visible`` (``"k/n"``), ``visible_failure`` (the first failing
    visible case: input, expected, got) and ``held_out_failure`` (the first failing held-out case's
    note and reason only, not its input).
    """
    top = visible.max_points
    if not visible.attempted:
        return {"result": "fail", "message": f"○ {name}: not attempted (raise NotImplementedError)", "cases": 0,
                "points": 0.0, "max_points": top, "held_out": "", "visible": f"0/{visible.n_cases}",
                "visible_failure": "not attempted (raise NotImplementedError)", "held_out_failure": ""}
    shares = [_share(visible)] + ([_share(held)] if held is not None else [])
    points = top * min(shares)
    held_text = f"{held.n_passed if held.attempted else 0}/{held.n_cases}" if held is not None else ""
    held_ok = held is None or (held.attempted and held.n_passed == held.n_cases)
    ok = visible.n_passed == visible.n_cases and held_ok
    line = (f"{'✓' if ok else '✗'} {name}: {visible.n_passed}/{visible.n_cases} cases"
            + (f", held-out {held_text}" if held is not None else "") + f", {_points(points)}/{_points(top)} points")
    held_failure = ""
    if not held_ok:
        first = (held.failure or "").splitlines()[0] if held.attempted else "raised NotImplementedError"
        held_failure = f"Held-out {first[0].lower() + first[1:] if first else 'cases fail'}"
    if visible.failure:
        line += f". {visible.failure}"
    elif held_failure:
        line += f". {held_failure}"
    return {"result": "pass" if ok else "fail", "message": line, "cases": visible.n_cases, "points": points,
            "max_points": top, "held_out": held_text, "visible": f"{visible.n_passed}/{visible.n_cases}",
            "visible_failure": visible.failure or "", "held_out_failure": held_failure}
