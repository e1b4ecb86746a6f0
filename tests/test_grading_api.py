"""The exercise API itself: points and partial credit by case weight, held-out seeds, harness cases."""
import pytest
import torch

import pgcourse.grading as G
from pgcourse.grading import Case, ExerciseFailed, check, derive, evaluate, exercise


def _square_cases(gen):
    x = torch.randn(4, generator=derive(gen, 1))
    return [Case((torch.tensor(2.0),), expected=torch.tensor(4.0), note="two", weight=1.0),
            Case((x,), expected=x * x, note="random", weight=3.0)]


def _harness_cases(gen):
    return [Case((3,), expected=9, call=lambda fn, x: fn(x) * 3, note="run inside a harness"),
            Case((2,), expected=4, note="plain call")]


@pytest.fixture(autouse=True, scope="module")
def registered():
    """These exercises exist only while this module's tests run (other tests iterate the real registry)."""
    G.exercises()
    exercise("99.api_square", points=3, kind="transcribe")(_square_cases)
    exercise("99.api_harness", points=2, kind="build")(_harness_cases)
    yield
    for name in ("99.api_square", "99.api_harness"):
        G._REGISTRY.pop(name, None)


def test_partial_credit_is_by_case_weight():
    out = evaluate("99.api_square", lambda x: x * x if x.numel() == 1 else x)
    assert (out.n_passed, out.n_cases) == (1, 2) and out.points == pytest.approx(3 * 1 / 4)
    assert out.failure.startswith("Case 2 of 2 fails (random)")


def test_the_failure_line_gives_cases_and_points():
    with pytest.raises(ExerciseFailed, match=r"✗ 99.api_square: 1/2 cases, 0.75/3 points\. Case 2 of 2"):
        check("99.api_square", lambda x: x * x if x.numel() == 1 else x)


def test_held_out_cases_differ_and_a_hard_coded_answer_fails_them():
    visible = evaluate("99.api_square", lambda x: x * x).n_cases
    table = {tuple(c.args[0].reshape(-1).tolist()): c.expected for c in _square_cases(torch.Generator().manual_seed(0))}

    def hard_coded(x):
        return table[tuple(x.reshape(-1).tolist())]
    assert evaluate("99.api_square", hard_coded).passed
    held = evaluate("99.api_square", hard_coded, seed=987654321)
    assert held.n_cases == visible and not held.passed


def test_a_harness_case_runs_the_learner_inside_it():
    out = evaluate("99.api_harness", lambda x: x)
    assert out.n_passed == 1 and out.failed_cases == [2]
    assert evaluate("99.api_harness", lambda x: x if x == 3 else x * x).passed


def test_not_attempted_earns_nothing_and_says_so(capsys):
    def stub(x):
        raise NotImplementedError
    assert check("99.api_square", stub) is None and "not attempted" in capsys.readouterr().out
    assert evaluate("99.api_square", stub).points == 0


@pytest.mark.parametrize("kw,match", [({"points": 0}, "points"), ({"points": "3"}, "points"), ({"kind": "essay"}, "kind")])
def test_bad_registration(kw, match):
    with pytest.raises(ValueError, match=match):
        exercise("99.bad", **kw)
