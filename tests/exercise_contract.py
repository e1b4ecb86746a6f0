"""What every exercise check must do, asserted once for all notebooks' test files.

- the reference solution passes and prints exactly one line, ``✓ name: all N cases pass``;
- a wrong answer raises ExerciseFailed whose message shows the first failing case (input, expected, got);
- an unattempted exercise (NotImplementedError) prints "not attempted" and returns False;
- a learner who writes into the inputs cannot spoil the cases of a later check.
"""
import pytest
import torch

from pgcourse.grading import ExerciseFailed, check


def assert_passes(name, fn, capsys):
    assert check(name, fn) is True
    out = capsys.readouterr().out.strip()
    assert out.startswith(f"✓ {name}: all ") and out.endswith(" cases pass") and "\n" not in out


def failure_message(name, fn) -> str:
    with pytest.raises(ExerciseFailed) as err:
        check(name, fn)
    return str(err.value)


def assert_fails_with_case(name, fn) -> str:
    msg = failure_message(name, fn)
    assert name in msg and "input:" in msg and "expected:" in msg and "got:" in msg
    return msg


def assert_not_attempted(name, capsys):
    def stub(*args, **kwargs):
        raise NotImplementedError("Exercise: replace this line with your code")
    assert check(name, stub) is False
    assert "not attempted" in capsys.readouterr().out


def assert_inputs_isolated(name, reference):
    """A learner who zeroes its (non-boolean tensor) inputs after answering changes no later check."""
    def vandal(*args, **kwargs):
        out = reference(*args, **kwargs)
        for a in args:
            if isinstance(a, torch.Tensor) and a.dtype != torch.bool:
                a.detach().mul_(0)
        return out
    assert check(name, vandal) is True
    assert check(name, reference) is True
