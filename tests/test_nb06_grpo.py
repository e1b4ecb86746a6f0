"""Notebook 06 (GRPO): its exercises, widgets, figures and the measurements behind its claims."""
import copy
import math

import pytest
import torch
from matplotlib.figure import Figure

from pgcourse import grpo
from pgcourse.figures import registry
from pgcourse.grading import evaluate, exercises
from pgcourse.grading.nb06 import SharedPolicy, TASK
from pgcourse.lessons import nb06 as lesson
from pgcourse.tinylm import completion_logp
from pgcourse.widgets import widgets
from exercise_contract import assert_fails_with_case, assert_not_attempted, assert_passes

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def _microbatch_step(policy, batch, microbatch_size, loss_type="grpo", clip_eps=0.2, beta=0.04, temperature=1.0):
    return grpo.microbatch_step(policy, batch, microbatch_size, loss_type=loss_type, clip_eps=clip_eps, beta=beta,
                                temperature=temperature)["loss"]


def _train_loop(policy, ref, task, config, seed, zero_grad=True):
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(policy.parameters(), lr=config.lr)
    schedule = grpo.lr_schedule(opt, config)
    for _ in range(config.steps):
        batch = grpo.rollout(policy, ref, task, config, gen)
        for _ in range(config.epochs):
            if zero_grad:
                opt.zero_grad()
            grpo.microbatch_step(policy, batch, config.microbatch_size, loss_type=config.loss_type,
                                 clip_eps=config.clip_eps, beta=config.loss_beta, temperature=config.temperature)
            torch.nn.utils.clip_grad_norm_(policy.parameters(), config.max_grad_norm)
            opt.step()
        schedule.step()
    return policy


REFERENCES = {
    "06.group_advantages": grpo.group_advantages,
    "06.grpo_loss": lambda *a, **k: grpo.grpo_loss(*a, **k)[0],
    "06.microbatch_step": _microbatch_step,
    "06.train_loop": _train_loop,
}


# ---- plausible mistakes: each must fail with a helpful message ------------------------------------

def _population_std(rewards, eps=1e-4, scale=True):
    c = rewards - rewards.mean(1, keepdim=True)
    return c / (rewards.std(1, unbiased=False, keepdim=True) + eps) if scale else c


def _loss_multiplying_by_the_mask(logp, old_logp, ref_logp, advantages, mask, clip_eps=0.2, beta=0.04, loss_type="grpo"):
    ratio = torch.exp(logp - old_logp)
    a = advantages[:, None]
    d = ref_logp - logp
    per_token = (-torch.min(ratio * a, ratio.clamp(1 - clip_eps, 1 + clip_eps) * a) + beta * (d.exp() - d - 1)) * mask
    m = mask.to(logp.dtype)
    if loss_type == "grpo":
        return (per_token.sum(1) / m.sum(1)).mean()
    if loss_type == "bnpo":
        return per_token.sum() / m.sum()
    return per_token.sum() / logp.numel()


def _loss_without_clip(logp, old_logp, ref_logp, advantages, mask, clip_eps=0.2, beta=0.04, loss_type="grpo"):
    return REFERENCES["06.grpo_loss"](logp, old_logp, ref_logp, advantages, mask, 1e9, beta, loss_type)


def _loss_with_bnpo_for_all(logp, old_logp, ref_logp, advantages, mask, clip_eps=0.2, beta=0.04, loss_type="grpo"):
    return REFERENCES["06.grpo_loss"](logp, old_logp, ref_logp, advantages, mask, clip_eps, beta, "bnpo")


def _naive_accumulation(policy, batch, microbatch_size, loss_type="grpo", clip_eps=0.2, beta=0.04, temperature=1.0):
    starts = range(0, len(batch), microbatch_size)
    total = 0.0
    for s in starts:
        mb = batch.rows(slice(s, s + microbatch_size))
        logp = completion_logp(policy, mb.prompts, mb.completions, temperature)
        loss = grpo.grpo_loss(logp, mb.old_logp, mb.ref_logp, mb.advantages, mb.mask, clip_eps, beta, loss_type)[0]
        (loss / len(starts)).backward()
        total += float(loss.detach()) / len(starts)
    return total


def _accumulation_at_temperature_one(policy, batch, microbatch_size, loss_type="grpo", clip_eps=0.2, beta=0.04,
                                     temperature=1.0):
    return _microbatch_step(policy, batch, microbatch_size, loss_type, clip_eps, beta, 1.0)


def _loop_without_schedule(policy, ref, task, config, seed):
    return _train_loop(policy, ref, task, config.replace(warmup_steps=1, anneal_lr=False), seed)


def _loop_without_zero_grad(policy, ref, task, config, seed):
    return _train_loop(policy, ref, task, config, seed, zero_grad=False)


WRONG = [
    ("06.group_advantages", _population_std, "Bessel"),
    ("06.grpo_loss", _loss_multiplying_by_the_mask, "NaN"),
    ("06.grpo_loss", _loss_without_clip, "clip"),
    ("06.grpo_loss", _loss_with_bnpo_for_all, "loss_type"),
    ("06.microbatch_step", _naive_accumulation, "share"),
    ("06.microbatch_step", _accumulation_at_temperature_one, "temperature"),
    ("06.train_loop", _loop_without_schedule, "schedule.step"),
    ("06.train_loop", _loop_without_zero_grad, "zero_grad"),
]


def test_notebook_06_exercises_are_registered():
    table = exercises()
    assert {n for n in table if n.startswith("06.")} == set(REFERENCES)
    assert [table[n].points for n in REFERENCES] == [2, 3, 3, 2]


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_reference_passes(name, capsys):
    assert_passes(name, REFERENCES[name], capsys)


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_reference_passes_held_out_cases(name):
    assert evaluate(name, REFERENCES[name], seed=2024).passed


@pytest.mark.parametrize("name,fn,hint", WRONG, ids=[f"{n}-{f.__name__}" for n, f, _ in WRONG])
def test_wrong_answer_shows_input_expected_got(name, fn, hint):
    msg = assert_fails_with_case(name, fn)
    assert hint.lower() in msg.lower(), msg


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_not_attempted(name, capsys):
    assert_not_attempted(name, capsys)


def test_a_learner_writing_into_tensor_inputs_spoils_no_later_check():
    def vandal(rewards, eps=1e-4, scale=True):
        out = grpo.group_advantages(rewards, eps, scale)
        rewards.mul_(0)
        return out
    assert evaluate("06.group_advantages", vandal).passed
    assert evaluate("06.group_advantages", grpo.group_advantages).passed


def test_shared_policy_copies_to_itself_with_clean_gradients():
    p = SharedPolicy(TASK.vocab_size, d_model=16, n_layers=1, n_heads=2, max_len=12)
    p(torch.zeros(1, 3, dtype=torch.long)).sum().backward()
    assert copy.deepcopy(p) is p and all(q.grad is None for q in p.parameters())
    assert "parameters" in repr(p) and "\n" not in repr(p)


def test_microbatch_check_twice_in_a_row_passes(capsys):
    """Gradients of the shared policy must not pile up between two checks of the same cases."""
    assert evaluate("06.microbatch_step", _microbatch_step).passed
    assert evaluate("06.microbatch_step", _microbatch_step).passed


# ---- widgets ------------------------------------------------------------------------------------

def test_kl_widget_is_first_and_moves_with_distance():
    ws = [n for n in widgets() if n.startswith("06.")]
    assert ws == ["06.kl_estimators", "06.group_advantages", "06.temperature"]
    w = widgets()["06.kl_estimators"]
    assert list(w.sliders)[0] == "distance"
    fig = w.draw(**w.defaults)
    assert isinstance(fig, Figure) and all(ax.get_xlabel() and ax.get_ylabel() for ax in fig.axes)


def test_group_advantages_widget_draws():
    w = widgets()["06.group_advantages"]
    fig = w.draw(group_size=8, correct=3, scale="mean only")
    assert "3 of 8" in fig.axes[0].get_title()


def test_temperature_widget_shows_the_tempered_distribution():
    w = widgets()["06.temperature"]
    cold, hot = w.draw(temperature=0.3), w.draw(temperature=2.5)
    top = lambda fig: max(p.get_height() for p in fig.axes[0].patches)  # noqa: E731
    assert top(cold) > top(hot)
    assert "τ = 0.3" in cold.axes[0].get_title()


# ---- figures and the lesson's measurements --------------------------------------------------------

def test_figures_are_registered():
    reg = registry()
    assert {"06_kl_estimators.png", "06_grpo_training.png", "06_kl_penalty.png"} <= set(reg)
    assert not {"06_grpo_vs_reinforce.png", "06_loss_types.png"} & set(reg)


def test_kl_figure_builds():
    fig = lesson.kl_figure()
    assert len(fig.axes) == 2


def _tiny_history(steps=3):
    task = lesson.lesson_task()
    return grpo.train(lesson.sft_policy(), task, grpo.GRPOConfig(steps=steps, prompts_per_step=4, group_size=4,
                                                                 epochs=2, eval_every=steps),
                      eval_prompts=task.sample_prompts(16, seed=0))


def test_training_and_beta_figures_build_from_given_runs():
    h = _tiny_history()
    fig = lesson.training_figure(lesson.Run(None, h, lesson.MAIN))
    assert len(fig.axes) == 3
    runs = [lesson.BetaRun(b, s, h, 0.1 * (s + 1), 0.4) for b in (0.0, 0.2) for s in range(2)]
    assert len(lesson.beta_figure(runs).axes) == 2
    table = lesson.beta_table(runs)
    assert [r["beta"] for r in table] == [0.0, 0.2] and math.isclose(table[0]["kl"], 0.15)


def test_causal_check_and_temperature_table():
    model = lesson.random_policy()
    cc = lesson.causal_check(model, length=8, rows=4)
    assert cc["past"] == 0.0 and cc["present"] > 0
    rows = lesson.temperature_table(lesson.sft_policy(), temperatures=(0.5, 1.5), n_prompts=16)
    assert rows[0].pass_at_1 > rows[1].pass_at_1 and rows[0].entropy < rows[1].entropy
    assert 1 <= rows[0].distinct <= 8


def test_accumulation_errors_exact_against_naive():
    policy = lesson.sft_policy()
    batch = lesson.lesson_rollout(policy, prompts_per_step=3, group_size=4, seed=1)
    err = lesson.accumulation_errors(policy, batch, sizes=(5, 12))
    for lt in ("grpo", "bnpo", "dr_grpo"):
        assert err[lt]["exact"] < 1e-5 and err[lt]["naive"] > 1e-3


def test_advantage_table_matches_formula():
    rows = lesson.advantage_table(8)
    assert [r[0] for r in rows] == list(range(9))
    k, a_ok, a_bad, total = rows[1]
    s = math.sqrt((1 * (7 / 8) ** 2 + 7 * (1 / 8) ** 2) / 7)
    assert math.isclose(a_ok, (7 / 8) / (s + 1e-4), rel_tol=1e-9)
    assert math.isclose(a_bad, -(1 / 8) / (s + 1e-4), rel_tol=1e-9)


def test_kl_table_k1_k3_unbiased_k2_biased():
    for row in lesson.kl_estimator_table(distances=(1.0, 3.0), n_samples=20_000):
        assert abs(row.exact["k1"][0] - row.kl) < 1e-12 and abs(row.exact["k3"][0] - row.kl) < 1e-12
        assert row.exact["k2"][0] > row.kl
        for k in ("k1", "k3"):
            assert abs(row.mean[k] - row.kl) < 4 * row.se[k]


def test_lift_and_step_mean():
    p = lesson.sft_policy()
    up = lesson.lift(p, p)
    assert up["lift"] == 0.0 and up["n"] == lesson.N_EVAL
    s = lesson.step_mean([0.1, 0.3, 0.2, 0.2])
    assert math.isclose(s["mean"], 0.2) and s["n"] == 4 and s["se"] > 0
