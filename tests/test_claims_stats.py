"""pgcourse.claims (the ✓/✗ claim line) and pgcourse.stats (the tests behind every claim)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pgcourse.claims import ClaimFailed, claim
from pgcourse.stats import bias_test, chi2_sf, difference_test, mean_se, normal_sf


# ---- claims ------------------------------------------------------------------------------------------

def test_claim_prints_one_line(capsys):
    assert claim("the mean is unbiased", True, "max |z| = 1.2") is None
    assert capsys.readouterr().out == "✓ claim: the mean is unbiased — max |z| = 1.2\n"


def test_failed_claim_prints_and_raises(capsys):
    with pytest.raises(ClaimFailed, match="✗ claim: it holds — z = 9"):
        claim("it holds", False, "z = 9")
    assert capsys.readouterr().out.startswith("✗ claim: it holds — z = 9")


@pytest.mark.parametrize("holds", [np.bool_(True), torch.tensor(True), 1])
def test_claim_accepts_bool_likes(holds, capsys):
    claim("s", holds, "e")
    assert capsys.readouterr().out.startswith("✓")


@pytest.mark.parametrize("holds", [None, "yes", 0.5, torch.tensor([True, False]), np.array([1.0])])
def test_claim_rejects_what_is_not_a_verdict(holds):
    with pytest.raises(TypeError, match="holds"):
        claim("s", holds, "e")


@pytest.mark.parametrize("statement,evidence,arg", [("", "e", "statement"), ("s", "", "evidence"), (3, "e", "statement"),
                                                    ("s", None, "evidence")])
def test_claim_needs_a_statement_and_evidence(statement, evidence, arg):
    with pytest.raises(TypeError, match=arg):
        claim(statement, True, evidence)


# ---- stats -------------------------------------------------------------------------------------------

def test_tail_functions_against_known_values():
    assert normal_sf(0.0) == pytest.approx(0.5)
    assert normal_sf(1.959964) == pytest.approx(0.025, rel=1e-4)
    assert chi2_sf(3.841459, 1) == pytest.approx(0.05, rel=1e-4)
    assert chi2_sf(18.307038, 10) == pytest.approx(0.05, rel=1e-4)
    assert chi2_sf(0.0, 4) == 1.0
    with pytest.raises(ValueError, match="dof"):
        chi2_sf(1.0, 0)


def test_mean_se():
    m, se = mean_se(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    assert float(m) == 2.5 and float(se) == pytest.approx(math.sqrt(5 / 3) / 2)
    with pytest.raises(ValueError, match="at least 2"):
        mean_se(torch.tensor([1.0]))


def test_bias_test_under_no_bias_is_calibrated():
    """Under no bias the χ² p-value is uniform: over 400 seeded trials about 5% fall under 0.05."""
    g = torch.Generator().manual_seed(0)
    A = torch.randn(6, 6, generator=g, dtype=torch.float64)
    p = []
    for _ in range(400):
        x = torch.randn(300, 6, generator=g, dtype=torch.float64) @ A.T + 3.0    # correlated coordinates
        p.append(bias_test(x, torch.full((6,), 3.0, dtype=torch.float64)).p_value)
    frac = float(np.mean(np.array(p) < 0.05))
    se = math.sqrt(0.05 * 0.95 / 400)
    assert abs(frac - 0.05) < 4 * se, frac


def test_bias_test_detects_bias_and_handles_singular_covariance():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(2000, 3, generator=g, dtype=torch.float64)
    x = torch.cat([z, -z.sum(1, keepdim=True)], 1)            # the coordinates sum to 0: rank 3
    t = bias_test(x, torch.zeros(4, dtype=torch.float64))
    assert t.dof == 3 and t.unbiased()
    t = bias_test(x + torch.tensor([0.2, 0.0, 0.0, -0.2], dtype=torch.float64), torch.zeros(4, dtype=torch.float64))
    assert t.biased() and not t.unbiased() and t.p_value < 1e-10
    assert "χ²" in t.summary() and "no bias" in t.summary()


def test_bias_test_constant_coordinates():
    x = torch.zeros(10, 3, dtype=torch.float64)
    x[:, 0] = torch.arange(10.0)
    ok = bias_test(x, torch.tensor([4.5, 0.0, 0.0], dtype=torch.float64))
    assert ok.dof == 1 and ok.max_abs_z == 0
    bad = bias_test(x, torch.tensor([4.5, 1.0, 0.0], dtype=torch.float64))
    assert bad.max_abs_z == math.inf and bad.biased()


@pytest.mark.parametrize("samples,exact,match", [
    (torch.zeros(1, 3), torch.zeros(3), "n >= 2"),
    (torch.zeros(5, 3), torch.zeros(4), "match exact"),
    (torch.tensor([[float("nan")], [1.0]]), torch.zeros(1), "finite"),
    (torch.zeros(5, 1), torch.tensor([float("inf")]), "finite"),
])
def test_bias_test_bad_input(samples, exact, match):
    with pytest.raises(ValueError, match=match):
        bias_test(samples, exact)


def test_difference_test():
    d = difference_test([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    assert d.diff == 0 and d.z == 0
    d = difference_test([10.0, 11.0, 12.0, 13.0], [1.0, 2.0, 3.0, 4.0])
    assert d.diff == 9 and d.z == pytest.approx(9 / math.hypot(float(mean_se(torch.tensor([1.0, 2, 3, 4]))[1]),
                                                              float(mean_se(torch.tensor([1.0, 2, 3, 4]))[1])))
    assert "z =" in d.summary(("PPO", "VPG"))
