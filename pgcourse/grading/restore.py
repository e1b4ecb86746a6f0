"""Restoring the check cells: a copy of a submission with the reference's check cells put back.

Every check cell of the submission (tagged ``check``, or with a ``check-…`` id, or the source of a
reference check) is dropped, and the reference's check cell (source and expected output) is put
right after the matching exercise cell (same cell id; else the cell that defines the exercise's
function). An exercise whose cell is gone is marked missing (it fails).
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field

from .reference import Reference, Refused, _cid, _tags, is_check_cell


@dataclass
class Plan:
    """The notebook nbval runs, and where each exercise's check cell is in it."""

    notebook: object
    check_index: dict[str, int | None]      # exercise -> index among code cells (None: exercise cell missing)
    warnings: list[str] = field(default_factory=list)


def _defines(cell, fn: str) -> bool:
    return cell.get("cell_type") == "code" and re.search(rf"^def\s+{re.escape(fn)}\s*\(", cell.source, re.M) is not None


def restore(sub_nb, ref: Reference, skip_after_last_check: bool = False) -> Plan:
    """A copy of the submission with every check cell replaced by the reference's (the input is unchanged).

    ``skip_after_last_check``: tag the code cells after the last check ``nbval-skip`` (they cannot change
    a verdict, and running them only costs time).
    """
    nb = copy.deepcopy(sub_nb)
    check_ids = {_cid(e.check_cell) for e in ref.exercises}
    check_sources = {e.check_cell.source.strip() for e in ref.exercises}
    foreign = sorted({_cid(c) for c in nb.cells
                      if c.get("cell_type") == "code" and re.match(r"(exercise|check)-\d+-", _cid(c))} - ref.ids)
    shared = {_cid(c) for c in nb.cells} & ref.ids
    if ref.exercises and not shared and (foreign or not any(_defines(c, e.fn) for c in nb.cells for e in ref.exercises)):
        why = f"its exercise cells ({', '.join(foreign[:3])}…) are not those of" if foreign else "it has none of the exercises of"
        raise Refused(f"{why} {ref.stem}: a submission from another notebook?")
    warnings = [f"cells from another notebook: {', '.join(foreign)}"] if foreign else []

    cells = [c for c in nb.cells if not (is_check_cell(c) or _cid(c) in check_ids
                                         or (c.get("cell_type") == "code" and c.source.strip() in check_sources))]
    inserts: dict[int, list] = {}
    missing: set[str] = set()
    for ex in ref.exercises:
        at = next((i for i, c in enumerate(cells) if _cid(c) == ex.exercise_id), None)
        if at is None:
            at = next((i for i in range(len(cells) - 1, -1, -1) if _defines(cells[i], ex.fn)), None)
        if at is None:
            missing.add(ex.name)
            continue
        cell = copy.deepcopy(ex.check_cell)
        cell.metadata["tags"] = sorted(set(_tags(cell)) | {"check", "nbval-check-output"})
        inserts.setdefault(at, []).append((ex.name, cell))
    out, where = [], {}
    for i, c in enumerate(cells):
        out.append(c)
        for name, cell in inserts.get(i, []):
            out.append(cell)
            where[name] = id(cell)
    seen: set[str] = set()
    for k, c in enumerate(out):                      # unique ids (nbformat 4.5); old notebooks have none
        cid = _cid(c) or f"cell-{k}"
        while cid in seen:
            cid = f"{cid}-{k}"
        c["id"] = cid
        seen.add(cid)
    if skip_after_last_check and where:
        last = max(k for k, c in enumerate(out) if id(c) in set(where.values()))
        for c in out[last + 1:]:
            if c.get("cell_type") == "code":
                c.setdefault("metadata", {})["tags"] = sorted(set(_tags(c)) | {"nbval-skip"})
    nb.cells = out
    nb.nbformat, nb.nbformat_minor = 4, max(5, int(nb.get("nbformat_minor", 5)))
    code = [c for c in out if c.get("cell_type") == "code"]
    index = {id(c): k for k, c in enumerate(code)}
    check_index = {e.name: (None if e.name in missing else index[where[e.name]]) for e in ref.exercises}
    return Plan(nb, check_index, warnings)
