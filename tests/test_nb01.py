"""Notebook 01 (full return, REINFORCE): its exercise checks, widget and figures."""
import io
import math

import matplotlib
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from pgcourse.estimators import pg_loss
from pgcourse.figures import FIGURES_DIR, registry, save
from pgcourse.lessons import nb01 as F
from pgcourse.grading import check, exercises
from pgcourse.mdp import frozen_lake
from pgcourse.policies import softmax_log_prob, softmax_score
from pgcourse.returns import discounted_return
from pgcourse.variance import Row, gradient_samples
from pgcourse.widgets import widgets
from exercise_contract import assert_fails_with_case, assert_not_attempted, assert_passes

matplotlib.use("Agg")

NAMES = ("01.discounted_return", "01.surrogate_loss", "01.softmax_score")
REFERENCE = {"01.discounted_return": discounted_return, "01.surrogate_loss": pg_loss,
             "01.softmax_score": softmax_score}


# ---- exercises ----------------------------------------------------------------------------------

def test_all_exercises_registered():
    table = exercises()
    for name in NAMES:
        assert name in table
        assert len(table[name].cases()) >= 5


@pytest.mark.parametrize("name", NAMES)
def test_reference_passes(name, capsys):
    assert_passes(name, REFERENCE[name], capsys)


@pytest.mark.parametrize("name", NAMES)
def test_not_attempted(name, capsys):
    assert_not_attempted(name, capsys)


def _message(name, fn) -> str:
    return assert_fails_with_case(name, fn)


def test_discounted_return_ignoring_dones_fails():
    def whole_row(rewards, gamma=1.0, dones=None):
        T = rewards.shape[-1]
        disc = gamma ** torch.arange(T, dtype=rewards.dtype)
        return (rewards * disc).sum(-1, keepdim=True).expand_as(rewards).clone()
    msg = _message("01.discounted_return", whole_row)
    assert "episodes in one row" in msg


def test_discounted_return_reward_to_go_fails():
    from pgcourse.returns import reward_to_go
    _message("01.discounted_return", reward_to_go)


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


def test_cases_do_not_mutate_between_checks():
    # the check deep-copies its inputs: a learner who writes into them cannot spoil the next run
    def inplace(rewards, gamma=1.0, dones=None):
        out = discounted_return(rewards, gamma, dones)
        rewards.zero_()
        return out
    check("01.discounted_return", inplace)
    check("01.discounted_return", discounted_return)


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
                                    dict(batch_size=256.0, horizon=2)])
def test_widget_other_settings(params):
    fig = widgets()["01.variance"].draw(**params)
    title = fig.axes[0].get_title()
    assert f"B = {int(round(params['batch_size']))}," in title and f"H = {params['horizon']}" in title


def test_widget_changes_with_its_first_slider():
    w = widgets()["01.variance"]
    a = w.draw(**w.defaults).axes[0].get_title()
    b = w.draw(**{**w.defaults, "batch_size": 64.0}).axes[0].get_title()
    assert a != b


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
