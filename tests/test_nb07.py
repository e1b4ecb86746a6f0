"""Notebook 07 (GRPO: what goes wrong): its lesson functions, exercises, widget and figures."""
import math

import pytest
import torch
from matplotlib.figure import Figure

from pgcourse import kl
from pgcourse.grading import exercises
from pgcourse.lessons import nb07 as lesson
from pgcourse.lessons.nb07 import format_bonus, hacking, kl_direction, length, runs, sampling
from pgcourse.widgets import widgets
from exercise_contract import assert_fails_with_case, assert_inputs_isolated, assert_not_attempted, assert_passes

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def _k3_penalty(logp, ref_logp):
    log_r = ref_logp - logp
    return torch.exp(log_r) - log_r - 1


REFERENCES = {
    "07.k3_expected_gradient": lambda z, r: torch.softmax(z, -1) - torch.softmax(r, -1),
    "07.reverse_kl_penalty": lambda logp, ref_logp: 0.5 * (logp - ref_logp) ** 2,
}
# Plausible mistakes, one per exercise: each must fail with a helpful message.
WRONG = {
    "07.k3_expected_gradient": lambda z, r: kl.kl_gradient(z, r, "reverse"),   # the gradient of the value k3 estimates
    "07.reverse_kl_penalty": _k3_penalty,                                        # the colleague's k3: forward KL
}


def test_notebook_07_exercises_are_registered():
    table = exercises()
    assert set(REFERENCES) <= set(table)
    assert table["07.k3_expected_gradient"].kind == "predict" and table["07.reverse_kl_penalty"].kind == "debug"


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_reference_passes(name, capsys):
    assert_passes(name, REFERENCES[name], capsys)


@pytest.mark.parametrize("name", sorted(WRONG))
def test_wrong_answer_shows_input_expected_got(name):
    msg = assert_fails_with_case(name, WRONG[name])
    assert "REVERSE" in msg if name == "07.k3_expected_gradient" else "FORWARD" in msg


def test_k1_in_the_loss_is_diagnosed_as_zero():
    msg = assert_fails_with_case("07.reverse_kl_penalty", lambda logp, ref_logp: logp - ref_logp)
    assert "expected gradient is 0" in msg
    msg = assert_fails_with_case("07.reverse_kl_penalty", lambda logp, ref_logp: (logp - ref_logp).detach())
    assert "expected gradient is 0" in msg


def test_a_penalty_of_the_wrong_shape_is_named():
    msg = assert_fails_with_case("07.reverse_kl_penalty", lambda logp, ref_logp: (logp - ref_logp).sum())
    assert "one value per token" in msg


def test_the_check_computes_what_pgcourse_kl_computes():
    from pgcourse.grading.nb07 import penalty_expected_gradient
    g = torch.Generator().manual_seed(3)
    z, r = torch.randn(3, 5, generator=g, dtype=torch.float64), torch.randn(3, 5, generator=g, dtype=torch.float64)
    for pen in (_k3_penalty, REFERENCES["07.reverse_kl_penalty"], lambda lp, lr: torch.sin(lp) * lr):
        lp = torch.log_softmax(z, -1).requires_grad_(True)
        got = penalty_expected_gradient(pen(lp, torch.log_softmax(r, -1)))
        torch.testing.assert_close(got, kl.penalty_gradient(pen)(z, r), rtol=1e-10, atol=1e-12)


def test_the_detached_k1_score_form_also_passes(capsys):
    assert_passes("07.reverse_kl_penalty", lambda lp, lr: (lp - lr).detach() * lp, capsys)


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_not_attempted(name, capsys):
    assert_not_attempted(name, capsys)


def test_inputs_isolated():
    assert_inputs_isolated("07.k3_expected_gradient", REFERENCES["07.k3_expected_gradient"])


def test_held_out_cases_differ_and_pass():
    ex = exercises()["07.k3_expected_gradient"]
    public, secret = ex.cases(), ex.cases(seed=12345)
    assert not torch.equal(public[1].args[0], secret[1].args[0])
    for case in secret:
        torch.testing.assert_close(REFERENCES["07.k3_expected_gradient"](*case.args).double(), case.expected.double(),
                                   rtol=1e-5, atol=1e-6)


# ---- the lesson's exact pieces (cheap) -------------------------------------------------------------------

def test_weight_rows_are_the_loss_normalizations():
    rows = length.weight_rows((1, 3, 9))
    assert [r["length"] for r in rows] == [1, 3, 9]
    assert rows[0]["grpo_token"] / rows[2]["grpo_token"] == pytest.approx(9)
    assert all(r["grpo_total"] == pytest.approx(1 / 3) for r in rows)                 # 1/B per answer
    assert rows[0]["bnpo_token"] == pytest.approx(1 / 13) and rows[2]["dr_grpo_token"] == pytest.approx(1 / 27)


def test_objective_rows_prefer_the_empty_answer_under_grpo():
    rows = format_bonus.objective_rows()
    assert rows[0]["grpo_prefers"] == "tie" and all(r["grpo_prefers"] == "empty" for r in rows[1:])
    assert all(r["right_dr"] > r["empty_dr"] for r in rows)


def test_empty_probability_is_the_probability_of_eos_first():
    policy, task = runs.start_policy(), runs.lesson_task()
    prompts = task.encode(["3142", "7"])
    p = format_bonus.empty_probability(policy, prompts, task)
    with torch.no_grad():
        first = torch.softmax(policy(prompts)[:, -1], -1)[:, task.eos]
    torch.testing.assert_close(p, first, rtol=1e-5, atol=1e-7)


def test_kl_rows_on_small_categoricals():
    rows = {r["treatment"]: r for r in kl_direction.kl_rows(kl_direction.small_categoricals())}
    assert rows["k1_reward"]["follows"] == "reverse" and rows["k1_reward"]["err_reverse"] < 1e-12
    assert rows["k3_loss"]["follows"] == "forward" and rows["k3_loss"]["err_forward"] < 1e-12
    assert rows["k3_loss"]["err_reverse"] > 0.05 and rows["k3_reward"]["follows"] is None
    assert "k3_loss" in kl_direction.format_rows(list(rows.values()))


def test_monte_carlo_rows_agree_with_their_own_expectation():
    mc = kl_direction.monte_carlo_rows(kl_direction.small_categoricals((0,)), n=5000)
    assert all(m["own"].unbiased() and m["other"].biased() for m in mc)


def test_lm_token_rows_on_a_perturbed_policy():
    task, ref = runs.lesson_task(), runs.start_policy()
    policy = kl_direction.perturbed_copy(ref, scale=0.1, seed=1)
    rows = {r["treatment"]: r for r in kl_direction.lm_token_rows(policy, ref, task, seeds=(0,), n_prompts=4)}
    assert all(r["err_params"] < 1e-10 and r["err_logits"] < 1e-10 for r in rows.values())
    assert rows["k3_loss"]["cos_reverse"] < 0.9999 and rows["k3_loss"]["cos_forward"] == pytest.approx(1, abs=1e-9)
    assert rows["k1_reward"]["n_params"] == ref.n_params


def test_optimum_rows_each_treatment_reaches_its_own_optimum():
    for o in kl_direction.optimum_rows(betas=(0.3,)):
        assert o["k1_to_reverse"] < 1e-9 and o["k3_to_forward"] < 1e-9 and o["k3_to_reverse"] > 0.1
        assert o["zero_mass_forward"] > o["zero_mass_reverse"]       # the forward KL covers the mass


def test_drop_rows_only_rescale():
    for d in sampling.drop_rows(seeds=(0,)):
        assert d["cos"] == pytest.approx(1, abs=1e-5) and d["norm_ratio"] == pytest.approx(d["predicted"], rel=1e-4)


def test_pass_at_k_is_exact():
    p = torch.tensor([0.0, 0.5, 1.0])
    torch.testing.assert_close(sampling.pass_at_k(p, (1, 2)), torch.tensor([[0.0, 0.5, 1.0], [0.0, 0.75, 1.0]],
                                                                              dtype=torch.float64))


def test_loophole_reward_accepts_subsets_and_the_closed_one_is_the_verifier():
    task = runs.lesson_task()
    prompts = task.encode(["3142", "3142", "3142", "3142", "3142", "860"])
    rows = [[1, 2, 3, 4], [1, 3], [], [4, 3], [1, 1, 2, 3], [0, 6]]
    comps = torch.full((len(rows), task.completion_len), task.pad)
    for i, digits in enumerate(rows):
        comps[i, :len(digits)] = torch.tensor(digits) + task.tokenizer.encode("0")[0]
        comps[i, len(digits)] = task.eos
    assert hacking.loophole_reward(task)(prompts, comps).tolist() == [1, 1, 0, 0, 0, 1]
    assert hacking.closed_reward(task)(prompts, comps).tolist() == task.reward(prompts, comps).tolist()
    agree = hacking.verifier_agreement(n=256)
    assert agree["closed_equals_verifier"] and agree["loophole_accepts_all_right"]


def test_length_drift_is_paired_and_finite():
    policy = runs.start_policy()
    dirs = {"grpo": length.Direction("grpo"), "dr_grpo": length.Direction("dr_grpo", scale=False),
            "bnpo": length.Direction("bnpo", scale=False)}
    out = length.length_drift(policy, seed=0, advantages=dirs, n_prompts=8, n_measure=128, chunks=2)
    assert set(out) == set(dirs) and all(v["wrong"].shape == (2,) for v in out.values())
    assert all(bool(torch.isfinite(t).all()) for v in out.values() for t in v.values())
    torch.testing.assert_close(out["bnpo"]["wrong"], out["dr_grpo"]["wrong"], rtol=1e-6, atol=1e-6)
    m, se, z = length.paired_difference({k: v for k, v in out.items()}, "grpo", "dr_grpo")
    assert math.isfinite(m) and se > 0


def test_update_direction_is_unit_and_rejects_unknown_optimizers():
    from pgcourse import grpo
    import copy
    policy, task = runs.start_policy(), runs.lesson_task()
    batch = grpo.rollout(policy, copy.deepcopy(policy), task, runs.RUN.replace(prompts_per_step=2),
                         torch.Generator().manual_seed(0))
    for opt in ("adam", "sgd"):
        d = length.update_direction(policy, batch, "grpo", batch.advantages, optimizer=opt)
        assert sum(float((x ** 2).sum()) for x in d) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="optimizer"):
        length.update_direction(policy, batch, "grpo", batch.advantages, optimizer="rmsprop")


def test_one_tiny_run_and_its_tables():
    tiny = runs.RUN.replace(steps=2, eval_every=2)
    rs = runs.train_runs("tiny", tiny, seeds=(0, 1))
    assert len(rs) == 2 and len(rs[0].history.length_wrong) == 2
    row = length.length_table({("grpo", True): rs}, width=1)[0]
    assert row["seeds"] == 2 and len(row["wrong_start"]) == 2
    assert "grpo" in length.format_length_table([row])
    zv = sampling.zero_variance_table({"plain": rs}, width=1)
    assert "plain" in sampling.format_zero_variance(zv)
    h = hacking.hacking_table({"verifier": rs}, width=1)[0]
    assert h["hacks_start"][0] == pytest.approx(0.0) and "verifier" in hacking.format_hacking([h])
    sh = sampling.sharpening(rs)
    assert sh["after_per_seed"].shape == (2, len(sampling.KS)) and len(sh["pass1_change"]) == 2
    b = format_bonus.bonus_table({"tiny": rs})[0]
    assert 0 <= b["empty_end"][0] <= 1 and "tiny" in format_bonus.format_bonus_table([b])


def test_window_ignores_nan():
    assert runs.window([float("nan"), 1.0, 3.0], "start", 3) == 2.0
    assert math.isnan(runs.window([float("nan")], "end", 1))


# ---- widget and figures ---------------------------------------------------------------------------------

def test_widget_is_registered_and_draws():
    w = widgets()["07.kl_direction"]
    fig = w.draw(**w.defaults)
    assert isinstance(fig, Figure) and len(fig.axes) == 2


def test_figures_are_declared():
    assert set(lesson.FIGURES) == {"07_length_bias.png", "07_format_bonus.png", "07_kl_direction.png",
                                   "07_zero_variance.png", "07_pass_at_k.png", "07_reward_hacking.png"}


def test_cheap_figures_draw():
    assert isinstance(lesson.kl_direction_figure(), Figure)
    tiny = runs.train_runs("tiny", runs.RUN.replace(steps=2, eval_every=2), seeds=(0, 1))
    assert isinstance(lesson.plots.hacking_figure({"loophole": tiny, "verifier": tiny}), Figure)
    assert isinstance(lesson.plots.zero_variance_figure({"plain": tiny}), Figure)
    assert isinstance(lesson.sharpening_figure(tiny), Figure)
