"""The command line: `python -m pgcourse --help` and the kernels benchmark (a smoke run, no timing asserted)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, PGCOURSE_DEVICE=os.environ.get("PGCOURSE_DEVICE", ""))
    return subprocess.run([sys.executable, "-m", "pgcourse", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_help_lists_the_commands():
    out = run("--help")
    assert out.returncode == 0, out.stderr
    for command in ("student", "grade", "autograder", "figures", "bench"):
        assert command in out.stdout


def test_bench_help_lists_kernels():
    out = run("bench", "--help")
    assert out.returncode == 0, out.stderr
    assert "kernels" in out.stdout and "--json" in out.stdout and "--quick" in out.stdout
    assert "grade" in out.stdout


def test_grade_and_autograder_help_name_their_options():
    out = run("grade", "--help")
    assert out.returncode == 0, out.stderr
    for option in ("--secret", "--summary", "--gradescope", "--jobs", "--notebook", "--run-all"):
        assert option in out.stdout
    out = run("autograder", "--help")
    assert out.returncode == 0, out.stderr
    for option in ("--notebook", "--out", "--wheels"):
        assert option in out.stdout


@pytest.mark.slow
def test_bench_kernels_quick_json():
    out = run("bench", "kernels", "--quick", "--json")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    expected = {"reward_to_go_ms_cpu", "gae_ms_cpu", "python_loop_ms", "gradient_samples_steps_per_s_cpu"}
    assert expected <= set(result), set(result)
    assert all(isinstance(v, (int, float)) and v > 0 for v in result.values())
    assert any("reward_to_go" in line for line in lines[:-1])  # the human-readable lines come first
