"""Data parallelism with ``jax.sharding``: one mesh axis, ``'data'``.

The batch is split along its first axis over every device of the mesh; the
train state is replicated. ``jit`` then runs one SPMD program: gradients,
the loss and BatchNorm's batch statistics are reduced over the global batch
by the collectives XLA inserts, so N devices compute what one device would
on the same global batch (``tests/test_train_parallel.py`` checks it).

Several hosts: each process runs the same command; ``initialize_distributed``
connects them, every process builds the same global batch from the same seed
and hands its own rows to ``jax.make_array_from_process_local_data``.
"""

import functools
import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from dvl.train import steps

DATA_AXIS = 'data'


def initialize_distributed(mode: str) -> bool:
  """Connects the processes of a multi-host run; returns whether it did.

  ``mode`` is ``config.train.distributed`` (see ``default_train_config``).
  """
  address = os.environ.get('JAX_COORDINATOR_ADDRESS')
  if mode == 'off' or (mode == 'auto' and not address):
    return False
  if jax.distributed.is_initialized():
    return True
  kwargs = {}
  if address and 'JAX_NUM_PROCESSES' in os.environ:
    kwargs = dict(coordinator_address=address,
                  num_processes=int(os.environ['JAX_NUM_PROCESSES']),
                  process_id=int(os.environ['JAX_PROCESS_ID']))
  jax.distributed.initialize(**kwargs)
  return True


def make_mesh(devices=None) -> Mesh:
  """A one-axis mesh over ``devices`` (default: every device of every host)."""
  devices = jax.devices() if devices is None else list(devices)
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def check_batch_size(batch_size: int, mesh: Mesh, field: str) -> None:
  """Raises unless ``batch_size`` splits evenly over the mesh."""
  if batch_size % mesh.size:
    raise ValueError(
        f'config.input.{field} = {batch_size} does not split over '
        f'{mesh.size} devices; make it a multiple of {mesh.size}')


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def replicate(tree, mesh: Mesh):
  """Places a pytree (the train state) on every device of the mesh."""
  return jax.device_put(tree, replicated(mesh))


def put_batch(batch: dict, mesh: Mesh) -> dict:
  """A global host batch as arrays sharded over the ``'data'`` axis."""
  sharding = batch_sharded(mesh)
  if jax.process_count() == 1:
    return jax.device_put(batch, sharding)
  rows = len(next(iter(batch.values())))
  per_process = rows // jax.process_count()
  start = jax.process_index() * per_process
  return {k: jax.make_array_from_process_local_data(
      sharding, v[start:start + per_process], (rows, *v.shape[1:]))
          for k, v in batch.items()}


def compile_steps(mesh: Mesh, *, model, tx, schedule, hparams):
  """``(train_step, eval_step)`` jitted over ``mesh``, the state donated."""
  state_sharding, data = replicated(mesh), batch_sharded(mesh)
  train = jax.jit(
      functools.partial(steps.train_step, model=model, tx=tx,
                        schedule=schedule, hparams=hparams),
      in_shardings=(state_sharding, data),
      out_shardings=(state_sharding, state_sharding), donate_argnums=0)
  evaluate = jax.jit(
      functools.partial(steps.eval_step, model=model, hparams=hparams),
      in_shardings=(state_sharding, data), out_shardings=state_sharding)
  return train, evaluate
