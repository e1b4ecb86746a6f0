"""One room per lesson: each notebook's own code, in ``pgcourse.lessons.nbNN``.

A lesson module holds what its notebook teaches with: the lesson's MDPs, its experiments (the
measurements behind each claim), and its figure functions, with ``FIGURES = {"NN_name.png": make}``
naming the figures ``python -m pgcourse figures`` writes. A notebook imports its room as
``from pgcourse.lessons import nbNN as lesson``, so the code behind any sentence is one hop away.

Floors: lessons use the math and the methods (and ``plots`` to draw); widgets, figures and
grading use lessons; a lesson never imports widgets or grading.
"""
