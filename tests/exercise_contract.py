"""What every exercise check must do, asserted once for all notebooks' test files.

- the reference solution passes and prints exactly one line, ``✓ name: N/N cases, P/P points``, and
  returns None (no trailing ``True`` under the check cell);
- a wrong answer raises ExerciseFailed whose message gives the cases and points earned and shows the first
  failing case (input, expected, got);
- an unattempted exercise (NotImplementedError) prints "not attempted" and returns None;
- a learner who writes into the inputs cannot spoil the cases of a later check.
"""
import re

import pytest
import torch

from pgcourse.grading import ExerciseFailed, check, evaluate, exercises

PASS_LINE = r"✓ {name}: (\d+)/\1 cases, ([\d.]+)/\2 points"


def assert_passes(name, fn, capsys):
    assert check(name, fn) is None
    out = capsys.readouterr().out.strip()
    assert re.fullmatch(PASS_LINE.format(name=re.escape(name)), out), out
    outcome = evaluate(name, fn, seed=20261202)          # held-out cases: a correct answer passes them too
    assert outcome.passed, outcome.failure


def failure_message(name, fn) -> str:
    with pytest.raises(ExerciseFailed) as err:
        check(name, fn)
    return str(err.value)


def assert_fails_with_case(name, fn) -> str:
    msg = failure_message(name, fn)
    assert name in msg and "input:" in msg and "expected:" in msg and "got:" in msg
    first = msg.splitlines()[0]
    assert re.match(rf"✗ {re.escape(name)}: \d+/\d+ cases, [\d.]+/[\d.]+ points", first), first
    return msg


def assert_not_attempted(name, capsys):
    def stub(*args, **kwargs):
        raise NotImplementedError("Exercise: replace this line with your code")
    assert check(name, stub) is None
    assert "not attempted" in capsys.readouterr().out
    assert evaluate(name, stub).points == 0


def assert_inputs_isolated(name, reference):
    """A learner who zeroes its (non-boolean tensor) inputs after answering changes no later check."""
    def vandal(*args, **kwargs):
        out = reference(*args, **kwargs)
        for a in args:
            if isinstance(a, torch.Tensor) and a.dtype != torch.bool:
                a.detach().mul_(0)
        return out
    assert check(name, vandal) is None
    assert check(name, reference) is None
    assert evaluate(name, reference).passed
