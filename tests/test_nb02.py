"""Notebook 02 (reward-to-go): its exercises, widget, figure and the prediction it compares with."""
import math

import matplotlib
import pytest
import torch
from matplotlib.figure import Figure

from pgcourse.estimators import discount_factors, full_return_weights
from pgcourse.lessons import nb02 as fig02
from pgcourse.figures import registry
from pgcourse.grading import evaluate, exercises
from pgcourse.grading.nb02 import variance_ratio_reference
from pgcourse.mdp import coin_flips
from pgcourse.returns import reward_to_go
from pgcourse.variance import exact_moments, gradient_samples, summarize
from pgcourse.widgets import widgets
from exercise_contract import assert_fails_with_case, assert_inputs_isolated, assert_not_attempted, assert_passes

matplotlib.use("Agg")


# ---- reference solutions, as a learner would write them ----------------------------------------

def rtg_vectorized(rewards, gamma, dones):
    out = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[..., 0])
    for t in range(rewards.shape[-1] - 1, -1, -1):
        running = rewards[..., t] + gamma * (~dones[..., t]) * running
        out[..., t] = running
    return out


def ratio(full, rtg):
    return float(full.reshape(len(full), -1).var(0).sum() / rtg.reshape(len(rtg), -1).var(0).sum())


def rtg_weights(rewards, gamma, dones):
    return rtg_vectorized(rewards, gamma, dones) * discount_factors(dones, gamma, rewards.dtype)


# ---- wrong answers: each must be caught ---------------------------------------------------------

def rtg_ignores_dones(rewards, gamma, dones):
    return rtg_vectorized(rewards, gamma, torch.zeros_like(dones))


def rtg_resets_after_done(rewards, gamma, dones):  # cuts one step too late
    shifted = torch.zeros_like(dones)
    shifted[..., 1:] = dones[..., :-1]
    return rtg_vectorized(rewards, gamma, shifted)


def rtg_no_discount(rewards, gamma, dones):
    return rtg_vectorized(rewards, 1.0, dones)


def ratio_biased_variance(full, rtg):
    return float(full.reshape(len(full), -1).var(0, unbiased=False).sum()
                 / rtg.reshape(len(rtg), -1).var(0, unbiased=False).sum())


def ratio_second_moment(full, rtg):
    return float((full ** 2).sum() / len(full) / ((rtg ** 2).sum() / len(rtg)))


def weights_without_gamma_t(rewards, gamma, dones):   # the practitioners' G_t: biased for J_gamma when gamma < 1
    return rtg_vectorized(rewards, gamma, dones)


def weights_full_return(rewards, gamma, dones):       # unbiased, but not the reward-to-go
    return full_return_weights(rewards, gamma, dones)


def predict_ignoring_grad(H, noise, edge, B):          # forgets |grad J|^2
    second = (noise ** 2 + noise * edge + edge ** 2) / 2
    return (H * second / 2 / B, second / 2 / B)


def predict_ratio_h(H, noise, edge, B):                # right full-return variance, then divides by H
    full, _ = fig02.gamma0_variances(H, noise, edge, B)
    return (full, full / H)


def predict_one_episode(H, noise, edge, B):            # forgets the batch
    return fig02.gamma0_variances(H, noise, edge, 1)


GOOD = {"02.variance_ratio": ratio, "02.reward_to_go_vectorized": rtg_vectorized, "02.reward_to_go_weights": rtg_weights,
        "02.predict_gamma0": fig02.gamma0_variances}
BAD = [("02.reward_to_go_vectorized", rtg_ignores_dones), ("02.reward_to_go_vectorized", rtg_resets_after_done),
       ("02.reward_to_go_vectorized", rtg_no_discount),
       ("02.variance_ratio", ratio_biased_variance), ("02.variance_ratio", ratio_second_moment),
       ("02.reward_to_go_weights", fig02.colleague_rtg_weights), ("02.reward_to_go_weights", weights_without_gamma_t),
       ("02.reward_to_go_weights", weights_full_return),
       ("02.predict_gamma0", predict_ignoring_grad), ("02.predict_gamma0", predict_ratio_h),
       ("02.predict_gamma0", predict_one_episode)]


def test_exercises_registered_easy_to_hard():
    table = exercises()
    names = [n for n in table if n.startswith("02.")]
    assert names == list(GOOD)
    points = [table[n].points for n in names]
    assert points == sorted(points)
    assert {table[n].kind for n in names} >= {"debug", "predict"}


@pytest.mark.parametrize("name", list(GOOD))
def test_reference_passes(name, capsys):
    assert_passes(name, GOOD[name], capsys)


@pytest.mark.parametrize("name,fn", BAD, ids=[f"{n}-{f.__name__}" for n, f in BAD])
def test_wrong_answer_fails_with_input_expected_got(name, fn):
    assert_fails_with_case(name, fn)


@pytest.mark.parametrize("name", list(GOOD))
def test_not_attempted(name, capsys):
    assert_not_attempted(name, capsys)


@pytest.mark.parametrize("name", list(GOOD))
def test_inputs_isolated(name):
    assert_inputs_isolated(name, GOOD[name])


def test_colleague_passes_the_naive_test_and_fails_the_exact_gradient():
    outcome = evaluate("02.reward_to_go_weights", fig02.colleague_rtg_weights)
    assert outcome.failed_cases[0] == 2 and 1 not in outcome.failed_cases
    msg = assert_fails_with_case("02.reward_to_go_weights", fig02.colleague_rtg_weights)
    assert "r_t depends on a_t" in msg and "summed exactly over all 8 trajectories" in msg and "biased" in msg


def test_full_return_weights_are_unbiased_but_not_the_reward_to_go():
    assert evaluate("02.reward_to_go_weights", weights_full_return).failed_cases == [6]


def test_dropping_gamma_t_fails_only_where_gamma_is_below_one():
    failed = evaluate("02.reward_to_go_weights", weights_without_gamma_t).failed_cases
    assert failed and not {1, 2, 3} & set(failed)


def test_predict_message_names_the_case():
    msg = assert_fails_with_case("02.predict_gamma0", predict_ignoring_grad)
    assert "one step: both estimators are the same" in msg


def test_gamma0_closed_form_is_exact():
    for H, noise, edge, B in [(1, 1.0, 0.1, 1), (3, 2.0, 0.5, 4), (5, 0.7, 0.3, 16)]:
        predicted = fig02.gamma0_variances(H, noise, edge, B)
        m = coin_flips(horizon=H, gamma=0.0, noise=noise, edge=edge)
        lg = torch.zeros(2, 2, dtype=torch.float64)
        exact = tuple(exact_moments(m, lg, p).trace_var / B for p in fig02.PSIS)
        assert predicted == pytest.approx(exact, rel=1e-12)


def test_cases_cover_episode_boundaries_and_batches():
    cases = exercises()["02.reward_to_go_vectorized"].cases()
    dones = [c.args[2] for c in cases]
    assert any(int(d.sum()) >= 2 and d.dim() == 1 for d in dones)       # several episodes in one row
    assert any(bool(d[..., -1].all()) for d in dones)                    # done at the last step
    assert any(d.dim() >= 2 for d in dones)                              # a batch
    gammas = {c.args[1] for c in cases}
    assert 1.0 in gammas and any(g < 1 for g in gammas)


def test_variance_ratio_reference_is_the_trace_ratio():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(30, 3, 2, generator=gen, dtype=torch.float64), torch.randn(40, 3, 2, generator=gen, dtype=torch.float64)
    assert math.isclose(variance_ratio_reference(a, b), ratio(a, b), rel_tol=1e-12)


def test_area_under_curve_and_paired():
    from pgcourse.train import History
    h = History(episode_returns=[10.0] * 20 + [30.0] * 20, episode_end_steps=list(range(10, 410, 10)))
    # on the grid 100, 200, 300, 400: moving means 10, 10, 20 (ten of each), 30
    assert fig02.area_under_curve(h, 400, window=20, points=4) == pytest.approx(17.5)
    p = fig02.Paired([1.0, 2.0, 3.0], [2.0, 4.0, 6.0])
    assert p.diffs == [1.0, 2.0, 3.0] and p.summary()[0] == pytest.approx(2.0)


# ---- the closed-form prediction the notebook derives -------------------------------------------

def test_prediction_small_cases_by_hand():
    # H = 1: both weights are r_0; E[r^2] = sigma^2 + mu^2 with mu = 0.55, sigma^2 = 0.2525
    full, rtg = fig02.coin_flips_prediction(1)
    assert math.isclose(full, 0.5 * (0.2525 + 0.55 ** 2)) and math.isclose(full, rtg)
    # gamma = 0: the full return is r_0 at every step; the reward-to-go is 0 after step 0: ratio H
    full, rtg = fig02.coin_flips_prediction(7, gamma=0.0)
    assert math.isclose(full / rtg, 7.0)


@pytest.mark.parametrize("horizon,gamma", [(6, 1.0), (8, 0.8)])
def test_prediction_matches_measurement_without_edge(horizon, gamma):
    """With edge = 0 and the uniform policy the prediction is exact: measured within 4 SE."""
    m = coin_flips(horizon=horizon, gamma=gamma, edge=0.0)
    logits = torch.zeros(2, 2, dtype=torch.float64)
    predicted = fig02.coin_flips_prediction(horizon, gamma, edge=0.0)
    for psi, pred in zip(fig02.PSIS, predicted):
        row = summarize(gradient_samples(m, logits, psi, 1, 20000, seed=1), m.exact_gradient(logits))
        assert abs(row.variance - pred) < 4 * row.variance_se, (psi, row, pred)


def test_past_rewards_add_no_signal():
    """The full return's extra term (past rewards) has mean 0 within 4 SE (causality)."""
    m = coin_flips(horizon=8)
    logits = torch.tensor([[0.3, -0.2], [-0.5, 0.4]], dtype=torch.float64)

    def past(ep, mdp, lg):
        return (reward_to_go(ep.rewards, 1.0, ep.dones)[..., :1].expand_as(ep.rewards)
                - reward_to_go(ep.rewards, 1.0, ep.dones))

    row = summarize(gradient_samples(m, logits, past, 1, 20000, seed=2), torch.zeros(2, 2, dtype=torch.float64))
    assert row.bias < 4 * row.bias_se
    assert row.variance > 0


def test_sweep_ratio_and_se():
    pts = fig02.sweep(coin_flips, (1, 6), (1.0,), n_batches=2000)
    assert abs(pts[0].ratio - 1.0) < 1e-9           # one step: both weights are r_0
    assert pts[1].ratio > 1 + 4 * pts[1].ratio_se   # six steps: the reward-to-go removes variance
    assert pts[1].predicted is not None


# ---- widget and figure ---------------------------------------------------------------------------

def test_widget_defaults_return_figure():
    w = widgets()["02.variance"]
    assert list(w.sliders)[0] == "horizon"
    assert isinstance(w.draw(**w.defaults), Figure)


@pytest.mark.parametrize("mdp", ["early_rewards", "frozen_lake"])
def test_widget_other_mdps(mdp):
    w = widgets()["02.variance"]
    params = dict(w.defaults, mdp=mdp, horizon=6, gamma=0.9, batch_size=4)
    assert isinstance(w.draw(**params), Figure)


@pytest.mark.parametrize("params", [dict(mdp="frozen_lake", horizon=1), dict(mdp="frozen_lake", horizon=5),
                                    dict(mdp="frozen_lake", gamma=0.0), dict(mdp="coin_flips", gamma=0.0, horizon=40),
                                    dict(mdp="early_rewards", horizon=1, gamma=0.0, batch_size=1),
                                    dict(mdp="frozen_lake", horizon=40, gamma=1.0, batch_size=64)])
def test_widget_handles_zero_variance_and_extremes(params):
    """FrozenLake's goal is 6 steps away: with H <= 5 or gamma = 0 every estimate is exactly 0 (no ZeroDivisionError)."""
    w = widgets()["02.variance"]
    fig = w.draw(**dict(w.defaults, **params))
    title = fig.axes[1].get_title()
    assert ("variance ratio" in title) or ("no variance" in title)
    if params["mdp"] == "frozen_lake" and (params.get("horizon", 10) <= 5 or params.get("gamma") == 0.0):
        assert "exactly 0" in title


def test_widget_rejects_unknown_mdp():
    w = widgets()["02.variance"]
    with pytest.raises(ValueError, match="mdp"):
        w.draw(**dict(w.defaults, mdp="cliff"))


def test_figure_registered_and_draws():
    assert registry()["02_reward_to_go.png"] is fig02.make
    assert isinstance(fig02.draw(fig02.compute(n_batches=100)), Figure)
