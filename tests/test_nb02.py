"""Notebook 02 (reward-to-go): its exercises, widget, figure and the prediction it compares with."""
import math

import matplotlib
import pytest
import torch
from matplotlib.figure import Figure

from pgcourse.lessons import nb02 as fig02
from pgcourse.figures import registry
from pgcourse.grading import exercises
from pgcourse.grading.nb02 import variance_ratio_reference
from pgcourse.mdp import coin_flips
from pgcourse.returns import reward_to_go
from pgcourse.variance import gradient_samples, summarize
from pgcourse.widgets import widgets
from exercise_contract import assert_fails_with_case, assert_not_attempted, assert_passes

matplotlib.use("Agg")


# ---- reference solutions, as a learner would write them ----------------------------------------

def rtg_loop(rewards, gamma):
    out = torch.zeros_like(rewards)
    running = 0.0
    for t in range(rewards.shape[0] - 1, -1, -1):
        running = rewards[t] + gamma * running
        out[t] = running
    return out


def rtg_vectorized(rewards, gamma, dones):
    out = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[..., 0])
    for t in range(rewards.shape[-1] - 1, -1, -1):
        running = rewards[..., t] + gamma * (~dones[..., t]) * running
        out[..., t] = running
    return out


def ratio(full, rtg):
    return float(full.reshape(len(full), -1).var(0).sum() / rtg.reshape(len(rtg), -1).var(0).sum())


# ---- wrong answers: each must be caught ---------------------------------------------------------

def rtg_loop_no_discount(rewards, gamma):
    return rtg_loop(rewards, 1.0)


def rtg_loop_forward(rewards, gamma):  # the discounted sum of the PAST
    out, running = torch.zeros_like(rewards), 0.0
    for t in range(rewards.shape[0]):
        running = rewards[t] + gamma * running
        out[t] = running
    return out


def rtg_ignores_dones(rewards, gamma, dones):
    return rtg_vectorized(rewards, gamma, torch.zeros_like(dones))


def rtg_resets_after_done(rewards, gamma, dones):  # cuts one step too late
    shifted = torch.zeros_like(dones)
    shifted[..., 1:] = dones[..., :-1]
    return rtg_vectorized(rewards, gamma, shifted)


def ratio_biased_variance(full, rtg):
    return float(full.reshape(len(full), -1).var(0, unbiased=False).sum()
                 / rtg.reshape(len(rtg), -1).var(0, unbiased=False).sum())


def ratio_second_moment(full, rtg):
    return float((full ** 2).sum() / len(full) / ((rtg ** 2).sum() / len(rtg)))


def not_attempted(*args, **kwargs):
    raise NotImplementedError("Exercise: replace this line with your code")


GOOD = {"02.reward_to_go_loop": rtg_loop, "02.reward_to_go_vectorized": rtg_vectorized, "02.variance_ratio": ratio}
BAD = [("02.reward_to_go_loop", rtg_loop_no_discount), ("02.reward_to_go_loop", rtg_loop_forward),
       ("02.reward_to_go_vectorized", rtg_ignores_dones), ("02.reward_to_go_vectorized", rtg_resets_after_done),
       ("02.variance_ratio", ratio_biased_variance), ("02.variance_ratio", ratio_second_moment)]


def test_three_exercises_registered():
    assert {n for n in exercises() if n.startswith("02.")} == set(GOOD)


@pytest.mark.parametrize("name", sorted(GOOD))
def test_reference_passes(name, capsys):
    assert_passes(name, GOOD[name], capsys)


@pytest.mark.parametrize("name,fn", BAD, ids=[f"{n}-{f.__name__}" for n, f in BAD])
def test_wrong_answer_fails_with_input_expected_got(name, fn):
    assert_fails_with_case(name, fn)


@pytest.mark.parametrize("name", sorted(GOOD))
def test_not_attempted(name, capsys):
    assert_not_attempted(name, capsys)


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


def test_widget_rejects_unknown_mdp():
    w = widgets()["02.variance"]
    with pytest.raises(ValueError, match="mdp"):
        w.draw(**dict(w.defaults, mdp="cliff"))


def test_figure_registered_and_draws():
    assert registry()["02_reward_to_go.png"] is fig02.make
    assert isinstance(fig02.draw(fig02.compute(n_batches=100)), Figure)
