"""pgcourse: the helper package of an interactive course on policy-gradient reinforcement learning.

Floors (imports only go downward):
1. the math: ``returns``, ``mdp``, ``policies``, ``device``, ``validate``;
2. the methods: ``estimators``, ``baselines``, ``variance``, ``rollout``, ``train``, ``ppo``, ``grpo``;
3. the classroom: ``plots``, ``widgets``, ``grading``, ``student``, ``figures``, ``bench`` and the CLI.
"""
from .device import device, generator, seed_everything

__all__ = ["device", "generator", "seed_everything"]
__version__ = "0.1.0"
