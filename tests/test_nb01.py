"""Notebook 01 (full return, REINFORCE): its exercise checks, widget and figures."""
import io
import math

import matplotlib
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from pgcourse.estimators import full_return_weights, pg_loss
from pgcourse.figures import FIGURES_DIR, registry, save
from pgcourse.lessons import nb01 as F
from pgcourse.grading import check, evaluate, exercises
from pgcourse.mdp import all_episodes, coin_flips, delayed_reward, early_rewards, frozen_lake
from pgcourse.policies import softmax_log_prob, softmax_score
from pgcourse.returns import discounted_return, reward_to_go
from pgcourse.variance import Row, exact_moments, gradient_samples, summarize
from pgcourse.widgets import widgets
from exercise_contract import assert_fails_with_case, assert_inputs_isolated, assert_not_attempted, assert_passes

matplotlib.use("Agg")

NAMES = ("01.episode_return", "01.softmax_score", "01.surrogate_loss", "01.reinforce_weights", "01.bandit_variance")
REFERENCE = {"01.episode_return": lambda rewards, gamma: discounted_return(rewards, gamma)[0],
             "01.softmax_score": softmax_score, "01.surrogate_loss": pg_loss,
             "01.reinforce_weights": full_return_weights, "01.bandit_variance": F.bandit_variance}


# ---- exercises ----------------------------------------------------------------------------------

def test_all_exercises_registered_easy_to_hard():
    table = exercises()
    assert [n for n in table if n.startswith("01.")] == list(NAMES)
    for name in NAMES:
        assert len(table[name].cases()) >= 5
    kinds = {table[n].kind for n in NAMES}
    assert {"debug", "predict"} <= kinds
    points = [table[n].points for n in NAMES]
    assert points == sorted(points), "exercises run from easy (few points) to hard"


@pytest.mark.parametrize("name", NAMES)
def test_reference_passes(name, capsys):
    assert_passes(name, REFERENCE[name], capsys)


@pytest.mark.parametrize("name", NAMES)
def test_not_attempted(name, capsys):
    assert_not_attempted(name, capsys)


@pytest.mark.parametrize("name", [n for n in NAMES if n != "01.surrogate_loss"])   # (its logp carries autograd)
def test_inputs_isolated(name):
    assert_inputs_isolated(name, REFERENCE[name])


def _message(name, fn) -> str:
    return assert_fails_with_case(name, fn)


def test_episode_return_undiscounted_fails():
    msg = _message("01.episode_return", lambda rewards, gamma: rewards.sum())
    assert "1 + 0.5*2" in msg


def test_episode_return_discounts_from_one_fails():
    def off_by_one(rewards, gamma):    # gamma^(k+1): the first reward discounted too
        return (gamma ** torch.arange(1, rewards.shape[0] + 1, dtype=rewards.dtype) * rewards).sum()
    _message("01.episode_return", off_by_one)


def test_episode_return_reward_to_go_vector_fails():
    _message("01.episode_return", lambda rewards, gamma: reward_to_go(rewards, gamma))


def test_surrogate_without_detach_fails():
    def no_detach(logp, weights, mask=None):
        if mask is not None:
            logp = torch.where(mask, logp, torch.zeros_like(logp))
        return -(logp * weights).sum() / logp[..., 0].numel()
    assert "detach" in _message("01.surrogate_loss", no_detach)


def test_surrogate_detached_logp_fails():
    def detached(logp, weights, mask=None):
        return pg_loss(logp.detach(), weights, mask)
    assert "no gradient" in _message("01.surrogate_loss", detached)


def test_surrogate_mean_over_steps_fails():
    def per_step(logp, weights, mask=None):
        if mask is not None:
            logp = torch.where(mask, logp, torch.zeros_like(logp))
        return -(logp * weights.detach()).mean()
    assert "loss value" in _message("01.surrogate_loss", per_step)


def test_surrogate_multiplying_by_mask_fails_on_minus_inf():
    def times_mask(logp, weights, mask=None):
        if mask is not None:
            logp = logp * mask
        return -(logp * weights.detach()).sum() / logp[..., 0].numel()
    assert "-inf" in _message("01.surrogate_loss", times_mask)


def test_surrogate_wrong_gradient_fails():
    # right value, wrong gradient: the loss's value is pg_loss, but it depends on logp squared-ish
    def wrong_grad(logp, weights, mask=None):
        ref = pg_loss(logp, weights, mask).detach()
        if mask is not None:
            logp = torch.where(mask, logp, torch.zeros_like(logp))
        bump = (logp ** 2).sum() - (logp ** 2).sum().detach()      # value 0, gradient 2 logp
        return ref + bump
    assert "gradient with respect to logp" in _message("01.surrogate_loss", wrong_grad)


def test_softmax_score_naive_exp_fails():
    def naive(logits, state, action):
        p = torch.exp(logits[state]) / torch.exp(logits[state]).sum()
        out = torch.zeros_like(logits)
        out[state] = -p
        out[state, action] += 1
        return out
    assert "large logits" in _message("01.softmax_score", naive)


def test_softmax_score_forgets_minus_pi_fails():
    def one_hot(logits, state, action):
        out = torch.zeros_like(logits)
        out[state, action] = 1.0
        return out
    _message("01.softmax_score", one_hot)


# the debug exercise: the colleague's length-normalized weights pass the naive one-step case only

def test_colleague_weights_fail_with_the_exact_gradient():
    msg = _message("01.reinforce_weights", F.colleague_weights)
    first = msg.splitlines()[0]
    assert first.startswith("✗ 01.reinforce_weights: 1/6 cases"), first
    assert "Case 2 of 6 fails" in msg and "summed exactly over all 8 trajectories" in msg and "biased" in msg
    outcome = evaluate("01.reinforce_weights", F.colleague_weights)
    assert 1 not in outcome.failed_cases, "the naive test (one step) passes with the bug"


def test_reward_to_go_is_not_reinforce_weights_but_unbiased():
    # the reward-to-go weights are unbiased too: they pass every exact-gradient case, but not the value case
    from pgcourse.estimators import reward_to_go_weights
    outcome = evaluate("01.reinforce_weights", reward_to_go_weights)
    assert outcome.failed_cases == [6], outcome.failed_cases


def test_undiscounted_weights_fail_where_gamma_is_below_one():
    outcome = evaluate("01.reinforce_weights", lambda r, gamma, dones: full_return_weights(r, 1.0, dones))
    assert not outcome.passed and 1 not in outcome.failed_cases and 4 in outcome.failed_cases


def test_weights_of_the_wrong_shape_are_reported():
    msg = _message("01.reinforce_weights", lambda r, gamma, dones: full_return_weights(r, gamma, dones)[..., 0])
    assert "shaped like rewards" in msg


# the predict exercise: the bandit's variance

def test_bandit_variance_without_the_squared_mean_fails():
    def second_moment_only(logits, rewards, batch_size):
        pi = torch.softmax(logits, -1)
        diff = torch.eye(pi.numel(), dtype=pi.dtype) - pi
        return float((pi * rewards ** 2 * diff.pow(2).sum(-1)).sum()) / batch_size
    msg = _message("01.bandit_variance", second_moment_only)
    assert "uniform policy" in msg and "expected: 1.125" in msg


def test_bandit_variance_forgetting_the_batch_fails():
    msg = _message("01.bandit_variance", lambda lg, r, b: F.bandit_variance(lg, r, 1))
    assert "batch of 16" in msg


def test_bandit_variance_closed_form_is_exact_and_matches_sampling():
    gen = torch.Generator().manual_seed(3)
    logits, rewards = torch.randn(4, generator=gen, dtype=torch.float64), torch.randn(4, generator=gen, dtype=torch.float64)
    exact = exact_moments(F.bandit(rewards), logits.view(1, 4), "full_return").trace_var
    assert F.bandit_variance(logits, rewards, 1) == pytest.approx(exact, rel=1e-12)
    assert F.bandit_variance(logits, rewards, 8) == pytest.approx(exact / 8, rel=1e-12)
    row = summarize(gradient_samples(F.bandit(rewards), logits.view(1, 4), "full_return", 8, 20000, seed=1),
                    F.bandit(rewards).exact_gradient(logits.view(1, 4)))
    assert abs(row.variance - exact / 8) < 4 * row.variance_se


def test_bandit_needs_two_arms():
    with pytest.raises(ValueError, match="rewards"):
        F.bandit([1.0])


# ---- exact sums over every trajectory (pgcourse.mdp.all_episodes, pgcourse.variance.exact_moments) ----------------

@pytest.mark.parametrize("make", [lambda: coin_flips(horizon=4), lambda: early_rewards(horizon=4),
                                  lambda: delayed_reward(length=3, horizon=6, gamma=0.9)])
def test_all_episodes_sum_to_one_and_give_the_exact_return_and_gradient(make):
    m = make()
    logits = 0.5 * torch.randn(m.n_states, m.n_actions, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ep, p = all_episodes(m, logits)
    assert float(p.sum()) == pytest.approx(1.0, abs=1e-12) and bool((p > 0).all())
    R = full_return_weights(ep.rewards, m.gamma, ep.dones)[:, 0]
    assert float((p * R).sum()) == pytest.approx(float(m.expected_return(logits)), abs=1e-12)
    moments = exact_moments(m, logits, "full_return")
    torch.testing.assert_close(moments.mean, m.exact_gradient(logits), atol=1e-12, rtol=0)
    # the layout of sampled episodes: a real step is masked in, the padding after the end is not
    assert torch.equal(ep.mask, torch.cumsum(ep.dones.int(), -1) - ep.dones.int() == 0)
    assert bool((ep.rewards[~ep.mask] == 0).all())


def test_exact_variance_matches_sampling():
    m = coin_flips(horizon=4)
    logits = torch.tensor([[0.3, -0.2], [-0.5, 0.4]], dtype=torch.float64)
    exact = exact_moments(m, logits, "full_return").trace_var
    row = summarize(gradient_samples(m, logits, "full_return", 1, 40000, seed=3), m.exact_gradient(logits))
    assert abs(row.variance - exact) < 4 * row.variance_se


def test_all_episodes_refuses_too_many():
    with pytest.raises(ValueError, match="max_episodes"):
        all_episodes(frozen_lake(), F.lake_policy(), max_episodes=1000)
    with pytest.raises(ValueError, match="psi"):
        exact_moments(coin_flips(horizon=2), torch.zeros(2, 2, dtype=torch.float64), lambda e, m, lg: e.rewards[:, 0])


def test_cases_do_not_mutate_between_checks():
    # the check deep-copies its inputs: a learner who writes into them cannot spoil the next run
    def inplace(rewards, gamma, dones):
        out = full_return_weights(rewards, gamma, dones)
        rewards.zero_()
        return out
    check("01.reinforce_weights", inplace)
    check("01.reinforce_weights", full_return_weights)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_softmax_score_reference_equals_autograd(seed):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(5, 3, generator=g, dtype=torch.float64) * 3
    for s in range(5):
        for a in range(3):
            th = logits.clone().requires_grad_(True)
            (auto,) = torch.autograd.grad(softmax_log_prob(th, torch.tensor(s), torch.tensor(a)), th)
            torch.testing.assert_close(softmax_score(logits, s, a), auto)


# ---- widget -------------------------------------------------------------------------------------

def test_widget_draws_at_defaults():
    w = widgets()["01.variance"]
    assert list(w.sliders)[0] == "batch_size"
    fig = w.draw(**w.defaults)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert ax.get_xlabel() and ax.get_ylabel()
    assert "variance" in ax.get_title()


@pytest.mark.parametrize("params", [dict(batch_size=1.0, horizon=1), dict(batch_size=15.999999, horizon=3),
                                    dict(batch_size=256.0, horizon=2), dict(batch_size=256.0, horizon=50),
                                    dict(batch_size=1.0, horizon=50)])
def test_widget_other_settings(params):
    fig = widgets()["01.variance"].draw(**params)
    title = fig.axes[0].get_title()
    assert f"B = {int(round(params['batch_size']))}," in title and f"H = {params['horizon']}" in title


def test_widget_changes_with_its_first_slider():
    w = widgets()["01.variance"]
    a = w.draw(**w.defaults).axes[0].get_title()
    b = w.draw(**{**w.defaults, "batch_size": 64.0}).axes[0].get_title()
    assert a != b


def test_widget_horizon_widens_on_a_fixed_axis_with_zero_marked():
    from matplotlib.patches import StepPatch
    w = widgets()["01.variance"]
    short, long = (w.draw(batch_size=16.0, horizon=h).axes[0] for h in (2, 40))
    assert short.get_xlim() == long.get_xlim(), "the axis must not rescale with the spread"

    def central(ax):     # the share of estimates within 10 exact values of zero
        data = next(p for p in ax.patches if isinstance(p, StepPatch)).get_data()
        mid = (data.edges[:-1] + data.edges[1:]) / 2
        return data.values[np.abs(mid) < 10].sum() / data.values.sum()

    assert central(short) > central(long) + 0.3
    assert any(float(line.get_xdata()[0]) == 0.0 for line in short.lines), "zero is marked"
    assert any(float(line.get_xdata()[0]) == 1.0 for line in short.lines), "the exact value (1 in these units) is marked"


# ---- figures and measurements -------------------------------------------------------------------

def test_figure_registered():
    assert registry()["01_unbiasedness.png"] is F.make_unbiasedness


def test_key_figure_is_deterministic(tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    save(F.make_unbiasedness(), a)
    save(F.make_unbiasedness(), b)
    assert a.read_bytes() == b.read_bytes()
    assert FIGURES_DIR.name == "figures"


def test_unbiasedness_measurement_within_4_se():
    """The claim the key figure shows: every coordinate's mean is within 4 SE of the exact gradient."""
    lake, theta = frozen_lake(), F.lake_policy()
    samples = gradient_samples(lake, theta, "full_return", **F.UNBIASED)
    exact = lake.exact_gradient(theta)
    live = ~lake.terminal
    se = samples.std(0) / math.sqrt(samples.shape[0])
    z = ((samples.mean(0) - exact) / se)[live]
    assert bool((z.abs() < 4).all())
    # and the estimates are not trivially zero: the largest coordinates are many SE away from 0
    assert float((exact[live].abs() / se[live]).max()) > 10


def test_lake_policy():
    theta = F.lake_policy()
    assert theta.shape == (16, 4) and theta.dtype == torch.float64
    assert torch.equal(theta.argmax(-1), torch.tensor(F.LAKE_GOOD_ACTIONS))


def test_power_law_fit_recovers_exponent():
    x = np.array([1, 2, 4, 8, 16, 32], dtype=float)
    slope, se, icpt = F.power_law_fit(x, 3.0 * x ** -1.0)
    assert slope == pytest.approx(-1.0) and se == pytest.approx(0.0, abs=1e-9) and icpt == pytest.approx(math.log(3))
    rng = np.random.default_rng(0)
    noisy = 2.0 * x ** 3 * np.exp(rng.normal(0, 0.05, x.size))
    slope, se, _ = F.power_law_fit(x, noisy)
    assert abs(slope - 3) < 4 * se


def test_power_law_fit_needs_three_points():
    with pytest.raises(ValueError, match="at least 3"):
        F.power_law_fit([1, 2], [1, 2])


def _rows(values):
    return [Row("full_return", 0.0, 0.0, v, 0.05 * v, v, 0.05 * v) for v in values]


def test_plot_functions_return_labelled_figures():
    figs = [F.plot_batch_size([1, 2, 4, 8], _rows([4.0, 2.0, 1.0, 0.5])),
            F.plot_horizon([5, 10, 20], _rows([1.0, 8.0, 64.0]), [0.1, 0.2, 0.4])]
    for fig in figs:
        assert isinstance(fig, Figure)
        for ax in fig.axes:
            assert ax.get_xlabel() and ax.get_ylabel()
        fig.savefig(io.BytesIO(), format="png")
