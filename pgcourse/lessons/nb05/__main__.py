"""``python -m pgcourse.lessons.nb05``: rerun notebook 05's equal tuning sweep and rewrite :mod:`.lr_sweep` (minutes)."""
from .cartpole import lr_sweep, write_sweep

if __name__ == "__main__":
    write_sweep(lr_sweep(verbose=True))
