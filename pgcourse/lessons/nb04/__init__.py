"""Notebook 04 (value functions and advantage): its MDP and measurements (:mod:`.experiments`), the
statistics behind its claims (:mod:`.evidence`), GAE on a gymnasium rollout (:mod:`.gym_lake`) and its
figures (:mod:`.plots`), one name space: ``from pgcourse.lessons import nb04 as lesson``."""
from .evidence import *  # noqa: F401,F403
from .experiments import *  # noqa: F401,F403
from .experiments import __doc__ as _experiments_doc
from .gym_lake import *  # noqa: F401,F403
from .plots import *  # noqa: F401,F403
from .plots import FIGURES  # noqa: F401

__doc__ = (__doc__ or "") + "\n\n" + (_experiments_doc or "")
