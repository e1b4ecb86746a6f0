"""Notebook 03 (baselines): its MDPs and measurements (:mod:`.experiments`), its CartPole seed comparison
(:mod:`.cartpole`) and its figures (:mod:`.plots`), one name space: ``from pgcourse.lessons import nb03 as lesson``."""
from .cartpole import *  # noqa: F401,F403
from .experiments import *  # noqa: F401,F403
from .experiments import __doc__ as _experiments_doc
from .plots import *  # noqa: F401,F403
from .plots import FIGURES  # noqa: F401

__doc__ = (__doc__ or "") + "\n\n" + (_experiments_doc or "")
