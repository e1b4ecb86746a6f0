r"""Notebook 07 (GRPO: what goes wrong, measured): the experiments behind its claims, and its figures.

One module per failure mode: :mod:`.length` (length bias and the loss normalizations),
:mod:`.format_bonus` (the format-bonus collapse), :mod:`.kl_direction` (which KL each KL treatment
follows), :mod:`.sampling` (zero-variance groups, dynamic sampling, entropy and pass@k) and
:mod:`.hacking` (a verifier with a loophole); :mod:`.runs` holds the task, the starting policy and the
small training budget they share, :mod:`.plots` the figures. Every function is seeded and
deterministic on the CPU. ``python -m pgcourse figures`` writes the ``FIGURES`` below.
"""
from . import format_bonus, hacking, kl_direction, length, plots, runs, sampling
from .kl_direction import kl_direction_figure
from .plots import bonus_figure, hacking_figure, length_figure, zero_variance_figure
from .sampling import sharpening_figure

FIGURES = {"07_length_bias.png": length_figure, "07_format_bonus.png": bonus_figure,
           "07_kl_direction.png": kl_direction_figure, "07_zero_variance.png": zero_variance_figure,
           "07_pass_at_k.png": sharpening_figure, "07_reward_hacking.png": hacking_figure}

__all__ = ["FIGURES", "format_bonus", "hacking", "kl_direction", "length", "plots", "runs", "sampling"]
