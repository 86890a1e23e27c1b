"""Imported weights on disk: a dvl checkpoint plus what rebuilds the model.

Layout of the work directory::

    workdir/imported.json                     model name, fields, source,
                                              preprocessing spec, resolution
    workdir/checkpoints/0/state/...           {'params', 'batch_stats'}
    workdir/checkpoints/0/meta/...            (``dvl.checkpoint``; the same
                                              JSON as its user metadata)

``load(workdir)`` rebuilds the model from ``imported.json`` and restores the
variables through ``dvl.checkpoint.Checkpointer`` with all its checks.
"""

import dataclasses
import json
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp

from dvl import errors, models
from dvl.checkpoint import Checkpointer

INFO_FILE = 'imported.json'
STEP = 0


@dataclasses.dataclass
class Imported:
  """A dvl model with imported variables.

  Attributes:
    model: the dvl module, built as ``build_model(info['model'],
      **info['fields'])``.
    variables: ``{'params': ..., 'batch_stats': ...}`` (no ``batch_stats``
      for models without BatchNorm).
    info: the JSON metadata: ``model``, ``fields``, ``source``,
      ``preprocessing`` (a ``dvl.convert.preprocess`` spec), ``resolution``.
  """
  model: nn.Module
  variables: dict
  info: dict


def save(workdir: str | Path, result: Imported) -> None:
  """Writes ``result`` into a fresh ``workdir``; refuses to overwrite."""
  workdir = Path(workdir).expanduser()
  if (workdir / INFO_FILE).exists() or any(
      (workdir / 'checkpoints').glob('*')):
    raise FileExistsError(f'{workdir} already holds imported weights or a '
                          'checkpoint; choose a new --workdir')
  with Checkpointer(workdir, keep=None, every_steps=0) as checkpointer:
    checkpointer.save(STEP, result.variables, metadata=result.info,
                      force=True)
  (workdir / INFO_FILE).write_text(json.dumps(result.info, indent=2) + '\n')


def load(workdir: str | Path) -> Imported:
  """The model, variables and metadata that ``save`` wrote in ``workdir``."""
  workdir = Path(workdir).expanduser()
  path = workdir / INFO_FILE
  if not path.is_file():
    raise FileNotFoundError(f'no {INFO_FILE} in {workdir}; is it the workdir '
                            'of an import_weights run?')
  info = errors.load_json(path, 'Run the import_weights job again in a new '
                          'workdir.')
  model = models.build_model(info['model'], **info['fields'])
  side = info['resolution']
  template = jax.eval_shape(lambda: model.init(
      jax.random.key(0), jnp.zeros((1, side, side, 3)), train=False))
  with Checkpointer(workdir, keep=None, every_steps=0) as checkpointer:
    restored = checkpointer.restore(dict(template), step=STEP)
  return Imported(model, restored.state, info)
