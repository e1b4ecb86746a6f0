"""Notebook 06 (GRPO): its exercises, widgets, figures and the measurements behind its claims."""
import math

import pytest
import torch
from matplotlib.figure import Figure

from pgcourse import grpo
from pgcourse.lessons import nb06 as F
from pgcourse.figures import registry
from pgcourse.grading import exercises
from pgcourse.widgets import widgets
from exercise_contract import assert_fails_with_case, assert_inputs_isolated, assert_not_attempted, assert_passes

REFERENCES = {
    "06.group_advantages": grpo.group_advantages,
    "06.k3": grpo.kl_k3,
    "06.aggregate_tokens": grpo.aggregate_tokens,
}


def _population_std(rewards, eps=1e-4, scale=True):
    c = rewards - rewards.mean(1, keepdim=True)
    return c / (rewards.std(1, unbiased=False, keepdim=True) + eps) if scale else c


def _masked_mean_by_multiplying(values, mask, loss_type="grpo"):
    m = mask.to(values.dtype)
    if loss_type == "grpo":
        return ((values * m).sum(1) / m.sum(1)).mean()
    if loss_type == "bnpo":
        return (values * m).sum() / m.sum()
    return (values * m).sum() / values.numel()


# Plausible mistakes, one per exercise: each must fail with a helpful message.
WRONG = {
    "06.group_advantages": _population_std,                                    # no Bessel correction
    "06.k3": lambda logp, ref: torch.exp(logp - ref) - (logp - ref) - 1,       # r upside down
    "06.aggregate_tokens": _masked_mean_by_multiplying,                        # NaN * 0 leaks
}


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def test_notebook_06_exercises_are_registered():
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


def test_kl_widget_is_first_and_moves_with_distance():
    ws = [n for n in widgets() if n.startswith("06.")]
    assert ws[0] == "06.kl_estimators"
    w = widgets()["06.kl_estimators"]
    assert list(w.sliders)[0] == "distance"
    fig = w.draw(**w.defaults)
    assert isinstance(fig, Figure)
    assert all(ax.get_xlabel() and ax.get_ylabel() for ax in fig.axes)
    other = w.draw(**{**w.defaults, "distance": 2.5})
    title = lambda f: f.axes[0].get_title()  # noqa: E731  (shows the exact KL)
    assert title(fig) != title(other)


def test_group_advantages_widget_draws():
    w = widgets()["06.group_advantages"]
    fig = w.draw(**w.defaults)
    assert isinstance(fig, Figure) and fig.axes[0].get_xlabel() and fig.axes[0].get_ylabel()
    assert isinstance(w.draw(group_size=4, correct=9, scale="mean only"), Figure)   # correct > G is clamped


def test_figures_are_registered():
    figs = registry()
    for name in ("06_kl_estimators.png", "06_grpo_vs_reinforce.png", "06_loss_types.png"):
        assert name in figs


def test_kl_figure_builds():
    fig = F.kl_figure()
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    assert all(ax.get_xlabel() and ax.get_ylabel() for ax in fig.axes)


def test_training_figures_build_from_given_runs():
    """The two training figures drawn from tiny runs (the real ones are checked by the notebook and the figures CLI)."""
    tiny = grpo.GRPOConfig(steps=4, prompts_per_step=8, eval_every=2)
    runs = F.compare_advantages(config=tiny)
    assert set(runs) == {(m, b) for m in F.METHODS for b in (0.0, F.FORMAT_BONUS)}
    fig = F.comparison_figure(runs)
    assert isinstance(fig, Figure) and all(ax.get_xlabel() for ax in fig.axes)
    lt = F.loss_type_runs(config=tiny, done={"grpo": runs[("group", 0.0)]})
    assert list(lt) == list(grpo.LOSS_TYPES) and lt["grpo"] is runs[("group", 0.0)]
    fig = F.loss_types_figure(lt)
    assert isinstance(fig, Figure) and fig.axes[0].get_xlabel() and fig.axes[0].get_ylabel()


def test_kl_table_k1_k3_unbiased_k2_biased():
    for row in F.kl_estimator_table(distances=(0.5, 2.0), n_samples=50_000):
        for k in ("k1", "k3"):
            assert abs(row.mean[k] - row.kl) < 4 * row.se[k] + 1e-12
            assert math.isclose(row.exact[k][0], row.kl, rel_tol=1e-9, abs_tol=1e-12)
        assert row.exact["k2"][0] > row.kl
        assert row.std["k3"] < row.std["k1"]
    row = F.kl_estimator_table(distances=(2.0,), n_samples=50_000)[0]
    assert row.mean["k2"] - row.kl > 4 * row.se["k2"]          # k2's bias is measurable


def test_advantage_table_matches_formula():
    for k, a_ok, a_bad, total in F.advantage_table(8, eps=0.0):
        if 0 < k < 8:
            p = k / 8
            s = math.sqrt(8 / 7 * p * (1 - p))
            assert math.isclose(a_ok, (1 - p) / s, rel_tol=1e-9) and math.isclose(a_bad, -p / s, rel_tol=1e-9)
    ends = [row for row in F.advantage_table(8) if row[0] in (0, 8)]
    assert [row[3] for row in ends] == [0.0, 0.0]                     # all equal: no signal (eps avoids 0/0)


def test_token_weights_follow_the_normalizations():
    tw = F.token_weights(n_prompts=64)
    L = torch.tensor(tw.lengths, dtype=torch.float64)
    t = lambda xs: torch.tensor(xs, dtype=torch.float64)  # noqa: E731
    tokens = L + 1                                                     # digits and EOS
    assert torch.allclose(t(tw.per_token["grpo"]), tokens[0] / tokens, rtol=1e-4)
    for lt in ("bnpo", "dr_grpo"):
        assert torch.allclose(t(tw.per_token[lt]), torch.ones(len(L), dtype=torch.float64), rtol=1e-4)
        assert torch.allclose(t(tw.per_sequence[lt]), tokens / tokens[0], rtol=1e-4)
    assert torch.allclose(t(tw.per_sequence["grpo"]), torch.ones(len(L), dtype=torch.float64), rtol=1e-4)
