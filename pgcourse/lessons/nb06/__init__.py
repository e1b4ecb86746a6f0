"""Notebook 06 (GRPO): its task, model and measurements, one name space: ``from pgcourse.lessons import nb06 as lesson``.

* :mod:`.model` — the task, the SFT model, the transformer's causal mask, sampling with temperature, group
  advantages, gradient accumulation against the naive recipe;
* :mod:`.kl` — the k1, k2, k3 estimators of a KL on two categoricals;
* :mod:`.runs` — GRPO on the tiny transformer (the clip active over two epochs) and the β sweep;
* :mod:`.plots` — the figures (:data:`FIGURES`).
"""
from .kl import *  # noqa: F401,F403
from .model import *  # noqa: F401,F403
from .plots import FIGURES, beta_figure, training_figure  # noqa: F401
from .runs import *  # noqa: F401,F403
