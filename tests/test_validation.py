"""Bad input gets a ValueError or TypeError whose message names the argument — never a silent wrong answer."""
import gymnasium as gym
import numpy as np
import pytest
import torch

from pgcourse import baselines as bl
from pgcourse import estimators as est
from pgcourse import returns as ret
from pgcourse.device import generator, seed_everything
from pgcourse.mdp import TabularMDP, coin_flips
from pgcourse.policies import MLPCategorical, softmax_log_prob, softmax_probs, softmax_score
from pgcourse.variance import gradient_samples, summarize

NAN = float("nan")
R = torch.ones(2, 3)
B = torch.zeros(2, 3, dtype=torch.bool)
MDP = coin_flips(horizon=3)
TH = torch.zeros(2, 2, dtype=torch.float64)
P_OK = torch.full((2, 2, 2), 0.5, dtype=torch.float64)
R_OK = torch.zeros(2, 2, dtype=torch.float64)
MU_OK = torch.tensor([0.5, 0.5], dtype=torch.float64)


def with_nan(x):
    x = x.clone()
    x.view(-1)[1] = NAN
    return x


CASES = [
    # ---- returns
    ("rtg int rewards", lambda: ret.reward_to_go(torch.ones(2, 3, dtype=torch.long)), TypeError, "rewards"),
    ("rtg nan reward", lambda: ret.reward_to_go(with_nan(R)), ValueError, "rewards"),
    ("rtg inf reward", lambda: ret.reward_to_go(torch.tensor([1.0, float("inf")])), ValueError, "rewards"),
    ("rtg empty batch", lambda: ret.reward_to_go(torch.ones(0, 3)), ValueError, "rewards"),
    ("rtg empty time", lambda: ret.reward_to_go(torch.ones(2, 0)), ValueError, "rewards"),
    ("rtg scalar", lambda: ret.reward_to_go(torch.tensor(1.0)), ValueError, "rewards"),
    ("rtg not a tensor", lambda: ret.reward_to_go("abc"), TypeError, "rewards"),
    ("rtg ragged list", lambda: ret.reward_to_go([[1.0], [1.0, 2.0]]), TypeError, "rewards"),
    ("rtg gamma > 1", lambda: ret.reward_to_go(R, 1.5), ValueError, "gamma"),
    ("rtg gamma < 0", lambda: ret.reward_to_go(R, -0.1), ValueError, "gamma"),
    ("rtg gamma nan", lambda: ret.reward_to_go(R, NAN), ValueError, "gamma"),
    ("rtg gamma str", lambda: ret.reward_to_go(R, "0.9"), TypeError, "gamma"),
    ("rtg gamma None", lambda: ret.reward_to_go(R, None), TypeError, "gamma"),
    ("rtg gamma vector", lambda: ret.reward_to_go(R, torch.tensor([0.5, 0.5])), TypeError, "gamma"),
    ("rtg dones shape", lambda: ret.reward_to_go(R, 0.9, torch.zeros(2, 4, dtype=torch.bool)), ValueError, "dones"),
    ("rtg dones 0.5", lambda: ret.reward_to_go(R, 0.9, torch.full((2, 3), 0.5)), ValueError, "dones"),
    ("rtg dones nan", lambda: ret.reward_to_go(R, 0.9, torch.full((2, 3), NAN)), ValueError, "dones"),
    ("rtg dones 2", lambda: ret.reward_to_go(R, 0.9, torch.full((2, 3), 2)), ValueError, "dones"),
    ("return nan reward", lambda: ret.discounted_return(with_nan(R), 0.9), ValueError, "rewards"),
    ("return gamma", lambda: ret.discounted_return(R, 2.0), ValueError, "gamma"),
    ("return dones shape", lambda: ret.discounted_return(R, 0.9, torch.zeros(3, dtype=torch.bool)), ValueError, "dones"),
    ("gae values shape", lambda: ret.gae(R, torch.ones(2, 4), R, B), ValueError, "values"),
    ("gae next_values shape", lambda: ret.gae(R, R, torch.ones(3, 3), B), ValueError, "next_values"),
    ("gae terminated shape", lambda: ret.gae(R, R, R, torch.zeros(2, 2, dtype=torch.bool)), ValueError, "terminated"),
    ("gae truncated 0.5", lambda: ret.gae(R, R, R, B, torch.full((2, 3), 0.5)), ValueError, "truncated"),
    ("gae lam > 1", lambda: ret.gae(R, R, R, B, lam=1.5), ValueError, "lam"),
    ("gae lam nan", lambda: ret.gae(R, R, R, B, lam=NAN), ValueError, "lam"),
    ("gae gamma < 0", lambda: ret.gae(R, R, R, B, gamma=-1.0), ValueError, "gamma"),
    ("gae values dtype", lambda: ret.gae(R, R.double(), R, B), TypeError, "values"),
    ("gae int rewards", lambda: ret.gae(R.long(), R, R, B), TypeError, "rewards"),
    ("gae nan values", lambda: ret.gae(R, with_nan(R), R, B), ValueError, "values"),
    ("gae nan next_values", lambda: ret.gae(R, R, with_nan(R), B), ValueError, "next_values"),
    ("steps dones 0.5", lambda: ret.steps_since_start(torch.full((2, 3), 0.5)), ValueError, "dones"),
    ("start index not a tensor", lambda: ret.episode_start_index("dones"), TypeError, "dones"),
    ("scan coef shape", lambda: ret.reverse_scan(R, torch.ones(2, 2)), ValueError, "coef"),
    # ---- estimators
    ("pg_loss weights shape", lambda: est.pg_loss(R, torch.ones(2, 2)), ValueError, "weights"),
    ("pg_loss nan weights", lambda: est.pg_loss(R, with_nan(R)), ValueError, "weights"),
    ("pg_loss int logp", lambda: est.pg_loss(R.long(), R), TypeError, "logp"),
    ("pg_loss nan logp unmasked", lambda: est.pg_loss(with_nan(R), R), ValueError, "logp"),
    ("pg_loss mask shape", lambda: est.pg_loss(R, R, torch.ones(3, 2, dtype=torch.bool)), ValueError, "mask"),
    ("pg_loss mask 0.5", lambda: est.pg_loss(R, R, torch.full((2, 3), 0.5)), ValueError, "mask"),
    ("pg_loss empty", lambda: est.pg_loss(torch.ones(0, 3), torch.ones(0, 3)), ValueError, "logp"),
    ("baseline nan", lambda: est.baseline_weights(R, NAN), ValueError, "baseline"),
    ("baseline shape", lambda: est.baseline_weights(R, torch.ones(3)), ValueError, "baseline"),
    ("baseline str", lambda: est.baseline_weights(R, "b"), TypeError, "baseline"),
    ("q int", lambda: est.q_weights(R.long()), TypeError, "q"),
    ("advantages nan", lambda: est.advantage_weights(with_nan(R)), ValueError, "advantages"),
    ("weights gamma", lambda: est.reward_to_go_weights(R, 1.01), ValueError, "gamma"),
    ("weights dones", lambda: est.reward_to_go_weights(R, 0.9, torch.ones(2)), ValueError, "dones"),
    ("discount_factors gamma", lambda: est.discount_factors(B, 2.0), ValueError, "gamma"),
    ("discount_factors dones", lambda: est.discount_factors(torch.full((2, 3), 0.5), 0.9), ValueError, "dones"),
    ("td lam-free gamma", lambda: est.td_residual_weights(R, R, R, B, None, NAN), ValueError, "gamma"),
    ("gae_weights lam", lambda: est.gae_weights(R, R, R, B, None, 0.9, -0.5), ValueError, "lam"),
    # ---- baselines
    ("loo one episode", lambda: bl.batch_mean_baseline(torch.ones(1, 3), leave_one_out=True), ValueError, "x"),
    ("batch mean mask shape", lambda: bl.batch_mean_baseline(R, torch.ones(3, dtype=torch.bool)), ValueError, "mask"),
    ("batch mean nan", lambda: bl.batch_mean_baseline(with_nan(R)), ValueError, "x"),
    ("ema decay", lambda: bl.ema(torch.ones(3), 1.5), ValueError, "decay"),
    ("ema int", lambda: bl.ema(torch.ones(3, dtype=torch.long)), TypeError, "series"),
    ("moving average decay", lambda: bl.MovingAverage(decay=-0.1), ValueError, "decay"),
    ("optimal b shapes", lambda: bl.optimal_constant_baseline(torch.ones(3), torch.ones(2)), ValueError, "score_sq_norms"),
    ("constant like int", lambda: bl.constant_baseline(torch.ones(3, dtype=torch.long), 1.0), TypeError, "like"),
    # ---- policies
    ("probs 1-d", lambda: softmax_probs(torch.zeros(3)), ValueError, "logits"),
    ("probs 3-d", lambda: softmax_probs(torch.zeros(2, 2, 2)), ValueError, "logits"),
    ("probs int", lambda: softmax_probs(torch.zeros(2, 2, dtype=torch.long)), TypeError, "logits"),
    ("probs nan", lambda: softmax_probs(with_nan(torch.zeros(2, 2))), ValueError, "logits"),
    ("score state", lambda: softmax_score(torch.zeros(2, 3), 2, 0), ValueError, "state"),
    ("score action", lambda: softmax_score(torch.zeros(2, 3), 0, -1), ValueError, "action"),
    ("log_prob float states", lambda: softmax_log_prob(torch.zeros(2, 3), torch.zeros(2), torch.zeros(2).long()),
     TypeError, "states"),
    ("log_prob actions range", lambda: softmax_log_prob(torch.zeros(2, 3), torch.zeros(2).long(), torch.tensor([0, 3])),
     ValueError, "actions"),
    ("log_prob shapes", lambda: softmax_log_prob(torch.zeros(2, 3), torch.zeros(2).long(), torch.zeros(3).long()),
     ValueError, "actions"),
    ("log_prob logits shape", lambda: softmax_log_prob(torch.zeros(3), torch.zeros(2).long(), torch.zeros(2).long()),
     ValueError, "logits"),
    ("mlp obs", lambda: MLPCategorical(4, 2)(torch.zeros(3, 5)), ValueError, "obs"),
    ("mlp obs_dim", lambda: MLPCategorical(0, 2), ValueError, "obs_dim"),
    ("mlp n_actions", lambda: MLPCategorical(4, 2.5), TypeError, "n_actions"),
    # ---- TabularMDP
    ("P rows", lambda: TabularMDP(P_OK * 0.9, R_OK, MU_OK), ValueError, "P"),
    ("P negative", lambda: TabularMDP(P_OK * torch.tensor([1.5, -0.5], dtype=torch.float64), R_OK, MU_OK),
     ValueError, "P"),
    ("P not square", lambda: TabularMDP(torch.full((2, 2, 3), 1 / 3, dtype=torch.float64), R_OK, MU_OK), ValueError, "P"),
    ("P 2-d", lambda: TabularMDP(torch.ones(2, 2), R_OK, MU_OK), ValueError, "P"),
    ("P nan", lambda: TabularMDP(with_nan(P_OK), R_OK, MU_OK), ValueError, "P"),
    ("R shape", lambda: TabularMDP(P_OK, torch.zeros(3, 2), MU_OK), ValueError, "R"),
    ("R nan", lambda: TabularMDP(P_OK, with_nan(R_OK), MU_OK), ValueError, "R"),
    ("mu0 sum", lambda: TabularMDP(P_OK, R_OK, torch.tensor([0.5, 0.6])), ValueError, "mu0"),
    ("mu0 length", lambda: TabularMDP(P_OK, R_OK, torch.tensor([1.0])), ValueError, "mu0"),
    ("mdp gamma", lambda: TabularMDP(P_OK, R_OK, MU_OK, gamma=1.2), ValueError, "gamma"),
    ("mdp gamma nan", lambda: TabularMDP(P_OK, R_OK, MU_OK, gamma=NAN), ValueError, "gamma"),
    ("mdp horizon 0", lambda: TabularMDP(P_OK, R_OK, MU_OK, horizon=0), ValueError, "horizon"),
    ("mdp horizon float", lambda: TabularMDP(P_OK, R_OK, MU_OK, horizon=2.5), TypeError, "horizon"),
    ("mdp terminal shape", lambda: TabularMDP(P_OK, R_OK, MU_OK, terminal=[True]), ValueError, "terminal"),
    ("J logits shape", lambda: MDP.expected_return(torch.zeros(2, 3)), ValueError, "logits"),
    ("J logits int", lambda: MDP.expected_return(torch.zeros(2, 2, dtype=torch.long)), TypeError, "logits"),
    ("gradient logits nan", lambda: MDP.exact_gradient(with_nan(TH)), ValueError, "logits"),
    ("values logits 1-d", lambda: MDP.values(torch.zeros(4)), ValueError, "logits"),
    ("sample logits shape", lambda: MDP.sample(torch.zeros(3, 2), 4), ValueError, "logits"),
    ("sample n_episodes 0", lambda: MDP.sample(TH, 0), ValueError, "n_episodes"),
    ("sample n_episodes float", lambda: MDP.sample(TH, 4.0), TypeError, "n_episodes"),
    ("sample seed", lambda: MDP.sample(TH, 4, seed="x"), TypeError, "seed"),
    ("from_gymnasium not toy text", lambda: TabularMDP.from_gymnasium(gym.make("CartPole-v1"), 10), TypeError, "env"),
    ("with_ gamma", lambda: MDP.with_(gamma=-1.0), ValueError, "gamma"),
    # ---- variance
    ("psi name", lambda: gradient_samples(MDP, TH, "reward_to_goo", 2, 2), ValueError, "psi"),
    ("psi type", lambda: gradient_samples(MDP, TH, 3, 2, 2), TypeError, "psi"),
    ("batch_size 0", lambda: gradient_samples(MDP, TH, "reward_to_go", 0, 2), ValueError, "batch_size"),
    ("batch_size float", lambda: gradient_samples(MDP, TH, "reward_to_go", 2.5, 2), TypeError, "batch_size"),
    ("batch_size bool", lambda: gradient_samples(MDP, TH, "reward_to_go", True, 2), TypeError, "batch_size"),
    ("n_batches 0", lambda: gradient_samples(MDP, TH, "reward_to_go", 2, 0), ValueError, "n_batches"),
    ("mdp type", lambda: gradient_samples("coin_flips", TH, "reward_to_go", 2, 2), TypeError, "mdp"),
    ("gs logits shape", lambda: gradient_samples(MDP, torch.zeros(3, 2), "reward_to_go", 2, 2), ValueError, "logits"),
    ("baseline missing", lambda: gradient_samples(MDP, TH, "reward_to_go_minus_baseline", 2, 2), ValueError, "baseline"),
    ("both baselines", lambda: gradient_samples(MDP, TH, "reward_to_go_minus_baseline", 2, 2, baseline=0.0,
                                                action_baseline=TH), ValueError, "baseline"),
    ("action_baseline shape", lambda: gradient_samples(MDP, TH, "reward_to_go_minus_baseline", 2, 2,
                                                       action_baseline=torch.zeros(3)), ValueError, "action_baseline"),
    ("baseline table shape", lambda: gradient_samples(MDP, TH, "reward_to_go_minus_baseline", 2, 2,
                                                      baseline=torch.zeros(5)), ValueError, "baseline"),
    ("callable psi shape", lambda: gradient_samples(MDP, TH, lambda ep, m, th: torch.zeros(3), 2, 2), ValueError, "psi"),
    ("callable psi not tensor", lambda: gradient_samples(MDP, TH, lambda ep, m, th: 1.0, 2, 2), TypeError, "psi"),
    ("callable baseline nan", lambda: gradient_samples(MDP, TH, "reward_to_go_minus_baseline", 2, 2,
                                                       baseline=lambda ep: torch.full(ep.rewards.shape, NAN)),
     ValueError, "baseline"),
    ("summarize one batch", lambda: summarize(torch.zeros(1, 2, 2), torch.zeros(2, 2)), ValueError, "samples"),
    # ---- device
    ("generator seed", lambda: generator("1"), TypeError, "seed"),
    ("seed_everything float", lambda: seed_everything(1.5), TypeError, "seed"),
]


@pytest.mark.parametrize("call,exc,argname", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_names_the_argument(call, exc, argname):
    with pytest.raises(exc, match=rf"\b{argname}\b"):
        call()


def test_good_input_variants_are_accepted():
    # The same numbers as numpy arrays, 0/1 integer flags, a 0-d tensor γ and numpy scalars all work.
    r = np.ones((2, 3))
    assert ret.reward_to_go(r, np.float32(0.5), np.zeros((2, 3), dtype=np.int64)).shape == (2, 3)
    assert ret.reward_to_go(torch.ones(3), torch.tensor(1.0)).tolist() == [3.0, 2.0, 1.0]
    assert gradient_samples(MDP, TH, "reward_to_go", np.int64(2), 3).shape == (3, 2, 2)
    TabularMDP(P_OK.numpy(), R_OK.tolist(), [0.5, 0.5], gamma=np.float64(0.9), horizon=np.int32(3))
