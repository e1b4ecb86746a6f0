"""Notebook 05 (PPO): its MDP and measurements, one name space: ``from pgcourse.lessons import nb05 as lesson``.

* :mod:`.stale` — stale samples reused while the policy moves, their three estimates of ∇J against the exact
  gradient, their exact means, the order of the bias in the distance;
* :mod:`.ratios` — trajectory importance ratios: mean 1, variance :math:`(1+\\chi^2)^H - 1`;
* :mod:`.clip` — the debug exercise's buggy clipped surrogate;
* :mod:`.cartpole` — PPO on CartPole: the clip against no clip, PPO against vanilla policy gradient, the equal
  learning-rate sweep;
* :mod:`.plots` — the figures.
"""
from .cartpole import *  # noqa: F401,F403
from .clip import clipped_surrogate_with_a_bug  # noqa: F401
from .plots import *  # noqa: F401,F403
from .plots import FIGURES  # noqa: F401
from .ratios import *  # noqa: F401,F403
from .stale import *  # noqa: F401,F403
