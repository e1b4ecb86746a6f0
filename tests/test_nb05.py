"""Notebook 05 (PPO): its exercise checks, widget, figures and the measurements behind its claims."""
import copy
import io
import math

import matplotlib
import pytest
import torch
from matplotlib.figure import Figure

from pgcourse.lessons import nb05 as F
from pgcourse.figures import registry
from pgcourse.grading import exercises
from pgcourse.grading.nb05 import FakeStep
from pgcourse.mdp import coin_flips
from pgcourse.ppo import clip_loss, minibatch_epochs
from pgcourse.widgets import widgets
from exercise_contract import assert_fails_with_case, assert_not_attempted, assert_passes

matplotlib.use("Agg")

NAMES = ("05.clipped_surrogate", "05.approx_kl", "05.minibatch_epochs")
REFERENCE = {
    "05.clipped_surrogate": lambda logp, old_logp, advantages, clip_eps=0.2: clip_loss(logp, old_logp, advantages,
                                                                                        clip_eps)[0],
    "05.approx_kl": lambda logp, old_logp: clip_loss(logp, old_logp, torch.ones_like(logp))[1]["approx_kl"],
    "05.minibatch_epochs": minibatch_epochs,
}


# ---- exercises ----------------------------------------------------------------------------------

def test_all_exercises_registered():
    table = exercises()
    for name in NAMES:
        assert name in table and len(table[name].cases()) >= 5


@pytest.mark.parametrize("name", NAMES)
def test_reference_passes(name, capsys):
    assert_passes(name, REFERENCE[name], capsys)


@pytest.mark.parametrize("name", NAMES)
def test_not_attempted(name, capsys):
    assert_not_attempted(name, capsys)


def _message(name, fn) -> str:
    return assert_fails_with_case(name, fn)


def test_clip_without_min_fails():
    def clip_only(logp, old_logp, advantages, clip_eps=0.2):
        ratio = torch.exp(logp - old_logp)
        return -(ratio.clamp(1 - clip_eps, 1 + clip_eps) * advantages).mean()
    assert "clip bites" in _message("05.clipped_surrogate", clip_only)


def test_clip_with_detached_ratio_fails_on_the_gradient():
    def detached(logp, old_logp, advantages, clip_eps=0.2):
        ratio = torch.exp(logp - old_logp)
        return -torch.min(ratio * advantages, ratio.detach().clamp(1 - clip_eps, 1 + clip_eps) * advantages).mean()
    assert "gradient with respect to logp" in _message("05.clipped_surrogate", detached)


def test_clip_returning_a_float_fails():
    def as_float(logp, old_logp, advantages, clip_eps=0.2):
        ratio = torch.exp(logp - old_logp)
        return float(-torch.min(ratio * advantages, ratio.clamp(1 - clip_eps, 1 + clip_eps) * advantages).mean().detach())
    assert "torch.Tensor" in _message("05.clipped_surrogate", as_float)


def test_k1_instead_of_k3_fails():
    assert "ratio 2" in _message("05.approx_kl", lambda logp, old_logp: (old_logp - logp).mean())


def test_epochs_without_shuffle_fail():
    def in_order(step, n, n_epochs, n_minibatches, generator, target_kl=None):
        out = []
        for _ in range(n_epochs):
            for idx in torch.arange(n).tensor_split(n_minibatches):
                step(idx)
                out.append(idx)
        return out
    _message("05.minibatch_epochs", in_order)


def test_epochs_without_early_stop_fail():
    def no_stop(step, n, n_epochs, n_minibatches, generator, target_kl=None):
        return minibatch_epochs(step, n, n_epochs, n_minibatches, generator, None)
    assert "stop after the first epoch" in _message("05.minibatch_epochs", no_stop)


def test_fake_step_is_stateless_and_checks_its_input():
    s = FakeStep(0.5)
    assert float(copy.deepcopy(s)(torch.arange(3))["approx_kl"]) == 0.5
    with pytest.raises(TypeError, match="int64"):
        s(torch.ones(3))


# ---- widget and figures -------------------------------------------------------------------------

def test_clip_widget_draws_and_its_first_slider_is_eps():
    w = widgets()["05.clip"]
    assert list(w.sliders)[0] == "clip_eps"
    fig = w.draw(**w.defaults)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    a = io.BytesIO()
    fig.savefig(a, format="png")
    b = io.BytesIO()
    w.draw(**{**w.defaults, "clip_eps": 0.4}).savefig(b, format="png")
    assert a.getvalue() != b.getvalue()


@pytest.mark.parametrize("name", ["05_ppo_clip.png", "05_ppo_ratios.png"])
def test_figures_registered_and_build(name):
    make = registry()[name]
    if name == "05_ppo_ratios.png":  # the full measurement runs in the notebook and `figures`; here a smaller one
        fig = F.ratios_figure(F.stale_drift(n_steps=2, n_batches=200), F.ratio_variance((5,), (0.5, 0.7), 2000))
    else:
        fig = make()
    assert isinstance(fig, Figure)


# ---- the measurements behind the notebook's claims --------------------------------------------------

def test_estimates_match_the_exact_gradient_on_policy():
    """At θ = θ_old every correction is the on-policy estimator: unbiased within 4 SE per coordinate."""
    mdp, theta = F.lesson_mdp()
    old = F.sample_old(mdp, theta, batch_size=8, n_batches=500, seed=1)
    exact = mdp.exact_gradient(theta)
    for c in F.CORRECTIONS:
        x = F.estimates(old, theta, c)
        se = x.std(0) / math.sqrt(x.shape[0])
        assert bool(((x.mean(0) - exact).abs() <= 4 * se + 1e-12).all()), c
    with pytest.raises(ValueError, match="correction"):
        F.estimates(old, theta, "both")


def test_trajectory_ratio_is_unbiased_off_policy_and_the_stale_estimate_is_not():
    mdp, theta_old = F.lesson_mdp()
    theta = theta_old.clone()
    theta[:, 1] += 0.6  # a nearby policy that goes right more often
    old = F.sample_old(mdp, theta_old, batch_size=16, n_batches=1000, seed=2)
    exact = mdp.exact_gradient(theta)
    traj = F.estimates(old, theta, "trajectory")
    stale = F.estimates(old, theta, "none")
    se_t = traj.std(0) / math.sqrt(traj.shape[0])
    assert bool(((traj.mean(0) - exact).abs() <= 4 * se_t + 1e-12).all())
    se_s = stale.std(0) / math.sqrt(stale.shape[0])
    assert bool(((stale.mean(0) - exact).abs() > 8 * se_s).any())


def test_ratio_variance_matches_the_closed_form():
    rv = F.ratio_variance(horizons=(4,), probs=(0.5, 0.6, 0.7), n_episodes=40000, seed=3)
    for i, p in enumerate(rv.probs):
        assert rv.exact_var[4][i] == pytest.approx((1 + (2 * p - 1) ** 2) ** 4 - 1)
        assert abs(rv.mean[4][i] - 1) <= 4 * rv.mean_se[4][i] + 1e-12
        # the variance of the sample variance of a bounded variable: loose 15 % tolerance at these sizes
        assert rv.var[4][i] == pytest.approx(rv.exact_var[4][i], rel=0.15, abs=1e-12)
    assert rv.var[4][0] == 0.0 and rv.ess[4][0] == pytest.approx(1.0)
    # the closed form's premise: coin flips' states do not depend on the actions
    mdp = coin_flips(horizon=4)
    assert torch.allclose(mdp.P[:, 0], mdp.P[:, 1])


def test_stale_drift_grows_and_kl_is_zero_at_the_start():
    d = F.stale_drift(n_steps=3, n_batches=300)
    assert d.kl[0] == 0.0 and d.kl[1] > 0 and d.cosine[0] > 0.99
    stale = d.rel_bias("none")
    assert stale[3] > stale[1] > 3 * d.rel_bias_se("none")[1]
    assert "trajectory" in d.table()
