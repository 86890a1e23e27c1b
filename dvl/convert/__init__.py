"""Importing pretrained weights from other frameworks into dvl models.

The ``import_weights`` job (``experiments/import_weights.py``) converts a
weight file into a dvl checkpoint whose metadata rebuilds the model and
names its input preprocessing.

- ``keras.py``: the Keras importer (``convert``, the job's ``run``);
  ``keras_files.py`` reads the three Keras file formats,
  ``keras_layouts.py`` maps Keras layer names onto dvl module names.
- ``preprocess.py``: preprocessing specs and ``apply(spec, images)``.
- ``imported.py``: the work-directory layout, ``save`` and ``load``.
"""

import importlib

SOURCES = {'keras': 'dvl.convert.keras'}


def run(config, workdir: str):
  """Runs the import job of ``config.source``."""
  if config.source not in SOURCES:
    raise ValueError(f'unknown weight source {config.source!r}; choose one '
                     f'of: {", ".join(SOURCES)}')
  return importlib.import_module(SOURCES[config.source]).run(config, workdir)
