"""Notebook 04 (value functions and advantage): n-step advantages, critics, exercises, widget, figures, claims."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from pgcourse.lessons import nb04 as F
from pgcourse.figures import registry
from pgcourse.grading import check, exercises
from pgcourse.returns import gae, n_step_advantage
from pgcourse.variance import gradient_samples, summarize
from pgcourse.widgets import widgets
from exercise_contract import assert_fails_with_case, assert_not_attempted, assert_passes


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


# ---- pgcourse.returns.n_step_advantage ----------------------------------------------------------------

def _naive_n_step(r, v, nv, term, trunc, gamma, n):
    """Σ_{l<n} γ^l r_{t+l} + γ^n V(s_{t+n}) − V(s_t), stopping at the episode's end, by a plain loop."""
    rows, T = r.shape
    out = torch.zeros_like(r)
    for i in range(rows):
        for t in range(T):
            total, u, k = 0.0, t, 0
            while True:
                total += gamma ** k * float(r[i, u])
                if term[i, u]:
                    break
                if trunc[i, u] or u == T - 1 or k == n - 1:
                    total += gamma ** (k + 1) * float(nv[i, u])
                    break
                u, k = u + 1, k + 1
            out[i, t] = total - float(v[i, t])
    return out


def _random_batch(seed, rows=3, T=11, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    r, v, nv = (torch.randn(rows, T, generator=g, dtype=dtype) for _ in range(3))
    term = torch.rand(rows, T, generator=g) < 0.2
    trunc = (torch.rand(rows, T, generator=g) < 0.2) & ~term
    trunc[0, 3] = term[0, 3] = True  # both at once: terminated wins
    return r, v, nv, term, trunc


@pytest.mark.parametrize("n", [1, 2, 3, 5, 11, 30])
def test_n_step_advantage_against_a_loop(n):
    r, v, nv, term, trunc = _random_batch(n)
    got = n_step_advantage(r, v, nv, term, trunc, 0.9, n)
    assert torch.allclose(got, _naive_n_step(r, v, nv, term, trunc, 0.9, n))


def test_n_step_extremes_are_td_residual_and_gae_one():
    r, v, nv, term, trunc = _random_batch(0)
    assert torch.allclose(n_step_advantage(r, v, nv, term, trunc, 0.8, 1), gae(r, v, nv, term, trunc, 0.8, 0.0)[0])
    # with consistent values (next value = the next step's value inside an episode), n-step sums n δ's
    nv2 = nv.clone()
    inside = ~(term | trunc)[:, :-1]
    nv2[:, :-1] = torch.where(inside, v[:, 1:], nv[:, :-1])
    big = n_step_advantage(r, v, nv2, term, trunc, 0.8, 100)
    assert torch.allclose(big, gae(r, v, nv2, term, trunc, 0.8, 1.0)[0])
    lam, T = 0.7, r.shape[-1]
    mix = sum((1 - lam) * lam ** (k - 1) * n_step_advantage(r, v, nv2, term, trunc, 0.8, k) for k in range(1, T))
    mix = mix + lam ** (T - 1) * n_step_advantage(r, v, nv2, term, trunc, 0.8, T)
    assert torch.allclose(mix, gae(r, v, nv2, term, trunc, 0.8, lam)[0])


def test_n_step_advantage_dtype_device_and_bad_input(dev):
    r, v, nv, term, trunc = (x.to(dev) for x in _random_batch(1, dtype=torch.float32))
    out = n_step_advantage(r, v, nv, term, trunc, 0.9, 3)
    assert out.dtype == torch.float32 and out.device.type == dev.type
    assert torch.allclose(out.cpu(), _naive_n_step(*(x.cpu() for x in (r, v, nv, term, trunc)), 0.9, 3), atol=1e-5)
    assert n_step_advantage(r[0], v[0], nv[0], term[0], None, 0.9, 2).shape == r[0].shape
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="n"):
            n_step_advantage(r, v, nv, term, trunc, 0.9, bad)
    with pytest.raises(ValueError, match="gamma"):
        n_step_advantage(r, v, nv, term, trunc, 1.5, 2)
    with pytest.raises(ValueError, match="values"):
        n_step_advantage(r, v[:, :-1], nv, term, trunc, 0.9, 2)


# ---- the lesson MDP, the critics -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lesson():
    return F.lesson_mdp()


def test_tabular_policy_gradient_is_visitation_times_pi_times_advantage(lesson):
    mdp, logits = lesson
    V, Q = mdp.values(logits)
    A = Q - V[:-1, :, None]
    pi = torch.softmax(logits, -1)
    d = mdp.state_visitation(logits)
    disc = mdp.gamma ** torch.arange(mdp.horizon, dtype=torch.float64)
    assert torch.allclose(mdp.exact_gradient(logits), torch.einsum("t,ts,sa,tsa->sa", disc, d, pi, A), atol=1e-12)
    assert float((pi * A).sum(-1).abs().max()) < 1e-12
    better = F.soft_improvement(mdp, logits)
    assert float(mdp.expected_return(better)) > float(mdp.expected_return(logits))


def test_bellman_q_of_the_exact_v_is_the_exact_q(lesson):
    mdp, logits = lesson
    V, Q = mdp.values(logits)
    assert torch.allclose(F.bellman_q(mdp, V), Q, atol=1e-12)


def test_fit_critic_is_the_mean_return_per_state(lesson):
    mdp, logits = lesson
    table = F.fit_critic(mdp, logits, 7, seed=3)
    ep = mdp.sample(logits, 7, 3)
    from pgcourse.returns import reward_to_go
    G = reward_to_go(ep.rewards, mdp.gamma, ep.dones)
    for s in range(mdp.n_states):
        visits = ep.mask & (ep.states == s)
        expected = float(G[visits].mean()) if visits.any() else 0.0
        assert float(table[0, s]) == pytest.approx(expected)
    assert torch.equal(table[:-1], table[:1].expand(mdp.horizon, -1)) and not bool(table[-1].any())


def test_critic_error_falls_to_the_time_blind_floor(lesson):
    mdp, logits = lesson
    floor = F.critic_error(mdp, logits, F.time_blind_values(mdp, logits))
    assert F.critic_error(mdp, logits, mdp.values(logits)[0]) < 1e-12
    few = F.critic_error(mdp, logits, F.fit_critic(mdp, logits, 10, seed=2))
    many = F.critic_error(mdp, logits, F.fit_critic(mdp, logits, 3000, seed=2))
    assert few > 2 * floor and floor <= many < 1.2 * floor


def test_step_values_and_critic_psi_with_the_exact_v_match_the_package(lesson):
    mdp, logits = lesson
    from pgcourse.variance import exact_step_values, psi_weights
    ep = mdp.sample(logits, 50, 4)
    V = mdp.values(logits)[0]
    v, v_next = F.step_values(V, ep)
    ev, _, ev_next = exact_step_values(mdp, logits, ep)
    assert torch.allclose(v, ev) and torch.allclose(v_next, ev_next)
    for form in F.CRITIC_FORMS:
        assert torch.allclose(F.critic_psi(form, V)(ep, mdp, logits), psi_weights(form, ep, mdp, logits), atol=1e-12)
    with pytest.raises(ValueError, match="form"):
        F.critic_psi("q", V)


def _bias_in_se(mdp, logits, psi, n_batches=300):
    x = gradient_samples(mdp, logits, psi, 16, n_batches, seed=11)
    row = summarize(x, mdp.exact_gradient(logits))
    return row.bias / row.bias_se


@pytest.mark.parametrize("lam", [0.0, 0.5, 1.0])
def test_gae_with_the_exact_v_is_unbiased(lesson, lam):
    mdp, logits = lesson
    assert _bias_in_se(mdp, logits, F.critic_psi("gae", mdp.values(logits)[0], lam=lam)) < 4


def test_learned_critic_biases_td_residual_not_reward_to_go_minus_value(lesson):
    mdp, logits = lesson
    table = F.lesson_critic("learned")
    assert _bias_in_se(mdp, logits, F.critic_psi("td_residual", table)) > 6
    assert _bias_in_se(mdp, logits, F.critic_psi("reward_to_go_minus_value", table)) < 4


def test_sweep_rescales_variance_by_batch_size():
    from pgcourse.variance import Row
    rows = [Row("a", 0.1, 0.01, 0.4, 0.01, 0.41, 0.01), Row("b", 0.0, 0.01, 0.1, 0.01, 0.1, 0.01)]
    sw = F.Sweep("t", [0, 1], rows, batch_size=16, n_batches=100)
    b2, var, tot = sw.at(64)
    assert np.allclose(var, [0.1, 0.025]) and np.allclose(b2, [0.01 - 0.004, -0.001]) and np.allclose(tot, b2 + var)
    assert sw.best(64)[0] == 1 and sw.best(1)[0] == 1


# ---- exercises -----------------------------------------------------------------------------------------

REFERENCES = {
    "04.q_from_v": lambda R, P, V, gamma: R + gamma * P @ V,
    "04.td_residual": lambda r, v, nv, term, gamma: gae(r, v, nv, term, None, gamma, 0.0)[0],
    "04.gae": lambda *args: gae(*args)[0],
    "04.one_step_variances": F.one_step_variances,
    "04.rollout_advantages": F.rollout_advantages,
}


def _one_step_wrong(pi, y, p, *, subtract_mean=True, score_norm=True, transition_noise=True):
    q = (p * y).sum(-1)
    v = (pi * q).sum()
    var_y = (p * y ** 2).sum(-1) - q ** 2
    eye = torch.eye(len(pi), dtype=pi.dtype)
    n_a = ((eye - pi) ** 2).sum(-1) if score_norm else torch.ones_like(pi)
    m = (pi[:, None] * (eye - pi) * q[:, None]).sum(0)
    second = torch.stack([q ** 2, (q - v) ** 2, (q - v) ** 2 + (var_y if transition_noise else 0.0)])
    return (pi * n_a * second).sum(-1) - ((m ** 2).sum() if subtract_mean else 0.0)


def _mask_only_fix(obs, r, te, tr, V, g, lam):        # masks the autoreset step, still no bootstrap at a truncation
    adv, _ = F.naive_rollout_advantages(obs, r, te, tr, V, g, lam)
    return adv, F.rollout_advantages(obs, r, te, tr, V, g, lam)[1]


def _bootstrap_only_fix(obs, r, te, tr, V, g, lam):   # bootstraps at a truncation, still keeps the autoreset step
    return F.rollout_advantages(obs, r, te, tr, V, g, lam)[0], torch.ones_like(te)


def _through_termination(obs, r, te, tr, V, g, lam):  # bootstraps from the (made-up) value of a hole or the goal
    adv, _ = gae(r, V[obs[..., :-1]], V[obs[..., 1:]], torch.zeros_like(te), te | tr, g, lam)
    return adv, F.rollout_advantages(obs, r, te, tr, V, g, lam)[1]


def _gae_loop(r, v, nv, term, trunc, gamma, lam, *, done_is_terminated=False, bootstrap_truncated=True):
    delta = r + gamma * torch.where(term | (trunc & ~torch.tensor(bootstrap_truncated)), torch.zeros_like(nv), nv) - v
    done = term if done_is_terminated else term | trunc
    out, running = torch.zeros_like(r), torch.zeros_like(r[..., 0])
    for t in reversed(range(r.shape[-1])):
        running = delta[..., t] + gamma * lam * (~done[..., t]) * running
        out[..., t] = running
    return out


WRONG = {
    "04.q_from_v": [lambda R, P, V, gamma: R + P @ V,                                  # forgets γ
                    lambda R, P, V, gamma: R + gamma * torch.einsum("sap,s->sa", P, V)],  # V of the wrong state
    "04.td_residual": [lambda r, v, nv, term, gamma: r + gamma * nv - v],             # bootstraps after termination
    "04.gae": [
        lambda *a: _gae_loop(*a, done_is_terminated=True),      # lets advantages flow across a truncation
        lambda *a: _gae_loop(*a, bootstrap_truncated=False),    # treats a truncation like a termination
        lambda r, v, nv, term, trunc, g, lam: gae(r, v, nv, term | trunc, None, g, lam)[0],
    ],
    "04.one_step_variances": [
        lambda *a: _one_step_wrong(*a, subtract_mean=False),      # E|g|^2, not the variance
        lambda *a: _one_step_wrong(*a, score_norm=False),         # |e_a|^2 = 1 instead of |e_a - pi|^2
        lambda *a: _one_step_wrong(*a, transition_noise=False),   # delta as noiseless as A
    ],
    "04.rollout_advantages": [F.naive_rollout_advantages, _mask_only_fix, _bootstrap_only_fix, _through_termination],
}

# the property named in the first failing case's note, for each plausible wrong answer of the debug exercise
DEBUG_NOTES = {"naive_rollout_advantages": "autoreset", "_mask_only_fix": "bootstraps from V(final observation)",
               "_bootstrap_only_fix": "autoreset", "_through_termination": "no bootstrap from the hole"}


def test_notebook_04_exercises_are_registered():
    assert set(REFERENCES) <= set(exercises())


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_reference_passes(name, capsys):
    assert_passes(name, REFERENCES[name], capsys)


def test_the_loop_solution_of_gae_passes():
    assert check("04.gae", lambda *a: _gae_loop(*a)) is None


@pytest.mark.parametrize("name, k", [(n, k) for n, fns in sorted(WRONG.items()) for k in range(len(fns))])
def test_wrong_answer_shows_input_expected_got(name, k):
    assert_fails_with_case(name, WRONG[name][k])


def test_debug_failures_name_the_property_that_still_fails():
    for fn in WRONG["04.rollout_advantages"]:
        msg = assert_fails_with_case("04.rollout_advantages", fn)
        assert DEBUG_NOTES[fn.__name__] in msg.splitlines()[0], (fn.__name__, msg.splitlines()[0])


def test_debug_exercise_partial_credit_and_the_naive_test():
    from pgcourse.grading import evaluate
    out = evaluate("04.rollout_advantages", F.naive_rollout_advantages)
    assert out.failed_cases and 1 not in out.failed_cases and 2 not in out.failed_cases   # the naive tests pass
    assert 0 < out.points < out.max_points


def test_rollout_cases_hold_every_event():
    cases = exercises()["04.rollout_advantages"].cases()
    _, mask = cases[-1].expected
    term, trunc = cases[-1].args[2], cases[-1].args[3]
    assert bool(term.any()) and bool(trunc.any()) and not bool(mask.all())
    assert all(c.args[0].shape[-1] == c.args[1].shape[-1] + 1 for c in cases)


def test_gae_cases_include_terminated_and_truncated_steps():
    cases = exercises()["04.gae"].cases()
    assert any(bool(c.args[3].any()) and bool(c.args[4].any()) for c in cases)
    assert any(bool((c.args[3] & c.args[4]).any()) for c in cases)


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_not_attempted(name, capsys):
    assert_not_attempted(name, capsys)


# ---- widget and figures --------------------------------------------------------------------------------

def test_widget_draws_at_defaults_and_follows_lambda():
    w = widgets()["04.variance"]
    assert list(w.sliders)[0] == "lam", "the browser test moves the first slider"
    fig = w.draw(**w.defaults)
    assert isinstance(fig, Figure)
    other = w.draw(**{**w.defaults, "lam": 0.2})
    assert fig.axes[0].get_title() != other.axes[0].get_title()


@pytest.mark.slow
def test_widget_with_the_exact_critic_has_no_bias():
    sweep = F.lambda_sweep("exact")
    assert np.all(np.abs(sweep.bias2) < 4 * sweep.bias2_se + 1e-6)
    assert sweep.best(64)[0] == 0.0


def test_lambda_sweep_has_an_interior_minimum_with_the_learned_critic():
    sweep = F.lambda_sweep("learned")
    best, val = sweep.best(64)
    assert 0.0 < best < 1.0
    tot = sweep.at(64)[2]
    assert val < tot[0] and val < tot[-1]
    assert sweep.bias2[0] > 4 * sweep.bias2_se[0] and sweep.bias2[0] > sweep.bias2[-1]
    assert sweep.variance[-1] > sweep.variance[0]


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in registry() if n.startswith("04_")])
def test_figures(name):
    assert isinstance(registry()[name](), Figure)


def test_small_figures():
    mdp, logits = F.lesson_mdp()
    assert isinstance(F.advantage_map(mdp, logits, t=5), Figure)
    scan = F.critic_error_scan(episodes=(5, 50), seeds=(1, 2))
    assert scan.errors.shape == (2, 2) and isinstance(F.critic_error_figure(scan), Figure)
    bs = F.bias_scan(scales=(0.0, 1.0), n_batches=50)
    assert isinstance(F.bias_figure(bs), Figure)
    assert bs.rmse[0] == 0.0 and math.isclose(bs.rmse[1], F.critic_error(mdp, logits, F.lesson_critic("learned")))


# ---- variance.gradient_samples_shared, testable_coordinates ----------------------------------------------

def test_gradient_samples_shared_equals_gradient_samples(lesson):
    from pgcourse.variance import gradient_samples_shared
    mdp, logits = lesson
    psis = ["reward_to_go", F.critic_psi("gae", F.lesson_critic("learned"), lam=0.5)]
    for p, x in zip(psis, gradient_samples_shared(mdp, logits, psis, 8, 40, seed=5)):
        assert torch.equal(x, gradient_samples(mdp, logits, p, 8, 40, seed=5))
    with pytest.raises(ValueError, match="psis"):
        gradient_samples_shared(mdp, logits, ["nope"], 8, 4)
    with pytest.raises(ValueError, match="psis"):
        gradient_samples_shared(mdp, logits, [], 8, 4)


def test_testable_coordinates(lesson):
    from pgcourse.variance import testable_coordinates
    mdp, logits = lesson
    keep = testable_coordinates(mdp, logits, 32_000)
    pi = torch.softmax(logits, -1)
    assert not bool(keep[torch.arange(mdp.n_states), pi.argmax(-1)].any())    # one redundant coordinate per state
    assert not bool(keep[mdp.terminal].any())
    expected = 32_000 * mdp.state_visitation(logits).sum(0)[:, None] * pi
    assert bool((expected[keep] >= 100).all())
    assert int(testable_coordinates(mdp, logits, 10 ** 9).sum()) >= int(keep.sum())


# ---- the evidence behind the claims ------------------------------------------------------------------------

def test_sign_of_advantage_holds():
    st = F.sign_of_advantage()
    assert st.holds and st.n_resolved >= 20 and st.agree == st.n_resolved


def test_six_forms_are_unbiased_on_the_testable_coordinates(lesson):
    mdp, logits = lesson
    tests = F.unbiased_tests(F.six_forms_samples(), mdp.exact_gradient(logits), F.lesson_keep(32_000))
    assert all(t.unbiased() for t in tests.values())


def test_learned_critic_biases_td_residual_by_the_z_test(lesson):
    mdp, logits = lesson
    tests = F.unbiased_tests(F.learned_critic_samples(), mdp.exact_gradient(logits), F.lesson_keep(32_000))
    assert tests["td_residual"].biased() and tests["advantage"].biased() and tests["q_value"].biased()
    assert tests["reward_to_go_minus_value"].unbiased()


def test_one_step_variances_by_hand_and_measured():
    half = torch.tensor([0.5, 0.5], dtype=torch.float64)
    got = F.one_step_variances(half, torch.tensor([[1.0], [3.0]], dtype=torch.float64), torch.ones(2, 1, dtype=torch.float64))
    assert torch.allclose(got, torch.tensor([2.0, 0.0, 0.0], dtype=torch.float64), atol=1e-12)
    pred = F.one_step_variances(*F.one_step_inputs(14))
    for k, row in enumerate(F.measured_one_step(14, n=20_000, seed=3).values()):
        assert abs(row.variance - float(pred[k])) < 4 * row.variance_se


def test_td_bias_on_gymnasium_lake():
    ok, bad = F.td_bias(F.rollout_advantages), F.td_bias(F.naive_rollout_advantages)
    assert abs(ok.z) <= 4 and ok.n_fake == 0 and ok.n_impossible == 0
    assert abs(bad.z) >= 6 and bad.n_fake > 0 and bad.n_impossible > 0 and bad.n_truncated > 0


def test_rollout_advantages_masks_the_autoreset_step_and_bootstraps_truncation():
    ro = F.lake_rollout([[0], [0], [0], [0]], n_envs=1, n_steps=4, time_limit=2, seed=0, slippery=False)
    assert ro.truncated.tolist() == [[False, True, False, False]]      # step 2 resets, step 3 starts anew
    V = torch.arange(16, dtype=torch.float64) + 1.0
    adv, mask = F.rollout_advantages(ro.obs, ro.rewards, ro.terminated, ro.truncated, V, 0.5, 1.0)
    assert mask.tolist() == [[True, True, False, True]]
    assert float(adv[0, 1]) == pytest.approx(0.5 * 1.0 - 1.0)          # bootstraps from V(final obs = 0) = 1


def test_sweeps_share_their_batches():
    nst, sweep = F.n_step_sweep(), F.lambda_sweep("learned")
    assert nst.rows[0].variance == pytest.approx(sweep.rows[0].variance, rel=1e-9)
    assert nst.rows[-1].bias == pytest.approx(sweep.rows[-1].bias, rel=1e-9)


def test_bias_scan_is_linear_once_the_noise_is_out():
    bs = F.bias_scan(scales=(0.5, 1.0, 2.0), n_batches=200)
    per_eps = bs.corrected(list(F.BIAS_FORMS)[0]) / np.array(bs.scales)
    assert per_eps.max() < 1.15 * per_eps.min()
