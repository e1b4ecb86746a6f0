"""Notebook 03 (baselines): its exercises, widget, figure and the measurements behind its claims."""
import math

import pytest
import torch
from matplotlib.figure import Figure

from pgcourse import baselines
from pgcourse.lessons import nb03 as F
from pgcourse.figures import registry
from pgcourse.grading import exercises
from pgcourse.variance import by_batch, gradient_samples
from pgcourse.widgets import widgets
from exercise_contract import assert_fails_with_case, assert_inputs_isolated, assert_not_attempted, assert_passes

REFERENCES = {
    "03.batch_mean_baseline": lambda r: baselines.batch_mean_baseline(r),
    "03.leave_one_out_baseline": lambda r: baselines.batch_mean_baseline(r, leave_one_out=True),
    "03.moving_average": baselines.ema,
    "03.optimal_constant_baseline": baselines.optimal_constant_baseline,
}

# Plausible mistakes, one per exercise: each must fail with a helpful message.
WRONG = {
    "03.batch_mean_baseline": lambda r: r.mean().expand_as(r),                     # mean over everything
    "03.leave_one_out_baseline": lambda r: (r.sum(0) - r) / r.shape[0],           # divides by N, not N - 1
    "03.moving_average": lambda s, decay, init=0.0: baselines.ema(torch.cat([s[1:], s[:1]]), decay, init),
    "03.optimal_constant_baseline": lambda sq, R: R.mean(),                        # the mean return
}


def test_notebook_03_exercises_are_registered():
    assert set(REFERENCES) <= set(exercises())


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_reference_passes(name, capsys):
    assert_passes(name, REFERENCES[name], capsys)


@pytest.mark.parametrize("name", sorted(WRONG))
def test_wrong_answer_shows_input_expected_got(name):
    assert_fails_with_case(name, WRONG[name])


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_not_attempted(name, capsys):
    assert_not_attempted(name, capsys)


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_cases_do_not_share_state_with_the_learner(name):
    """A learner that writes into its input must not change the expected values of later checks."""
    assert_inputs_isolated(name, REFERENCES[name])


def test_variance_widget_draws_a_figure_and_moves_with_b():
    w = widgets()["03.variance"]
    assert list(w.sliders)[0] == "b"
    fig = w.draw(**w.defaults)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert ax.get_xlabel() and ax.get_ylabel()
    other = w.draw(b=1.5, batch_size=4)
    star = lambda f: [ln for ln in f.axes[0].lines if ln.get_marker() == "*"][0].get_xydata()  # noqa: E731
    assert not torch.allclose(torch.as_tensor(star(fig)), torch.as_tensor(star(other)))


def test_key_figure_is_registered_and_draws():
    figs = registry()
    assert "03_baselines.png" in figs
    fig = figs["03_baselines.png"]()
    assert isinstance(fig, Figure) and fig.axes[0].get_xlabel() and fig.axes[0].get_ylabel()


# ---- the measurements behind the claims ------------------------------------------------------

@pytest.fixture(scope="module")
def lesson():
    mdp, logits = F.lesson_mdp()
    return mdp, logits, mdp.exact_gradient(logits)


def test_parabola_predicts_the_measured_variance(lesson):
    mdp, logits, _ = lesson
    scan = F.constant_baseline_scan(mdp, logits, grid=(-0.5, 0.0, 0.5, 1.5), batch_size=8, n_batches=1000,
                                    n_episodes=8000)
    for b, v, se in zip(scan.grid, scan.variance, scan.variance_se):
        assert abs(scan.theory.variance(b, 8) - v) < 4 * se + 0.03 * v  # sampling noise of both sides
    for bias, se in zip(scan.bias, scan.bias_se):
        assert bias < 4 * se  # every constant b is unbiased
    th = scan.theory
    assert abs(th.b_min - th.b_star) < 0.05 * abs(th.b_star)
    assert th.variance(th.b_star) < th.variance(th.mean_return) < th.variance(0.0)


def test_per_episode_b_star_is_the_package_formula(lesson):
    mdp, logits, _ = lesson
    ep = mdp.sample(logits, 500, 3)
    s = F.episode_scores(mdp, logits, ep)
    R = F.episode_returns(ep, mdp)
    th = F.per_episode(mdp, logits, 500, 3)
    assert math.isclose(th.b_star, float(baselines.optimal_constant_baseline(s.pow(2).sum((1, 2)), R)), rel_tol=1e-9)
    assert math.isclose(th.mean_return, float(R.mean()), rel_tol=1e-9)


def test_episode_scores_sum_the_step_scores(lesson):
    mdp, logits, _ = lesson
    ep = mdp.sample(logits, 3, 0)
    from pgcourse.policies import softmax_score
    for i in range(3):
        want = sum(softmax_score(logits, int(s), int(a)) for s, a, m in
                   zip(ep.states[i], ep.actions[i], ep.mask[i]) if m)
        assert torch.allclose(F.episode_scores(mdp, logits, ep)[i], want)


def test_batch_mean_shrinks_by_one_minus_one_over_n_and_leave_one_out_does_not(lesson):
    mdp, logits, _ = lesson
    sh = F.batch_mean_shrink(mdp, logits, sizes=(2, 4), episodes=16000)
    for N, f, se in zip(sh.sizes, sh.factor["batch mean"], sh.factor_se["batch mean"]):
        assert abs(f - (1 - 1 / N)) < 4 * se
    for f, se in zip(sh.factor["leave-one-out"], sh.factor_se["leave-one-out"]):
        assert abs(f - 1) < 4 * se


def test_batch_psi_uses_only_its_own_batch(lesson):
    mdp, logits, _ = lesson
    ep = by_batch(mdp.sample(logits, 12, 0), 4)                        # (4, 3, H)
    R = F.episode_returns(ep, mdp)                                     # (4, 3)
    w = F.full_return_minus_batch_mean(leave_one_out=True)(ep, mdp, logits)
    want = R - (R.sum(0) - R) / 3
    assert torch.allclose(w[..., 0], want)
    w = F.full_return_minus_ema(decay=0.5, init=1.0)(ep, mdp, logits)
    means = R.mean(0)
    b = torch.stack([torch.tensor(1.0, dtype=R.dtype), 0.5 + 0.5 * means[0], 0.5 * (0.5 + 0.5 * means[0]) + 0.5 * means[1]])
    assert torch.allclose(w[..., 0], R - b)


def test_baseline_table_rows(lesson):
    mdp, logits, _ = lesson
    t = F.baseline_table(mdp, logits, batch_size=4, n_batches=1500)
    names = [r.psi for r in t.rows]
    assert len(names) == 8
    biased = t["R - batch mean"]
    assert biased.bias > 4 * biased.bias_se
    for r in t.rows:
        if r.psi != "R - batch mean":
            assert r.bias < 4 * r.bias_se, r.psi
    assert t["G_t - V_t(s_t), exact"].variance < t["R, no baseline"].variance


def test_action_dependent_baseline_is_biased_as_predicted(lesson):
    mdp, logits, g = lesson
    b = torch.zeros_like(logits)
    b[:, 1] = 1.0
    x = gradient_samples(mdp, logits, "reward_to_go_minus_baseline", 8, 1000, 0, action_baseline=b)
    pi = torch.softmax(logits, -1)
    visits = mdp.state_visitation(logits).sum(0)
    predicted = g - visits[:, None] * pi * (b - (pi * b).sum(-1, keepdim=True))
    se = x.std(0) / math.sqrt(x.shape[0])
    assert ((x.mean(0) - predicted).abs() <= 4 * se + 1e-12).all()
    assert (x.mean(0) - g).norm() > 10 * se.norm()


# ---- pgcourse.variance.variance_difference (added for notebook 03's variance claims) ----------------

def test_variance_difference_is_calibrated_under_equal_variances():
    from pgcourse.variance import variance_difference
    g = torch.Generator().manual_seed(0)
    zs = torch.tensor([variance_difference(torch.randn(200, 3, generator=g, dtype=torch.float64),
                                           torch.randn(200, 3, generator=g, dtype=torch.float64)).z for _ in range(1000)])
    assert abs(float(zs.mean())) < 0.1 and abs(float(zs.std()) - 1) < 0.1       # z ~ N(0, 1) under no difference
    assert 0.93 < float((zs.abs() < 2).double().mean()) < 0.97


def test_variance_difference_matches_summarize_and_pairing_helps():
    from pgcourse.variance import summarize, variance_difference
    g = torch.Generator().manual_seed(1)
    a = torch.randn(500, 4, generator=g, dtype=torch.float64)
    d = variance_difference(1.1 * a, a)
    zero = torch.zeros(4, dtype=torch.float64)
    assert math.isclose(d.diff, summarize(1.1 * a, zero).variance - summarize(a, zero).variance, rel_tol=1e-12)
    unpaired = variance_difference(1.1 * a, torch.randn(500, 4, generator=g, dtype=torch.float64))
    assert d.se < unpaired.se / 3 and d.z > 20                                   # the same draws: a much smaller SE
    with pytest.raises(ValueError, match="same number"):
        variance_difference(a, a[:10])
