"""pgcourse.variance: every unbiased Ψ is unbiased, the biased ones are measurably biased, and the variance
claims of the course hold, all against the exact gradient of a TabularMDP.

Statistics: each test draws many independent batch estimates ĝ with a fixed seed, and compares their mean
with the exact gradient coordinate by coordinate, in units of the standard error of that mean (the sample
standard deviation of the batches / √n_batches, with n_batches ≥ 1000, so the SE itself is accurate to ~2%).

Multiple comparisons: the unbiasedness tests below make 6 forms × (4 + 4 + 28 + 8 + 64) coordinates ≈ 650
comparisons (plus the baseline tests). For a normal mean, P(|z| > 4) = 6.3e-5, so the whole file expects
~0.04 false alarms: a 4-SE margin per coordinate keeps the family-wise false-alarm rate near 4% even without
the fixed seeds, while a real bias of the size the biased forms show (10–60 SE here) is never missed. The
biased forms must exceed 6 SE, well clear of the largest |z| an unbiased form reaches here (2.9 with these seeds;
the smallest biased one is 10.6).
Coordinates with zero variance (states never visited, e.g. FrozenLake's holes) carry no information and are
skipped; each test checks that enough coordinates remain.
"""
import math

import pytest
import torch

from pgcourse import estimators as est
from pgcourse.baselines import batch_mean_baseline
from pgcourse.mdp import TabularMDP, coin_flips, delayed_reward, early_rewards, frozen_lake
from pgcourse.policies import softmax_score
from pgcourse.returns import reward_to_go
from pgcourse.variance import (PSI_FORMS, Row, VarianceTable, by_batch, compare, exact_step_values, gradient_samples,
                               psi_weights, summarize)

D = torch.float64
Z_OK, Z_BIASED = 4.0, 6.0


def logits_for(mdp: TabularMDP, seed: int = 0, scale: float = 1.0) -> torch.Tensor:
    return scale * torch.randn(mdp.n_states, mdp.n_actions, generator=torch.Generator().manual_seed(seed), dtype=D)


def frozen_lake_case():
    mdp = frozen_lake(horizon=15, gamma=0.9)
    # Near the known optimal policy, so that the goal (the only reward) is reached often.
    best = torch.tensor([0, 3, 3, 3, 0, 0, 0, 0, 3, 1, 0, 0, 0, 2, 1, 0])
    return mdp, 2.0 * torch.nn.functional.one_hot(best, 4).to(D) + logits_for(mdp, scale=0.3)


CASES = {
    "coin_flips": lambda: (coin_flips(horizon=6), logits_for(coin_flips(), 1)),
    "coin_flips_discounted": lambda: (coin_flips(horizon=6, gamma=0.8), logits_for(coin_flips(), 1)),
    "early_rewards": lambda: (early_rewards(horizon=6, gamma=0.9), logits_for(early_rewards(horizon=6))),
    "delayed_reward": lambda: (delayed_reward(length=4, horizon=10, gamma=0.8), logits_for(delayed_reward(length=4))),
    "frozen_lake": frozen_lake_case,
}


def z_scores(samples: torch.Tensor, target: torch.Tensor, min_coords: int = 4) -> torch.Tensor:
    """|mean − target| / SE per coordinate, over the coordinates whose samples vary."""
    n = samples.shape[0]
    se = samples.std(0) / math.sqrt(n)
    keep = se > 1e-12
    assert int(keep.sum()) >= min_coords, "too few informative coordinates"
    # A zero-variance coordinate must still agree with the target (it is 0 in both when a state is never visited).
    torch.testing.assert_close(samples.mean(0)[~keep], target[~keep], atol=1e-9, rtol=0)
    return (samples.mean(0) - target).abs()[keep] / se[keep]


# ---- unbiased: every Ψ form ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("psi", PSI_FORMS)
@pytest.mark.parametrize("case", list(CASES))
def test_every_psi_form_is_unbiased(case, psi):
    mdp, logits = CASES[case]()
    exact = mdp.exact_gradient(logits)
    samples = gradient_samples(mdp, logits, psi, batch_size=10, n_batches=2000, seed=11)
    assert samples.shape == (2000, mdp.n_states, mdp.n_actions) and samples.dtype == D
    z = z_scores(samples, exact)
    assert z.max() < Z_OK, f"{psi} on {case}: max |z| = {float(z.max()):.2f}"


# ---- biased: no γᵗ with γ < 1; an action-dependent baseline ---------------------------------------------------------

@pytest.mark.parametrize("psi", PSI_FORMS[1:])
@pytest.mark.parametrize("case", ["delayed_reward", "frozen_lake", "early_rewards"])
def test_forms_without_discount_t_are_biased(case, psi):
    mdp, logits = CASES[case]()
    assert mdp.gamma < 1
    exact = mdp.exact_gradient(logits)
    samples = gradient_samples(mdp, logits, psi, batch_size=10, n_batches=4000, seed=12, discount_t=False)
    z = z_scores(samples, exact)
    assert z.max() > Z_BIASED, f"{psi} without γᵗ on {case}: max |z| = {float(z.max()):.2f}"


def test_forms_without_discount_t_are_unbiased_when_gamma_is_one():
    mdp, logits = CASES["coin_flips"]()
    samples = gradient_samples(mdp, logits, "advantage", 10, 2000, seed=13, discount_t=False)
    assert z_scores(samples, mdp.exact_gradient(logits)).max() < Z_OK


def test_action_dependent_baseline_is_biased_by_the_predicted_amount():
    mdp = coin_flips(horizon=6)
    logits = logits_for(mdp, 2)
    b = torch.tensor([[0.0, 2.0], [1.0, -1.0]], dtype=D)  # b(s, a): depends on the action
    samples = gradient_samples(mdp, logits, "reward_to_go_minus_baseline", 10, 2000, seed=14, action_baseline=b)
    exact = mdp.exact_gradient(logits)
    assert z_scores(samples, exact).max() > Z_BIASED
    # The bias is −Σ_t Σ_s d_t(s) Σ_a π(a|s) b(s, a) ∇log π(a|s): the mean must match exact + that.
    d, pi = mdp.state_visitation(logits), torch.softmax(logits, -1)
    bias = -sum(d[t, s] * pi[s, a] * b[s, a] * softmax_score(logits, s, a)
                for t in range(mdp.horizon) for s in range(2) for a in range(2))
    assert z_scores(samples, exact + bias).max() < Z_OK


@pytest.mark.parametrize("baseline", [
    torch.tensor([3.0, -2.0], dtype=D),                                 # b(s)
    torch.linspace(-1, 4, 7 * 2, dtype=D).view(7, 2),                   # b_t(s), (H + 1, S)
    5.0,                                                                # a constant
], ids=["state", "time_and_state", "constant"])
def test_state_dependent_baselines_are_unbiased(baseline):
    mdp = coin_flips(horizon=6, gamma=0.8)
    logits = logits_for(mdp, 2)
    samples = gradient_samples(mdp, logits, "reward_to_go_minus_baseline", 10, 2000, seed=15, baseline=baseline)
    assert z_scores(samples, mdp.exact_gradient(logits)).max() < Z_OK


def _rtg_batch_mean(leave_one_out: bool):
    def baseline(ep):  # ep laid out (batch_size, n, H): axis 0 is one batch
        return batch_mean_baseline(reward_to_go(ep.rewards, 1.0, ep.dones), ep.mask, leave_one_out=leave_one_out)
    return baseline


@pytest.mark.parametrize("batch_size", [2, 4])
def test_batch_mean_baseline_is_biased_by_one_over_n_and_leave_one_out_is_not(batch_size):
    # With b_t = the batch's mean reward-to-go, episode i's own G_t is a 1/B part of its baseline, so
    # E[ĝ] = (1 − 1/B) ∇J exactly (coin_flips has no early ends); leave-one-out leaves ĝ unbiased.
    mdp = coin_flips(horizon=4, noise=0.5, edge=1.0)
    logits = logits_for(mdp, 3)
    exact = mdp.exact_gradient(logits)
    n_batches = 8000 // batch_size
    plain = gradient_samples(mdp, logits, "reward_to_go_minus_baseline", batch_size, n_batches, seed=16,
                             baseline=_rtg_batch_mean(False))
    assert z_scores(plain, exact).max() > Z_BIASED
    assert z_scores(plain, (1 - 1 / batch_size) * exact).max() < Z_OK
    loo = gradient_samples(mdp, logits, "reward_to_go_minus_baseline", batch_size, n_batches, seed=16,
                           baseline=_rtg_batch_mean(True))
    assert z_scores(loo, exact).max() < Z_OK


# ---- variance claims ------------------------------------------------------------------------------------------------

def test_reward_to_go_and_advantage_reduce_variance_on_coin_flips():
    table = compare(coin_flips(), torch.zeros(2, 2, dtype=D), ("full_return", "reward_to_go", "advantage"), 16, 1000)
    fr, rtg, adv = table["full_return"], table["reward_to_go"], table["advantage"]

    def clearly_less(a: Row, b: Row, k: float = 10.0) -> bool:
        return b.variance - a.variance > k * math.hypot(a.variance_se, b.variance_se)

    assert clearly_less(rtg, fr) and clearly_less(adv, rtg)
    for row in (fr, rtg, adv):
        assert row.bias < 4 * row.bias_se  # and none of them is biased


def test_variance_falls_as_one_over_batch_size():
    mdp, logits = CASES["early_rewards"]()
    exact = mdp.exact_gradient(logits)
    small = summarize(gradient_samples(mdp, logits, "reward_to_go", 4, 3000, seed=17), exact)
    large = summarize(gradient_samples(mdp, logits, "reward_to_go", 16, 3000, seed=18), exact)
    ratio = small.variance / large.variance
    ratio_se = ratio * math.hypot(small.variance_se / small.variance, large.variance_se / large.variance)
    assert ratio_se < 0.5  # precise enough to tell 4 from 2 or 8
    assert abs(ratio - 4.0) < 4 * ratio_se, (ratio, ratio_se)


# ---- summarize, compare, the table -----------------------------------------------------------------------------------

def test_summarize_by_hand():
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=D)
    row = summarize(x, torch.zeros(2, dtype=D), "p")
    # mean (2, 3): bias √13; per-batch squared deviations ·n/(n−1) = (2, 2)·2 → tr Σ = 4, SE of the bias √(4/2);
    # squared errors (5, 25): MSE 15 with SE std(5, 25)/√2 = 10.
    assert row.psi == "p"
    assert row.bias == pytest.approx(math.sqrt(13)) and row.bias_se == pytest.approx(math.sqrt(2))
    assert row.variance == pytest.approx(4.0) and row.variance_se == pytest.approx(0.0)
    assert row.mse == pytest.approx(15.0) and row.mse_se == pytest.approx(10.0)
    # MSE = bias² + variance·(n−1)/n for the same samples.
    assert row.mse == pytest.approx(row.bias ** 2 + row.variance * 1 / 2)


def test_summarize_bias_se_is_the_noise_floor_of_an_unbiased_mean():
    # For unbiased samples, ‖mean − g‖ is about √(tr Σ / n): bias ≈ bias_se.
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4000, 10, generator=g, dtype=D) * torch.linspace(0.5, 3, 10, dtype=D)
    row = summarize(x, torch.zeros(10, dtype=D))
    assert 0.6 < row.bias / row.bias_se < 1.4
    assert row.variance == pytest.approx(float((torch.linspace(0.5, 3, 10, dtype=D) ** 2).sum()), rel=0.05)


def test_compare_and_table():
    mdp = coin_flips(horizon=3)
    table = compare(mdp, torch.zeros(2, 2, dtype=D), ("full_return", "advantage"), 4, 50, seed=1)
    assert isinstance(table, VarianceTable) and [r.psi for r in table.rows] == ["full_return", "advantage"]
    text = str(table)
    assert "coin_flips" in text and "full_return" in text and "advantage" in text and "±" in text
    assert table["advantage"] is table.rows[1]
    with pytest.raises(KeyError):
        table["nope"]
    # compare uses the same seed for each form and summarize on gradient_samples.
    exact = mdp.exact_gradient(torch.zeros(2, 2, dtype=D))
    assert table["advantage"] == summarize(gradient_samples(mdp, torch.zeros(2, 2, dtype=D), "advantage", 4, 50, 1),
                                           exact, "advantage")


# ---- gradient_samples mechanics --------------------------------------------------------------------------------------

def test_gradient_samples_is_seeded_and_chunking_keeps_batches_whole():
    mdp, logits = CASES["early_rewards"]()
    a = gradient_samples(mdp, logits, "advantage", 5, 40, seed=3)
    b = gradient_samples(mdp, logits, "advantage", 5, 40, seed=3)
    c = gradient_samples(mdp, logits, "advantage", 5, 40, seed=4)
    assert torch.equal(a, b) and not torch.equal(a, c)
    # Small chunks (3 batches each, the last one short) give the same kind of estimates.
    small = gradient_samples(mdp, logits, "advantage", 5, 40, seed=3, chunk_episodes=15)
    assert small.shape == a.shape
    # One batch per chunk with a generator: each row is exactly the estimate from mdp.sample's episodes.
    g = torch.Generator().manual_seed(9)
    rows = gradient_samples(mdp, logits, "reward_to_go", 5, 3, seed=g, chunk_episodes=5)
    g = torch.Generator().manual_seed(9)
    for k in range(3):
        ep = mdp.sample(logits, 5, g)
        th = logits.clone().requires_grad_(True)
        logp = torch.log_softmax(th, -1)[ep.states, ep.actions]
        w = est.reward_to_go_weights(ep.rewards, mdp.gamma, ep.dones)
        (grad,) = torch.autograd.grad(-est.pg_loss(logp, w, ep.mask), th)
        torch.testing.assert_close(rows[k], grad)


@pytest.mark.parametrize("psi", ["reward_to_go", "advantage", "td_residual"])
def test_callable_psi_sees_batches_and_matches_the_named_form(psi):
    # A callable gets (batch_size, n, H) episodes; its weights are mapped back to the right episodes.
    mdp, logits = CASES["delayed_reward"]()
    shapes = []

    def fn(ep, mdp_, logits_):
        shapes.append(tuple(ep.rewards.shape))
        return psi_weights(psi, ep, mdp_, logits_)

    named = gradient_samples(mdp, logits, psi, 3, 20, seed=5)
    called = gradient_samples(mdp, logits, fn, 3, 20, seed=5)
    assert shapes == [(3, 20, mdp.horizon)]
    torch.testing.assert_close(called, named)
    zero = gradient_samples(mdp, logits, "reward_to_go_minus_baseline", 3, 20, seed=5,
                            baseline=lambda ep: torch.zeros_like(ep.rewards))
    torch.testing.assert_close(zero, gradient_samples(mdp, logits, "reward_to_go", 3, 20, seed=5))


def test_by_batch_layout():
    mdp, logits = CASES["coin_flips"]()
    ep = mdp.sample(logits, 12, seed=0)
    view = by_batch(ep, 4)
    assert view.rewards.shape == (4, 3, mdp.horizon)
    for j in range(3):  # batch j is rows 4j..4j+3
        assert torch.equal(view.states[:, j], ep.states[4 * j:4 * j + 4])
        assert torch.equal(view.mask[:, j], ep.mask[4 * j:4 * j + 4])
    with pytest.raises(ValueError, match="batch_size"):
        by_batch(ep, 5)


def test_exact_step_values_and_psi_weights_by_hand():
    mdp, logits = CASES["frozen_lake"]()
    ep = mdp.sample(logits, 30, seed=2)
    V, Q = mdp.values(logits)
    v, q, v_next = exact_step_values(mdp, logits, ep)
    for i in range(30):
        for t in range(mdp.horizon):
            s, a, s2 = int(ep.states[i, t]), int(ep.actions[i, t]), int(ep.next_states[i, t])
            assert float(v[i, t]) == float(V[t, s]) and float(q[i, t]) == float(Q[t, s, a])
            assert float(v_next[i, t]) == (0.0 if ep.terminated[i, t] else float(V[t + 1, s2]))
    g, r, dn = mdp.gamma, ep.rewards, ep.dones
    expected = {
        "full_return": est.full_return_weights(r, g, dn),
        "reward_to_go": est.reward_to_go_weights(r, g, dn),
        "reward_to_go_minus_value": est.baseline_weights(r, v, g, dn),
        "q_value": est.q_weights(q, g, dn),
        "advantage": est.advantage_weights(q - v, g, dn),
        "td_residual": est.td_residual_weights(r, v, v_next, ep.terminated, ep.truncated, g),
    }
    for name, w in expected.items():
        torch.testing.assert_close(psi_weights(name, ep, mdp, logits), w)
    # On valid steps the td residual's expectation given (s, a) is the advantage: check one identity exactly,
    # r + γ E[V(s')] − V(s) = Q − V with the MDP's own tables.
    s, a, t = 6, 1, 3  # a frozen (non-terminal) cell
    assert float(mdp.R[s, a] + g * mdp.P[s, a] @ V[t + 1] - V[t, s]) == pytest.approx(float(Q[t, s, a] - V[t, s]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gradient_samples_on_device_and_dtype(dev, dtype):
    mdp, logits = CASES["early_rewards"]()
    x = gradient_samples(mdp, logits.to(dev, dtype), "advantage", 10, 1000, seed=6)
    assert x.device.type == dev.type and x.dtype == dtype
    # On any device the estimates are unbiased (CUDA draws other random numbers, so compare statistically).
    z = z_scores(x.double().cpu(), mdp.exact_gradient(logits))
    assert z.max() < Z_OK
