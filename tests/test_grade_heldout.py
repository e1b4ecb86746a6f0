"""Held-out cases and points (pgcourse.grading.heldout), in process: the seeds, the registry, the scoring."""
from __future__ import annotations

import pytest
import torch

from pgcourse.grading import PUBLIC_SEED, Outcome, exercises
from pgcourse.grading.heldout import seed_for, summarize


def _tensors(x) -> list[torch.Tensor]:
    if isinstance(x, torch.Tensor):
        return [x.detach().to(torch.float64).flatten()]
    if isinstance(x, torch.Generator):            # an input too: its state decides what the function draws
        return [x.get_state().to(torch.float64)]
    if isinstance(x, (tuple, list)):
        return [t for v in x for t in _tensors(v)]
    if isinstance(x, dict):
        return [t for v in x.values() for t in _tensors(v)]
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return [torch.tensor([float(x)], dtype=torch.float64)]
    if hasattr(x, "__dict__"):
        return _tensors(vars(x))
    return []


def _same_inputs(a, b) -> bool:
    ta, tb = _tensors((a.args, a.kwargs)), _tensors((b.args, b.kwargs))
    return len(ta) == len(tb) and all(x.shape == y.shape and torch.equal(x.nan_to_num(), y.nan_to_num())
                                      for x, y in zip(ta, tb))


def test_held_out_seeds_are_fixed_by_the_secret_and_differ_by_exercise():
    assert seed_for("s", "01.a") == seed_for("s", "01.a")
    assert len({seed_for("s", "01.a"), seed_for("s", "01.b"), seed_for("t", "01.a"), PUBLIC_SEED}) == 4
    assert 0 <= seed_for("s", "01.a") < 2 ** 63
    with pytest.raises(ValueError, match="secret"):
        seed_for("", "01.a")


@pytest.mark.parametrize("name", sorted(exercises()))
def test_every_exercise_draws_new_cases_for_a_new_seed(name):
    """Else its held-out cases are the visible ones, and hard-coding the visible answers passes them."""
    ex = exercises()[name]
    visible = ex.cases()
    held = ex.cases(seed_for("any secret", name))
    assert len(held) == len(visible) and [c.weight for c in held] == [c.weight for c in visible]
    assert any(not _same_inputs(v, h) for v, h in zip(visible, held)), \
        f"{name}: no case draws its inputs from gen (make_cases(gen))"
    assert [c.note for c in ex.cases()] == [c.note for c in visible], "the same seed must draw the same cases"


def _outcome(passed, n, weights_passed, weights_total, points=3.0, attempted=True, failure=None):
    return Outcome("99.x", attempted, n, passed, weights_passed, weights_total, points, failure)


def test_points_are_the_smaller_share_of_the_visible_and_held_out_weights():
    full = _outcome(4, 4, 5.0, 5.0)
    assert summarize("99.x", full, full) == {"result": "pass", "message": "✓ 99.x: 4/4 cases, held-out 4/4, 3/3 points",
                                             "cases": 4, "points": 3.0, "max_points": 3.0, "held_out": "4/4",
                                             "visible": "4/4", "visible_failure": "", "held_out_failure": ""}
    held = _outcome(3, 4, 3.0, 5.0, failure="Case 4 of 4 fails (random): values differ\n  input: ...")
    rec = summarize("99.x", full, held)                 # the visible cases hard-coded
    assert rec["result"] == "fail" and rec["points"] == pytest.approx(3 * 3 / 5) and rec["held_out"] == "3/4"
    assert rec["message"] == "✗ 99.x: 4/4 cases, held-out 3/4, 1.8/3 points. Held-out case 4 of 4 fails (random): " \
                             "values differ"                 # the held-out input is not shown
    assert rec["visible_failure"] == "" and rec["held_out_failure"].startswith("Held-out case 4 of 4 fails")
    part = _outcome(2, 4, 2.0, 5.0, failure="Case 3 of 4 fails: values differ\n  input: (1,)")
    rec = summarize("99.x", part, full)
    assert rec["points"] == pytest.approx(3 * 2 / 5) and rec["message"].endswith("input: (1,)")
    rec = summarize("99.x", _outcome(0, 4, 0.0, 5.0, attempted=False), None)
    assert rec["result"] == "fail" and rec["points"] == 0 and "not attempted" in rec["message"]
    rec = summarize("99.x", full, _outcome(0, 4, 0.0, 5.0, attempted=False))   # NotImplementedError on new inputs
    assert rec["result"] == "fail" and rec["points"] == 0 and rec["held_out"] == "0/4"
