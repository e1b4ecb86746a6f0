"""Notebook 05 (PPO): its exercise checks, widget, figures and the measurements behind its claims."""
import copy
import io
import math
from dataclasses import replace

import matplotlib
import pytest
import torch
from matplotlib.figure import Figure

from pgcourse import ppo as P
from pgcourse.lessons import nb05 as F
from pgcourse.figures import registry
from pgcourse.grading import evaluate, exercises
from pgcourse.grading.nb05 import FakeStep, enumerated_ratio_variance
from pgcourse.mdp import coin_flips
from pgcourse.ppo import clip_loss, minibatch_epochs
from pgcourse.widgets import widgets
from exercise_contract import assert_fails_with_case, assert_inputs_isolated, assert_not_attempted, assert_passes

matplotlib.use("Agg")

NAMES = ("05.ratio_variance", "05.clipped_surrogate", "05.approx_kl", "05.minibatch_epochs", "05.ppo_loss",
         "05.ppo_update")
KINDS = {"05.ratio_variance": "predict", "05.clipped_surrogate": "debug", "05.approx_kl": "transcribe",
         "05.minibatch_epochs": "transcribe", "05.ppo_loss": "build", "05.ppo_update": "build"}
REFERENCE = {
    "05.ratio_variance": F.trajectory_ratio_variance,
    "05.clipped_surrogate": lambda logp, old_logp, advantages, clip_eps=0.2: clip_loss(logp, old_logp, advantages,
                                                                                        clip_eps)[0],
    "05.approx_kl": lambda logp, old_logp: clip_loss(logp, old_logp, torch.ones_like(logp))[1]["approx_kl"],
    "05.minibatch_epochs": minibatch_epochs,
    "05.ppo_loss": P.ppo_loss,
    "05.ppo_update": P.ppo_update,
}


# ---- exercises ----------------------------------------------------------------------------------

def test_all_exercises_registered():
    table = exercises()
    for name in NAMES:
        assert name in table and len(table[name].cases()) >= 3 and table[name].kind == KINDS[name]


@pytest.mark.parametrize("name", NAMES)
def test_reference_passes(name, capsys):
    assert_passes(name, REFERENCE[name], capsys)


@pytest.mark.parametrize("name", NAMES)
def test_not_attempted(name, capsys):
    assert_not_attempted(name, capsys)


def _message(name, fn) -> str:
    return assert_fails_with_case(name, fn)


@pytest.mark.parametrize("name", ["05.ratio_variance", "05.ppo_loss"])
def test_inputs_isolated(name):
    assert_inputs_isolated(name, REFERENCE[name])


# ---- 05.ratio_variance (predict) ------------------------------------------------------------------

def test_enumeration_matches_the_closed_form():
    p_old, p_new = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64), torch.tensor([0.4, 0.4, 0.2], dtype=torch.float64)
    for H in (1, 2, 4):
        assert enumerated_ratio_variance(p_old, p_new, H) == pytest.approx(float(F.trajectory_ratio_variance(p_old, p_new, H)))


def test_variance_added_over_steps_fails():
    msg = _message("05.ratio_variance", lambda p_old, p_new, horizon: horizon * ((p_new ** 2 / p_old).sum() - 1))
    assert "not H chi^2" in msg


def test_second_moment_without_the_minus_one_fails():
    assert "variance is 0" in _message("05.ratio_variance", lambda p_old, p_new, horizon: (p_new ** 2 / p_old).sum() ** horizon)


# ---- 05.clipped_surrogate (debug) -------------------------------------------------------------------

def test_the_buggy_loss_passes_the_naive_cases_and_fails_for_negative_advantages():
    out = evaluate("05.clipped_surrogate", F.clipped_surrogate_with_a_bug)
    assert out.attempted and not out.passed and 0 < out.points < 2
    assert 1 not in out.failed_cases and 2 not in out.failed_cases      # ratio 1, and A > 0: the naive test passes
    assert "A < 0 and rho > 1 + eps" in out.failure


def test_clip_without_min_fails():
    def clip_only(logp, old_logp, advantages, clip_eps=0.2):
        ratio = torch.exp(logp - old_logp)
        return -(ratio.clamp(1 - clip_eps, 1 + clip_eps) * advantages).mean()
    assert "flat above 1 + eps" in _message("05.clipped_surrogate", clip_only)


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


# ---- 05.ppo_loss and 05.ppo_update (build) --------------------------------------------------------------

def _loss_parts(agent, mb, cfg, *, half=True, entropy_sign=-1.0, normalize=True):
    logits, v = agent(mb["obs"])
    lp = torch.log_softmax(logits, -1)
    logp = lp.gather(-1, mb["actions"].unsqueeze(-1)).squeeze(-1)
    ent = -(lp.exp() * lp).sum(-1).mean()
    a = mb["advantages"]
    if normalize and cfg.normalize_advantages and a.numel() > 1:
        a = (a - a.mean()) / (a.std() + 1e-8)
    pg, st = clip_loss(logp, mb["logp"], a, cfg.clip_eps if cfg.clip else math.inf)
    st = clip_loss(logp.detach(), mb["logp"], a, cfg.clip_eps)[1]
    vl = ((v - mb["returns"]) ** 2).mean() * (0.5 if half else 1.0)
    return pg + cfg.value_coef * vl + entropy_sign * cfg.entropy_coef * ent, st


def test_ppo_loss_with_the_entropy_added_fails():
    fn = lambda agent, mb, cfg: _loss_parts(agent, mb, cfg, entropy_sign=+1.0)  # noqa: E731
    assert "loss value" in _message("05.ppo_loss", fn)
    out = evaluate("05.ppo_loss", fn)
    assert 4 in out.failed_cases and 3 not in out.failed_cases   # the entropy case fails; without entropy it passes


def test_ppo_loss_without_the_half_fails():
    fn = lambda agent, mb, cfg: _loss_parts(agent, mb, cfg, half=False)  # noqa: E731
    assert "loss value" in _message("05.ppo_loss", fn)
    out = evaluate("05.ppo_loss", fn)
    assert 5 in out.failed_cases and 3 not in out.failed_cases   # value_coef 1.5 fails; value_coef 0 passes


def test_ppo_loss_without_advantage_normalization_fails():
    _message("05.ppo_loss", lambda agent, mb, cfg: _loss_parts(agent, mb, cfg, normalize=False))


def test_ppo_loss_returning_only_the_loss_fails():
    assert "(loss, stats)" in _message("05.ppo_loss", lambda agent, mb, cfg: P.ppo_loss(agent, mb, cfg)[0])


def test_update_without_gradient_clipping_fails():
    def no_clip(agent, opt, batch, cfg, generator):
        return P.ppo_update(agent, opt, batch, replace(cfg, max_grad_norm=1e9), generator)
    assert "approx_kl" in _message("05.ppo_update", no_clip)


def test_update_that_ignores_target_kl_fails():
    def no_stop(agent, opt, batch, cfg, generator):
        return P.ppo_update(agent, opt, batch, replace(cfg, target_kl=None), generator)
    assert "target_kl" in _message("05.ppo_update", no_stop)


def test_update_with_a_differently_written_correct_loss_passes(capsys):
    def update(agent, opt, batch, cfg, generator):
        log = []

        def step(idx):
            loss, st = _loss_parts(agent, {k: v[idx] for k, v in batch.items()}, cfg)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(list(agent.parameters()), cfg.max_grad_norm)
            opt.step()
            log.append(st)
            return st
        minibatch_epochs(step, batch["obs"].shape[0], cfg.n_epochs, cfg.n_minibatches, generator, cfg.target_kl)
        return {k: float(sum(s[k] for s in log)) / len(log) for k in ("approx_kl", "clip_fraction")}
    assert_passes("05.ppo_update", update, capsys)


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


@pytest.mark.parametrize("name", ["05_ppo_clip.png", "05_ppo_ratios.png", "05_bias_order.png"])
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
    assert all(abs(z) < 4 for z in rv.var_z(4))
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
    assert d.kl[0] == 0.0 and d.kl[1] > 0 and d.distance[0] == 0.0
    stale = d.rel("none")
    assert stale[3] > stale[1] > 3 * d.rel("none", "noise")[1]
    assert d.tests["none"][1].biased() and all(t.unbiased() for t in d.tests["trajectory"])
    assert "trajectory" in d.table() and "state term" in d.exact_table()


def test_expected_estimates_are_exact():
    """The sampled means agree with the closed forms; at theta_old all three are the exact gradient."""
    mdp, th0 = F.lesson_mdp()
    th = th0.clone()
    th[:, 1] += 0.5
    g0 = mdp.exact_gradient(th0)
    for c in F.CORRECTIONS:
        torch.testing.assert_close(F.expected_estimate(mdp, th0, th0, c), g0)
    old = F.sample_old(mdp, th0, batch_size=8, n_batches=800, seed=4)
    from pgcourse.stats import bias_test
    for c in F.CORRECTIONS:
        assert bias_test(F.estimates(old, th, c), F.expected_estimate(mdp, th0, th, c)).unbiased(), c
    s_term, q_term = F.bias_terms(mdp, th0, th)
    torch.testing.assert_close(s_term + q_term, F.expected_estimate(mdp, th0, th, "per_step") - mdp.exact_gradient(th))
    with pytest.raises(ValueError, match="correction"):
        F.expected_estimate(mdp, th0, th, "both")


def test_bias_order_slopes():
    o = F.bias_order(distances=(0.001, 0.01, 0.1))
    assert all(abs(s - 1) < 0.05 for s in o.slopes(o.grad_bias["per_step"]))
    assert all(abs(s - 2) < 0.05 for s in o.slopes(o.value_error))


def test_one_point_of_the_stored_sweep_reproduces():
    """The cheapest point of the stored sweep (VPG with 32 environments) rerun from scratch gives the stored numbers."""
    sweep = F.load_sweep()
    row = next(r for r in sweep.results["VPG"] if r["n_envs"] == 32)
    h = F.train("VPG", sweep.seeds[0], sweep.budget, lr=row["lr"], n_envs=32)
    assert h.mean_return_last(20) == pytest.approx(row["last20"][0])
    assert set(sweep.best("PPO")) == {"lr", "n_envs"}


def test_separated_is_a_permutation_test():
    ok, p, text = F.separated([3.0, 4.0, 5.0], [1.0, 2.0, 2.5])
    assert ok and p == pytest.approx(1 / 20) and "z =" in text
    assert not F.separated([3.0, 1.5], [2.0, 1.0])[0]
