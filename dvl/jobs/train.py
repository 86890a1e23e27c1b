"""The ``train`` job: one model on one dataset (``dvl.train``)."""

from dvl.train import run  # noqa: F401
