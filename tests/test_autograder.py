"""``python -m pgcourse autograder``: the Gradescope zip, and run_autograder on a temporary root folder.

One course notebook (the smallest with exercises) is built into a zip; the zip is unpacked as
Gradescope does (``$AUTOGRADER_ROOT/source``) and its ``run_autograder`` is run, as Gradescope would,
once per submission (each its own root folder): a correct, a wrong and a tampered submission.
``results.json`` is checked against Gradescope's specification (``score``; ``tests`` with ``name``,
``score``, ``max_score``, ``output``, ``visibility``).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest

from pgcourse import __main__ as cli
from pgcourse.grading import grade
from pgcourse.grading.autograder import DEV_ONLY, grading_requirements
from pgcourse.grading.submissions import course_solutions, make_submission

ROOT = Path(__file__).resolve().parent.parent
VISIBILITY = {"hidden", "after_due_date", "after_published", "visible"}


def _notebook() -> Path:
    return min(course_solutions(), key=lambda p: p.stat().st_size)


@pytest.fixture(scope="module")
def zip_path(tmp_path_factory):
    out = tmp_path_factory.mktemp("zip") / "autograder.zip"
    assert cli.main(["autograder", "--notebook", _notebook().stem[:2], "--out", str(out)]) == 0
    return out


def test_the_zip_has_setup_and_run_autograder_at_its_root(zip_path):
    with zipfile.ZipFile(zip_path) as z:
        names = set(z.namelist())
        modes = {i.filename: i.external_attr >> 16 for i in z.infolist()}
        setup = z.read("setup.sh").decode()
        run = z.read("run_autograder").decode()
        requirements = z.read("requirements.txt").decode()
    assert {"setup.sh", "run_autograder", "requirements.txt", "course/pgcourse/grading/recorder.py",
            f"course/notebooks/solutions/{_notebook().name}"} <= names
    assert not any("__pycache__" in n for n in names)
    assert modes["setup.sh"] & 0o111 and modes["run_autograder"] & 0o111
    assert run.startswith("#!") and "AUTOGRADER_ROOT:-/autograder" in run and f"--notebook {_notebook().stem}" in run
    assert "--no-index --find-links" in setup          # offline where the wheels are vendored
    for script in ("setup.sh", "run_autograder"):
        with zipfile.ZipFile(zip_path) as z:
            check = subprocess.run(["bash", "-n"], input=z.read(script), capture_output=True)
        assert check.returncode == 0, check.stderr
    pins = {line.split("==")[0]: line for line in requirements.splitlines()}
    course = {line.split("==")[0]: line for line in grading_requirements().splitlines()}
    assert pins == course and "torch" in pins and pins["torch"].startswith("torch==")
    assert not any(dev in requirements for dev in DEV_ONLY) and "-e" not in requirements


def test_vendored_wheels_go_in_the_zip(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "fake-1.0-py3-none-any.whl").write_bytes(b"not really a wheel")
    out = tmp_path / "a.zip"
    assert cli.main(["autograder", "--notebook", _notebook().stem[:2], "--out", str(out), "--wheels", str(wheels)]) == 0
    with zipfile.ZipFile(out) as z:
        assert "wheels/fake-1.0-py3-none-any.whl" in z.namelist()
    with pytest.raises(SystemExit, match="no notebook|matches"):
        cli.main(["autograder", "--notebook", "99", "--out", str(out)])


def _run_autograder(zip_path: Path, root: Path, submission) -> dict:
    (root / "source").mkdir(parents=True)
    with zipfile.ZipFile(zip_path) as z:
        z.extractall(root / "source")
    (root / "submission").mkdir()
    if submission is not None:
        nbformat.write(submission, root / "submission" / "my_homework.ipynb")   # any name
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.update(AUTOGRADER_ROOT=str(root), PGCOURSE_PYTHON=sys.executable)
    proc = subprocess.run(["bash", str(root / "source" / "run_autograder")], env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads((root / "results" / "results.json").read_text())


@pytest.fixture(scope="module")
def gradescope(zip_path, tmp_path_factory):
    """results.json of a correct, a wrong and a tampered submission, and of an empty one."""
    path = _notebook()
    names = [e.name for e in grade.load_reference(path).exercises]
    others = dict.fromkeys(names[1:], "correct")
    subs = {"correct": make_submission(path, "correct"),
            "wrong": make_submission(path, {names[0]: "wrong", **others}),
            "tampered": make_submission(path, {names[0]: "untouched", **others}, tamper=[names[0]]),
            "empty": None}
    base = tmp_path_factory.mktemp("gradescope")
    with ThreadPoolExecutor(2) as pool:
        done = dict(zip(subs, pool.map(lambda kv: _run_autograder(zip_path, base / kv[0], kv[1]), subs.items())))
    return names, done


def _valid(results: dict) -> None:
    assert isinstance(results["score"], (int, float))
    assert isinstance(results["tests"], list) and results["tests"]
    for t in results["tests"]:
        assert {"name", "score", "max_score", "output", "visibility"} <= set(t), t
        assert isinstance(t["name"], str) and isinstance(t["output"], str)
        assert isinstance(t["score"], (int, float)) and isinstance(t["max_score"], (int, float))
        assert t["visibility"] in VISIBILITY and t.get("status", "passed") in ("passed", "failed")
    assert results["score"] == pytest.approx(sum(t["score"] for t in results["tests"]))
    json.dumps(results)


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["correct", "wrong", "tampered", "empty"])
def test_results_json_follows_gradescopes_specification(gradescope, variant):
    _valid(gradescope[1][variant])


@pytest.mark.slow
def test_results_json_scores_each_exercise_and_hides_the_held_out_cases_until_after_the_due_date(gradescope):
    names, done = gradescope
    correct = done["correct"]
    top = sum(t["max_score"] for t in correct["tests"])
    assert correct["score"] == pytest.approx(top) and top > 0
    exercise_tests = [t for t in correct["tests"] if t["visibility"] == "visible"]
    held = [t for t in correct["tests"] if t["visibility"] == "after_due_date"]
    assert [t["name"] for t in exercise_tests] == names
    assert [t["name"] for t in held] == [f"{n}: held-out cases" for n in names]
    assert all(t["status"] == "passed" and t["max_score"] == 0 for t in held)
    assert correct["stdout_visibility"] == "hidden"      # the stdout shows the held-out results

    wrong = {t["name"]: t for t in done["wrong"]["tests"]}
    assert wrong[names[0]]["status"] == "failed" and "Case " in wrong[names[0]]["output"]
    assert wrong[names[0]]["score"] < wrong[names[0]]["max_score"]
    assert all(wrong[n]["status"] == "passed" for n in names[1:])

    tampered = {t["name"]: t for t in done["tampered"]["tests"]}
    assert tampered[names[0]]["status"] == "failed" and tampered[names[0]]["score"] == 0
    assert "not attempted" in tampered[names[0]]["output"]
    assert done["tampered"]["score"] < top

    empty = done["empty"]
    assert empty["score"] == 0 and [t["name"] for t in empty["tests"]] == names
    assert "no .ipynb" in empty["output"]
