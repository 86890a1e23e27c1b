"""The ``import_weights`` job: a weight file of another framework into a dvl
checkpoint (``dvl.convert``; ``config.source`` picks the importer)."""

import importlib

from dvl.convert import SOURCES


def run(config, workdir: str):
  """Runs the importer of ``config.source``."""
  if config.source not in SOURCES:
    raise ValueError(f'unknown weight source {config.source!r}; choose one '
                     f'of: {", ".join(SOURCES)}')
  return importlib.import_module(SOURCES[config.source]).run(config, workdir)
