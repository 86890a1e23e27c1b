"""The ``scaling_report`` job: a sweep workdir's report and plots, written
from its results so far (``dvl.sweep.report``)."""

from dvl.sweep.report import write


def run(config, workdir: str) -> str:
  del config  # everything is in the workdir
  return write(workdir)
