"""Transfer learning: start from another run's weights (``train.init_from``).

The source is a training run or an import_weights run (imported weights,
``imported.json``); the latter's input preprocessing can follow it
(``train.preprocessing = 'from_init'``).

The source run's ``config.json`` (its resolved config) rebuilds the template
of its train state, so its newest good checkpoint is restored through
``dvl.checkpoint`` with every check that implies (checksums, a corrupt step
falls back to the previous one). Its EMA weights are used when it kept them,
since those are the ones it evaluated.

Every parameter and BatchNorm statistic of the new model is then copied from
the source, except those matching ``train.reinit`` (the classifier head by
default), which keep their fresh initialisation and may change shape, e.g.
for another number of classes. A leaf that is missing from the source or
has another shape is an error naming it.
"""

import json
import re
from pathlib import Path
from typing import Callable

import jax
import ml_collections
from flax import traverse_util

from dvl import errors
from dvl.checkpoint import Checkpointer
from dvl.convert import imported, preprocess
from dvl.models import scan


def source_config(workdir: str | Path) -> ml_collections.ConfigDict:
  """The resolved config that the run in ``workdir`` wrote."""
  path = Path(workdir).expanduser() / 'config.json'
  if not path.is_file():
    raise FileNotFoundError(
        f'train.init_from = {workdir!r}: no {path}. Point it at the work '
        'directory of a finished dvl training run.')
  return ml_collections.ConfigDict(errors.load_json(
      path, 'It is the resolved config of the run that wrote the workdir: '
      'restore it from a copy, or train that run again in a new workdir; its '
      'checkpoints are untouched.'))


def is_import(workdir: str | Path) -> bool:
  """Whether ``workdir`` holds imported weights (an import_weights run)."""
  return (Path(workdir).expanduser() / imported.INFO_FILE).is_file()


def preprocessing_spec(workdir: str | Path) -> dict:
  """The input preprocessing spec of the imported weights in ``workdir``."""
  if not is_import(workdir):
    raise FileNotFoundError(
        f"train.preprocessing = 'from_init' but {workdir} holds no "
        f'{imported.INFO_FILE}: point train.init_from at an import_weights '
        "workdir, or name a preset ('tf', 'caffe', 'torch')")
  info = errors.load_json(Path(workdir).expanduser() / imported.INFO_FILE,
                          'Run the import_weights job again in a new workdir.')
  return preprocess.spec(info['preprocessing'])


def load_source_variables(workdir: str | Path, step: int | None,
                          template_fn: Callable) -> tuple[dict, int]:
  """``({'params', 'batch_stats'}, step)`` of the run in ``workdir``: a
  training run, or an import_weights run (step 0).

  ``template_fn(config)`` builds the abstract train state of a resolved
  config; it is given the source's.
  """
  workdir = Path(workdir).expanduser().resolve()  # orbax needs it absolute
  if is_import(workdir):
    source = imported.load(workdir)
    return {'params': source.variables['params'],
            'batch_stats': source.variables.get('batch_stats', {})}, 0
  template = template_fn(source_config(workdir))
  checkpointer = Checkpointer(workdir, keep=None, every_steps=0)
  try:
    if not checkpointer.all_steps():
      raise FileNotFoundError(
          f'train.init_from = {workdir!r} has no checkpoint in '
          f'{checkpointer.directory}')
    restored = checkpointer.restore(template, step=step)
  finally:
    checkpointer.close()
  return restored.state.eval_variables(), restored.step


def merge_pretrained(fresh: dict, source: dict, reinit: str
                     ) -> tuple[dict, list[str]]:
  """``fresh`` with every leaf not matching ``reinit`` taken from ``source``.

  Works on ``{'params': ..., 'batch_stats': ...}``; returns the merged
  variables and the names of the leaves left freshly initialised.
  """
  pattern = re.compile(reinit) if reinit else None
  source = scan.relayout(source, fresh)  # stages scanned as ``fresh`` has them
  merged, kept_fresh = {}, []
  for collection, tree in fresh.items():
    flat = traverse_util.flatten_dict(tree, sep='/')
    loaded = traverse_util.flatten_dict(source.get(collection, {}), sep='/')
    out = {}
    for name, value in flat.items():
      if pattern is not None and pattern.fullmatch(name):
        out[name] = value
        kept_fresh.append(f'{collection}/{name}')
        continue
      out[name] = _source_leaf(collection, name, value, loaded)
    merged[collection] = traverse_util.unflatten_dict(out, sep='/')
  return merged, kept_fresh


def _source_leaf(collection: str, name: str, value, loaded: dict):
  hint = ('train.reinit names the leaves to initialise afresh instead '
          '(a regular expression on the path)')
  if name not in loaded:
    raise ValueError(f'train.init_from: the source run has no {collection} '
                     f"leaf '{name}'; is it the same model? {hint}")
  source = loaded[name]
  if source.shape != value.shape:
    raise ValueError(
        f"train.init_from: {collection} leaf '{name}' has shape "
        f'{tuple(value.shape)} here but {tuple(source.shape)} in the source '
        f'run; {hint}')
  return jax.numpy.asarray(source, value.dtype)
