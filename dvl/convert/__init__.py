"""Importing pretrained weights from other frameworks into dvl models.

The ``import_weights`` job (``experiments/import_weights.py``) converts a
weight file into a dvl checkpoint whose metadata rebuilds the model and
names its input preprocessing.

- ``keras.py``: the Keras importer (``convert``; ``run``, which the
  ``import_weights`` job, ``dvl.jobs.import_weights``, calls);
  ``keras_files.py`` reads the three Keras file formats,
  ``keras_layouts.py`` maps Keras layer names onto dvl module names.
- ``preprocess.py``: preprocessing specs and ``apply(spec, images)``.
- ``imported.py``: the work-directory layout, ``save`` and ``load``.
"""

SOURCES = {'keras': 'dvl.convert.keras'}
