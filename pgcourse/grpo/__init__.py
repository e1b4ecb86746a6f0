r"""GRPO: group-relative policy optimization, the policy gradient of language-model post-training.

For each prompt :math:`x` the policy samples a group of G completions :math:`y_1,\dots,y_G`, a
verifier scores them :math:`r_1,\dots,r_G`, and each completion's advantage is its reward measured
against its own group (the group mean is the baseline, the group std a scale):

.. math:: \hat A_i = \frac{r_i - \operatorname{mean}(r_{1..G})}{\operatorname{std}(r_{1..G}) + \epsilon}.

Every token of :math:`y_i` gets :math:`\hat A_i`, with a PPO-style clipped ratio
:math:`\rho_{i,t} = \pi_\theta(y_{i,t}\mid x, y_{i,<t}) / \pi_{\text{old}}(y_{i,t}\mid x, y_{i,<t})`
and a KL penalty to a frozen reference policy (the k3 estimator):

.. math:: \ell_{i,t} = -\min\big(\rho_{i,t}\hat A_i,\ \operatorname{clip}(\rho_{i,t}, 1-\varepsilon, 1+\varepsilon)\hat A_i\big)
          + \beta\,\big(e^{\log\pi_{\text{ref}} - \log\pi_\theta} - (\log\pi_{\text{ref}} - \log\pi_\theta) - 1\big).

The loss averages :math:`\ell_{i,t}` over valid tokens in one of three ways (``loss_type``).

Modules: :mod:`.config` (the hyper-parameters), :mod:`.loss` (the formulas), :mod:`.rollout` (groups, rewards, advantages, dynamic sampling),
:mod:`.step` (a gradient in microbatches), :mod:`.train` (the loop, the evaluation),
:mod:`.pretrain` (the SFT'd starting policy).
"""
from .loss import (LOSS_TYPES, aggregate_tokens, as_mask, group_advantages, grpo_loss, kl_estimators, kl_k1, kl_k2,
                   kl_k3, leave_one_out_baseline, token_weights)
from .config import BASELINES, KL_PENALTIES, GRPOConfig
from .pretrain import make_policy, pretrained_policy
from .rollout import Rollout, advantages_from_rewards, rollout
from .step import microbatch_step
from .train import EVAL_FIELDS, STEP_FIELDS, GRPOHistory, answer_probability, evaluate, lr_schedule, train

__all__ = ["LOSS_TYPES", "BASELINES", "KL_PENALTIES", "EVAL_FIELDS", "STEP_FIELDS", "aggregate_tokens", "as_mask",
           "group_advantages", "grpo_loss", "kl_estimators", "kl_k1", "kl_k2", "kl_k3", "leave_one_out_baseline",
           "token_weights", "make_policy", "pretrained_policy", "Rollout", "advantages_from_rewards", "rollout",
           "microbatch_step", "GRPOConfig", "GRPOHistory", "answer_probability", "evaluate", "lr_schedule", "train"]
