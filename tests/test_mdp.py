"""pgcourse.mdp: exact values on hand-solved MDPs, gradients against finite differences, Monte Carlo in
gymnasium itself, the sampler's flags, and from_gymnasium on FrozenLake, CliffWalking and Taxi."""
import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from pgcourse.mdp import Episodes, TabularMDP, _safe_cdf, coin_flips, delayed_reward, early_rewards, frozen_lake

D = torch.float64


def logits_for(mdp: TabularMDP, seed: int = 0, scale: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(mdp.n_states, mdp.n_actions, generator=g, dtype=D)


# ---- hand-solved MDPs -----------------------------------------------------------------------------------------------

def one_state(gamma: float, horizon: int) -> TabularMDP:
    """One state that loops forever; action 1 pays 1, action 0 pays 0. J = π₁ Σ_{t<H} γᵗ."""
    return TabularMDP(torch.ones(1, 2, 1, dtype=D), torch.tensor([[0.0, 1.0]], dtype=D), torch.ones(1, dtype=D),
                      gamma, horizon)


def two_state(gamma: float, rewards_per_transition: bool = False) -> TabularMDP:
    """State 0: action 0 ends the episode with reward 1 (into the terminal state 1), action 1 stays with reward 1/2.

    With H = 2: V₁(0) = π₀ + π₁/2,  Q₀(0, 0) = 1,  Q₀(0, 1) = 1/2 + γ V₁(0),  J = π₀ + π₁ (1/2 + γ V₁(0)).
    """
    P = torch.zeros(2, 2, 2, dtype=D)
    P[0, 0, 1] = P[0, 1, 0] = 1.0
    P[1, :, 1] = 1.0
    if rewards_per_transition:
        R = torch.zeros(2, 2, 2, dtype=D)
        R[0, 0, 1], R[0, 1, 0] = 1.0, 0.5
        R[0, 0, 0] = 7.0  # never happens (probability 0): must not count
    else:
        R = torch.tensor([[1.0, 0.5], [0.0, 0.0]], dtype=D)
    return TabularMDP(P, R, torch.tensor([1.0, 0.0], dtype=D), gamma, horizon=2)


@pytest.mark.parametrize("gamma,horizon", [(1.0, 3), (0.9, 5), (0.0, 4)])
def test_one_state_mdp_by_hand(gamma, horizon):
    mdp = one_state(gamma, horizon)
    theta = torch.tensor([[0.3, -0.4]], dtype=D)
    p1 = torch.sigmoid(theta[0, 1] - theta[0, 0])
    c = sum(gamma ** t for t in range(horizon))
    assert mdp.terminal.tolist() == [False]
    torch.testing.assert_close(mdp.expected_return(theta), p1 * c)
    # ∂π₁/∂θ₁ = π₁π₀ = −∂π₁/∂θ₀
    torch.testing.assert_close(mdp.exact_gradient(theta), torch.stack([-p1 * (1 - p1) * c, p1 * (1 - p1) * c])[None])
    V, Q = mdp.values(theta)
    assert V.shape == (horizon + 1, 1) and Q.shape == (horizon, 1, 2)
    steps_left = torch.arange(horizon, -1, -1, dtype=D)
    torch.testing.assert_close(V[:, 0], p1 * ((1 - gamma ** steps_left) / (1 - gamma) if gamma < 1 else steps_left))


@pytest.mark.parametrize("per_transition", [False, True])
@pytest.mark.parametrize("gamma", [1.0, 0.8])
def test_two_state_mdp_by_hand(gamma, per_transition):
    mdp = two_state(gamma, per_transition)
    assert mdp.terminal.tolist() == [False, True]
    theta = torch.tensor([[0.2, 0.7], [0.0, 0.0]], dtype=D)
    p0, p1 = torch.softmax(theta[0], 0)
    v1 = p0 + 0.5 * p1
    J = p0 + p1 * (0.5 + gamma * v1)
    V, Q = mdp.values(theta)
    torch.testing.assert_close(V, torch.stack([torch.stack([J, J * 0]), torch.stack([v1, v1 * 0]),
                                               torch.zeros(2, dtype=D)]))
    torch.testing.assert_close(Q[0, 0], torch.stack([torch.ones((), dtype=D), 0.5 + gamma * v1]))
    torch.testing.assert_close(Q[1, 0], torch.tensor([1.0, 0.5], dtype=D))
    assert torch.equal(Q[:, 1], torch.zeros(2, 2, dtype=D))  # nothing happens in the terminal state
    torch.testing.assert_close(mdp.advantages(theta), Q - V[:-1, :, None])
    torch.testing.assert_close(mdp.expected_return(theta), J)
    # The exact gradient against autograd through the closed form.
    th = theta.clone().requires_grad_(True)
    q0, q1 = torch.softmax(th[0], 0)
    (grad,) = torch.autograd.grad(q0 + q1 * (0.5 + gamma * (q0 + 0.5 * q1)), th)
    torch.testing.assert_close(mdp.exact_gradient(theta), grad)
    # Visitation: at t=0 in state 0; at t=1 still there with probability π₁ (the terminal state is not counted).
    torch.testing.assert_close(mdp.state_visitation(theta), torch.stack([torch.tensor([1.0, 0.0], dtype=D),
                                                                          torch.stack([p1, p1 * 0])]))


def test_coin_flips_value_by_hand():
    # Each step pays noise·P(heads) + edge·π(a₁) in expectation: J = Σ_t γᵗ (1/2 + 0.1 π₁) for a state-blind policy.
    mdp = coin_flips(horizon=7, gamma=0.9)
    theta = torch.tensor([[0.0, 0.5], [0.0, 0.5]], dtype=D)
    p1 = torch.sigmoid(torch.tensor(0.5, dtype=D))
    torch.testing.assert_close(mdp.expected_return(theta), (0.5 + 0.1 * p1) * sum(0.9 ** t for t in range(7)))


def test_terminal_states_end_the_episode_even_if_not_absorbing():
    # State 1 is declared terminal but loops with reward 5: the episode still ends on entering it, as in sample().
    P = torch.zeros(2, 1, 2, dtype=D)
    P[0, 0, 1] = P[1, 0, 1] = 1.0
    R = torch.tensor([[1.0], [5.0]], dtype=D)
    mdp = TabularMDP(P, R, torch.tensor([1.0, 0.0], dtype=D), 1.0, horizon=4, terminal=[False, True])
    theta = torch.zeros(2, 1, dtype=D)
    assert float(mdp.expected_return(theta)) == 1.0
    ep = mdp.sample(theta, 5, seed=0)
    assert ep.rewards.sum(-1).tolist() == [1.0] * 5 and ep.terminated[:, 0].all()


# ---- exact gradient against finite differences ---------------------------------------------------------------------

def finite_difference_gradient(mdp: TabularMDP, theta: torch.Tensor, h: float = 1e-6) -> torch.Tensor:
    grad = torch.zeros_like(theta)
    for idx in np.ndindex(*theta.shape):
        e = torch.zeros_like(theta)
        e[idx] = h
        grad[idx] = (mdp.expected_return(theta + e) - mdp.expected_return(theta - e)) / (2 * h)
    return grad


@pytest.mark.parametrize("make", [
    lambda: coin_flips(horizon=6, gamma=0.9),
    lambda: early_rewards(horizon=6, gamma=1.0),
    lambda: delayed_reward(length=5, gamma=0.95),
    lambda: frozen_lake(horizon=20, gamma=0.95),
    lambda: two_state(0.7),
], ids=["coin_flips", "early_rewards", "delayed_reward", "frozen_lake", "two_state"])
def test_exact_gradient_matches_finite_differences(make):
    mdp = make()
    theta = logits_for(mdp, seed=1)
    exact = mdp.exact_gradient(theta)
    assert exact.shape == theta.shape and exact.dtype == D
    assert exact.abs().max() > 1e-4  # not a vacuous comparison
    torch.testing.assert_close(exact, finite_difference_gradient(mdp, theta), rtol=1e-6, atol=1e-8)


# ---- Monte Carlo: in gymnasium itself, and with our sampler --------------------------------------------------------

def test_frozen_lake_exact_J_matches_monte_carlo_in_gymnasium():
    H, gamma, n = 30, 0.98, 2500
    mdp = frozen_lake(horizon=H, gamma=gamma)
    # A softened version of the known optimal policy of slippery FrozenLake 4x4 (0 left, 1 down, 2 right, 3 up),
    # plus noise, reaches the goal often enough (J ≈ 0.13) for a sharp comparison.
    best = torch.tensor([0, 3, 3, 3, 0, 0, 0, 0, 3, 1, 0, 0, 0, 2, 1, 0])
    theta = 3.0 * torch.nn.functional.one_hot(best, 4).to(D) + logits_for(mdp, seed=2, scale=0.3)
    J = float(mdp.expected_return(theta))
    cdf = np.cumsum(torch.softmax(theta, -1).numpy(), -1)
    env = gym.make("FrozenLake-v1", max_episode_steps=H)
    rng = np.random.default_rng(0)
    returns = np.empty(n)
    s, _ = env.reset(seed=0)
    for i in range(n):
        if i:
            s, _ = env.reset()
        ret, disc, done = 0.0, 1.0, False
        while not done:
            a = min(int(np.searchsorted(cdf[s], rng.random(), side="right")), 3)
            s, r, terminated, truncated, _ = env.step(a)
            ret += disc * r
            disc *= gamma
            done = terminated or truncated
        returns[i] = ret
    env.close()
    se = returns.std(ddof=1) / math.sqrt(n)
    assert 0.05 < J < 0.95 and se < 0.15 * J
    assert abs(returns.mean() - J) < 4 * se, (returns.mean(), J, se)


@pytest.mark.parametrize("make", [
    lambda: coin_flips(horizon=8, gamma=0.9),
    lambda: early_rewards(horizon=8),
    lambda: delayed_reward(length=5, gamma=0.9),
    lambda: frozen_lake(horizon=25, gamma=0.95),
    lambda: TabularMDP.from_gymnasium("CliffWalking-v1", horizon=15, gamma=0.95),
    lambda: TabularMDP.from_gymnasium("Taxi-v4", horizon=10, gamma=0.95),
], ids=["coin_flips", "early_rewards", "delayed_reward", "frozen_lake", "cliff_walking", "taxi"])
def test_sampler_mean_return_matches_exact_J(make):
    mdp = make()
    theta = logits_for(mdp, seed=3)
    n = 10000
    ep = mdp.sample(theta, n, seed=4)
    disc = mdp.gamma ** torch.arange(mdp.horizon, dtype=D)
    ret = (ep.rewards * disc).sum(-1)  # padding carries reward 0
    se = float(ret.std() / math.sqrt(n))
    J = float(mdp.expected_return(theta))
    assert se > 0
    assert abs(float(ret.mean()) - J) < 4 * se, (float(ret.mean()), J, se)


def test_sampler_action_frequencies_match_policy():
    mdp = coin_flips(horizon=10)
    theta = torch.tensor([[0.0, 1.0], [-1.0, 0.0]], dtype=D)
    ep = mdp.sample(theta, 4000, seed=0)
    pi = torch.softmax(theta, -1)
    for s in range(2):
        acts = ep.actions[ep.states == s].double()
        p1 = float(pi[s, 1])
        se = math.sqrt(p1 * (1 - p1) / acts.numel())
        assert abs(float(acts.mean()) - p1) < 4 * se


# ---- the sampler's flags ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("make", [lambda: frozen_lake(horizon=12), lambda: delayed_reward(length=4, horizon=6),
                                  lambda: coin_flips(horizon=5)], ids=["frozen_lake", "delayed_reward", "coin_flips"])
def test_sample_flags_are_consistent(make):
    mdp = make()
    theta = logits_for(mdp, seed=5)
    N, H = 3000, mdp.horizon
    ep = mdp.sample(theta, N, seed=1)
    for name in ("states", "actions", "rewards", "next_states", "terminated", "truncated", "mask"):
        assert getattr(ep, name).shape == (N, H)
    assert ep.states.dtype == ep.actions.dtype == torch.long and ep.rewards.dtype == D
    m = ep.mask
    assert m[:, 0].all() or not (mdp.mu0 * mdp.terminal).sum()  # every episode starts alive here
    assert not (m[:, 1:] & ~m[:, :-1]).any(), "mask must be a prefix"
    assert not (ep.dones & ~m).any() and not (ep.rewards[~m] != 0).any(), "padding carries no flags or reward"
    assert not (ep.terminated & ep.truncated).any()
    # Exactly one done per episode, at its last real step.
    assert torch.equal(ep.dones.sum(-1), torch.ones(N, dtype=torch.long))
    last = m.sum(-1) - 1
    assert ep.dones[torch.arange(N), last].all()
    # Truncated only at the horizon; terminated exactly when the next state is terminal.
    assert not ep.truncated[:, :-1].any()
    assert torch.equal(ep.terminated, m & mdp.terminal[ep.next_states])
    # Transitions and rewards come from the tables; the next state is the next step's state.
    assert (mdp.P[ep.states[m], ep.actions[m], ep.next_states[m]] > 0).all()
    torch.testing.assert_close(ep.rewards[m], mdp.R_sas[ep.states[m], ep.actions[m], ep.next_states[m]])
    cont = m[:, 1:]
    assert torch.equal(ep.next_states[:, :-1][cont], ep.states[:, 1:][cont])
    assert not mdp.terminal[ep.states[m]].any()
    assert ep.n_steps == int(m.sum()) and len(ep) == N
    assert torch.equal(ep.dones, ep.terminated | ep.truncated)
    sub = ep[:7]
    assert isinstance(sub, Episodes) and len(sub) == 7 and torch.equal(sub.rewards, ep.rewards[:7])


def test_sample_is_seeded():
    mdp = frozen_lake(horizon=10)
    theta = logits_for(mdp)
    a, b, c = mdp.sample(theta, 50, seed=3), mdp.sample(theta, 50, seed=3), mdp.sample(theta, 50, seed=4)
    assert torch.equal(a.states, b.states) and torch.equal(a.rewards, b.rewards)
    assert not torch.equal(a.actions, c.actions)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(mdp.sample(theta, 50, g1).actions, mdp.sample(theta, 50, g2).actions)


def test_zero_probability_outcomes_are_never_drawn():
    # Ten outcomes of probability 0.1 sum to 0.9999999999999999 in floating point; u just below 1 must
    # still select one of them, never the zero-probability outcome behind them.
    p = torch.tensor([0.1] * 10 + [0.0], dtype=D)
    assert float(p.cumsum(0)[9]) < 1.0
    u = torch.tensor([0.0, 0.5, 1.0 - 2.0 ** -53], dtype=D)
    assert ((_safe_cdf(p) <= u[:, None]).sum(-1)).tolist() == [0, 5, 9]
    # Zero probability first or in the middle: skipped.
    q = torch.tensor([0.0, 0.5, 0.0, 0.5], dtype=D)
    assert ((_safe_cdf(q) <= torch.tensor([0.0, 0.49, 0.5, 0.99], dtype=D)[:, None]).sum(-1)).tolist() == [1, 1, 3, 3]
    # A softmax probability that underflows to 0 is never sampled.
    mdp = one_state(1.0, 3)
    ep = mdp.sample(torch.tensor([[0.0, -1e4]], dtype=D), 2000, seed=0)
    assert not ep.actions.any()


def test_sample_on_device(dev):
    mdp = frozen_lake(horizon=10)
    ep = mdp.sample(logits_for(mdp).to(dev), 64, seed=0)
    assert ep.states.device.type == ep.rewards.device.type == ep.mask.device.type == dev.type
    assert torch.equal(ep.terminated.cpu(), (ep.mask & mdp.terminal.to(dev)[ep.next_states]).cpu())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_values_keep_dtype_and_device(dev, dtype):
    mdp = delayed_reward(length=4)
    theta = logits_for(mdp).to(dev, dtype)
    J = mdp.expected_return(theta)
    g = mdp.exact_gradient(theta)
    assert J.dtype == g.dtype == dtype and J.device.type == g.device.type == dev.type
    ref = mdp.exact_gradient(logits_for(mdp))
    torch.testing.assert_close(g.cpu().double(), ref, rtol=1e-4, atol=1e-6)


def test_with_changes_gamma_and_horizon_only():
    mdp = delayed_reward(length=4, gamma=0.9)
    other = mdp.with_(gamma=0.5, horizon=3)
    assert (other.gamma, other.horizon, mdp.gamma) == (0.5, 3, 0.9)
    assert torch.equal(other.P, mdp.P) and torch.equal(other.R_sas, mdp.R_sas) and torch.equal(other.terminal, mdp.terminal)
    assert "horizon=3" in repr(other)


# ---- from_gymnasium ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("env_id", ["FrozenLake-v1", "CliffWalking-v1", "Taxi-v4"])
def test_from_gymnasium_builds_a_valid_mdp(env_id):
    env = gym.make(env_id)
    u = env.unwrapped
    mdp = TabularMDP.from_gymnasium(env, horizon=10, gamma=0.9)
    S = u.observation_space.n
    assert mdp.n_actions == u.action_space.n and mdp.n_states in (S, S + 1)
    torch.testing.assert_close(mdp.P.sum(-1), torch.ones(mdp.n_states, mdp.n_actions, dtype=D))
    assert (mdp.P >= 0).all()
    assert mdp.terminal.any()
    for s in torch.nonzero(mdp.terminal).flatten().tolist():  # absorbing, zero reward
        assert (mdp.P[s, :, s] == 1).all() and (mdp.R_sas[s] == 0).all() and (mdp.R[s] == 0).all()
    torch.testing.assert_close(mdp.mu0[:S], torch.as_tensor(u.initial_state_distrib, dtype=D))
    assert float(mdp.mu0.sum()) == pytest.approx(1.0)
    # Every non-terminal state's transitions agree with the table: expected rewards, and where a
    # gymnasium transition terminates, ours enters a terminal state; where it does not, ours does not.
    for s in range(S):
        if mdp.terminal[s]:
            continue
        for a in range(mdp.n_actions):
            entries = u.P[s][a]
            assert float(mdp.R[s, a]) == pytest.approx(sum(p * r for p, _, r, _ in entries))
            p_term = sum(p for p, _, _, d in entries if d)
            assert float(mdp.P[s, a][mdp.terminal].sum()) == pytest.approx(p_term)
            for p, s2, _, d in entries:
                if p > 0 and not d:
                    assert not mdp.terminal[s2] and float(mdp.P[s, a, s2]) >= p - 1e-12


def test_frozen_lake_helper_is_from_gymnasium():
    a = frozen_lake(horizon=7, gamma=0.8)
    b = TabularMDP.from_gymnasium(gym.make("FrozenLake-v1"), horizon=7, gamma=0.8)
    assert torch.equal(a.P, b.P) and torch.equal(a.R_sas, b.R_sas) and torch.equal(a.mu0, b.mu0)
    assert a.terminal.sum() == 5  # four holes and the goal
    assert (a.horizon, a.gamma) == (7, 0.8)
    not_slippery = frozen_lake(slippery=False)
    assert ((not_slippery.P == 0) | (not_slippery.P == 1)).all()
