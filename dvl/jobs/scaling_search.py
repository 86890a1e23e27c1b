"""The ``scaling_search`` job: the compound-scaling search
(``dvl.sweep.search``): the φ = 1 grid, the scale-up and the report."""

from dvl.sweep.search import run  # noqa: F401
