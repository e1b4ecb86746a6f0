"""Notebook 03 (baselines): its exercises, widget, figure and the measurements behind its claims."""
import math

import pytest
import torch
from matplotlib.figure import Figure

from pgcourse import baselines
from pgcourse.figures import registry
from pgcourse.grading import evaluate, exercises
from pgcourse.lessons import nb03 as F
from pgcourse.stats import bias_test
from pgcourse.variance import by_batch, gradient_samples, summarize
from pgcourse.widgets import widgets
from exercise_contract import (assert_fails_with_case, assert_inputs_isolated, assert_not_attempted, assert_passes,
                               failure_message)

REFERENCES = {
    "03.batch_mean_baseline": lambda r: baselines.batch_mean_baseline(r),
    "03.leave_one_out_baseline": lambda r: baselines.batch_mean_baseline(r, leave_one_out=True),
    "03.moving_average": baselines.ema,
    "03.predict_b_star": F.bandit_b_star,
    "03.measure_shrinkage": F.measure_shrinkage,
    "03.value_baseline": F.value_baseline,
}
KINDS = {"03.batch_mean_baseline": "transcribe", "03.leave_one_out_baseline": "transcribe",
         "03.moving_average": "transcribe", "03.predict_b_star": "predict", "03.measure_shrinkage": "measure",
         "03.value_baseline": "debug"}


def _expected_return(logits, rewards):
    return float(torch.softmax(logits, -1) @ rewards)


def _leave_one_out_shrinkage(mdp, logits, batch_size, n_batches, seed):
    return F.measure_shrinkage(mdp, logits, batch_size, n_batches, seed, leave_one_out=True)


def _norm_ratio(mdp, logits, batch_size, n_batches, seed):
    """‖mean ĝ‖ / ‖∇J‖ instead of the mean projection: close, but not the statistic asked for."""
    x = gradient_samples(mdp, logits, F.full_return_minus_batch_mean(), batch_size, n_batches, seed)
    f, se = F.projection(x, mdp.exact_gradient(logits))
    return float(x.mean(0).norm() / mdp.exact_gradient(logits).norm()), se


def _time_off_by_one(ep, V):
    t = torch.arange(ep.states.shape[-1]).expand_as(ep.states)
    return V[t + 1, ep.states]                         # V_{t+1}(s_t): unbiased, but not V_t(s_t)


# Plausible mistakes, one or more per exercise: each must fail with a helpful message.
WRONG = {
    "03.batch_mean_baseline": lambda r: r.mean().expand_as(r),                     # mean over everything
    "03.leave_one_out_baseline": lambda r: (r.sum(0) - r) / r.shape[0],           # divides by N, not N - 1
    "03.moving_average": lambda s, decay, init=0.0: baselines.ema(torch.cat([s[1:], s[:1]]), decay, init),
    "03.predict_b_star": _expected_return,                                         # E[R], the usual guess
    "03.measure_shrinkage": _leave_one_out_shrinkage,                              # leave-one-out: factor 1
    "03.value_baseline": F.colleague_value_baseline,                               # the bug itself
}
def _score_norm_not_squared(logits, rewards):
    pi = torch.softmax(logits, -1)
    w = pi * (torch.eye(len(pi), dtype=pi.dtype) - pi).norm(dim=-1)              # ‖s‖, not ‖s‖²
    return float((w * rewards).sum() / w.sum())


MORE_WRONG = [
    ("03.predict_b_star", _score_norm_not_squared, "values differ"),
    ("03.measure_shrinkage", lambda m, l, N, n, s: (1 - 1 / N, 0.01), "is not the projection"),   # the prediction, typed in
    ("03.measure_shrinkage", _norm_ratio, "is not the projection"),
    ("03.value_baseline", _time_off_by_one, "b_t must be the value"),
    ("03.value_baseline", lambda ep, V: torch.zeros(ep.states.shape, dtype=V.dtype), "b_t must be the value"),
]


def test_notebook_03_exercises_are_registered_with_points_and_kinds():
    table = exercises()
    assert set(REFERENCES) <= set(table)
    for name, kind in KINDS.items():
        assert table[name].kind == kind and table[name].points == (1 if kind == "transcribe" else 2)


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_reference_passes(name, capsys):
    assert_passes(name, REFERENCES[name], capsys)


@pytest.mark.parametrize("name", sorted(WRONG))
def test_wrong_answer_shows_input_expected_got(name):
    assert_fails_with_case(name, WRONG[name])


@pytest.mark.parametrize("name,fn,why", MORE_WRONG, ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(MORE_WRONG)])
def test_more_plausible_mistakes_fail_and_say_why(name, fn, why):
    assert why in assert_fails_with_case(name, fn)


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_not_attempted(name, capsys):
    assert_not_attempted(name, capsys)


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_cases_do_not_share_state_with_the_learner(name):
    """A learner that writes into its input must not change the expected values of later checks."""
    assert_inputs_isolated(name, REFERENCES[name])


def test_debug_check_names_the_property_that_fails_first():
    msg = failure_message("03.value_baseline", F.colleague_value_baseline)
    first = msg.splitlines()[0]
    assert "0/3 cases" in first and "E[g] = grad J" in msg and "biased" in msg and "must not depend on the action" in msg


def test_debug_partial_credit_for_an_unbiased_but_wrong_baseline():
    out = evaluate("03.value_baseline", _time_off_by_one)
    assert out.failed_cases == [2] and math.isclose(out.points, 1.0)          # the two unbiased cases: 2 of 4 weight


def test_predict_check_rejects_the_mean_return_on_the_two_action_case():
    msg = failure_message("03.predict_b_star", _expected_return)
    assert "OTHER action's probability" in msg


def test_held_out_cases_differ_from_the_public_ones():
    for name in ("03.predict_b_star", "03.measure_shrinkage", "03.value_baseline"):
        ex = exercises()[name]
        pub, held = ex.cases(), ex.cases(seed=20261202)
        assert repr(pub[-1].args) != repr(held[-1].args) or repr(pub[2].args) != repr(held[2].args), name


def test_variance_widget_draws_a_figure_and_moves_with_b():
    w = widgets()["03.variance"]
    assert list(w.sliders)[0] == "b"
    fig = w.draw(**w.defaults)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert ax.get_xlabel() and ax.get_ylabel()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("±2 SE" in t for t in labels), labels                 # the bar is 2 SE and says so
    other = w.draw(b=1.5, batch_size=4)
    star = lambda f: [ln for ln in f.axes[0].lines if ln.get_marker() == "*"][0].get_xydata()  # noqa: E731
    assert not torch.allclose(torch.as_tensor(star(fig)), torch.as_tensor(star(other)))


@pytest.mark.parametrize("b,batch_size", [(-1.0, 1), (2.0, 64), (0.5, 32)])
def test_variance_widget_at_the_ends_of_its_sliders(b, batch_size):
    assert isinstance(widgets()["03.variance"].draw(b=b, batch_size=batch_size), Figure)


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


def test_bandit_b_star_closed_form_matches_the_sampled_b_star_and_two_action_formula():
    th, r = torch.tensor([0.7, -0.4, 1.1], dtype=torch.float64), torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    est = F.per_episode(F.softmax_bandit(r), th.reshape(1, -1), n_episodes=40000, seed=2)
    assert abs(est.b_star - F.bandit_b_star(th, r)) < 0.03
    pi = torch.softmax(torch.tensor([2.0, -1.0], dtype=torch.float64), -1)
    r2 = torch.tensor([3.0, -1.0], dtype=torch.float64)
    assert math.isclose(F.bandit_b_star(torch.tensor([2.0, -1.0], dtype=torch.float64), r2),
                        float(pi[1] * r2[0] + pi[0] * r2[1]), rel_tol=1e-12)


def test_bandit_variance_closed_form_is_the_measured_variance_and_is_least_at_b_star():
    th, r = torch.tensor([2.0, 0.0, 0.0], dtype=torch.float64), torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    b = F.bandit_b_star(th, r)
    bc = F.bandit_check(th, r, {"0": 0.0, "b*": b, "1": 1.0}, n_episodes=8000, seed=3)
    for k in bc.b:
        assert abs(bc.z_exact(k)) < 4
    assert bc.exact["b*"] < min(bc.exact["0"], bc.exact["1"])
    assert F.bandit_variance(th, r, b) < min(F.bandit_variance(th, r, b + d) for d in (-1e-3, 1e-3))
    assert bc.difference("0", "b*").z > 4


def test_batch_mean_shrinks_by_one_minus_one_over_n_and_leave_one_out_does_not(lesson):
    mdp, logits, _ = lesson
    sh = F.batch_mean_shrink(mdp, logits, sizes=(2, 4), episodes=16000)
    assert max(abs(z) for z in sh.z("batch mean", lambda N: 1 - 1 / N)) < 4
    assert max(sh.z("batch mean", lambda N: 1.0)) < -4
    assert max(abs(z) for z in sh.z("leave-one-out", lambda N: 1.0)) < 4


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


def test_baseline_samples_rows(lesson):
    mdp, logits, g = lesson
    xs = F.baseline_samples(mdp, logits, batch_size=4, n_batches=1500)
    assert len(xs) == 8
    assert bias_test(xs["R - batch mean"], g).p_value < 1e-6
    for name, x in xs.items():
        if name != "R - batch mean":
            assert bias_test(x, g).unbiased(), name
    assert summarize(xs["G_t - V_t(s_t), exact"], g).variance < summarize(xs["R, no baseline"], g).variance
    # the same episodes as gradient_samples at the same seed
    torch.testing.assert_close(xs["R, no baseline"], gradient_samples(mdp, logits, "full_return", 4, 1500, 0))


def test_action_dependent_baseline_is_biased_as_predicted(lesson):
    mdp, logits, g = lesson
    b = torch.zeros_like(logits)
    b[:, 1] = 1.0
    x = gradient_samples(mdp, logits, "reward_to_go_minus_baseline", 8, 1000, 0, action_baseline=b)
    assert bias_test(x, F.predicted_mean(mdp, logits, b)).unbiased()
    assert bias_test(x, g).biased()
    y = gradient_samples(mdp, logits, F.reward_to_go_minus_exact_q, 8, 1000, 0)
    assert bias_test(y, torch.zeros_like(g)).unbiased() and bias_test(y, g).biased()


def test_colleague_baseline_is_biased_and_the_fix_is_not(lesson):
    mdp, logits, g = lesson
    bad = F.value_baseline_samples(mdp, logits, F.colleague_value_baseline, 8, 1000, 1)
    good = F.value_baseline_samples(mdp, logits, F.value_baseline, 8, 1000, 1)
    assert bias_test(bad, g).biased() and bias_test(good, g).unbiased()
    # the fix is the package's V_t(s_t) baseline: the same estimates as gradient_samples' reward_to_go_minus_value
    torch.testing.assert_close(good, gradient_samples(mdp, logits, "reward_to_go_minus_value", 8, 1000, 1))


def test_seed_difference_interval():
    d = F.seed_difference([10.0, 11, 12, 13, 14], [0.0, 1, 2, 3, 4])
    assert d.dof == 4 and math.isclose(d.half_width, 2.776 * math.hypot(math.sqrt(2.5 / 5), math.sqrt(2.5 / 5)))
    assert d.exceeds_spread and not F.seed_difference([1.0, 2, 3], [1.5, 2.5, 3.5]).exceeds_spread


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
