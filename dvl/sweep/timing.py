"""A network's measured training cost per image, for ``sweep.match = 'time'``.

The sweep matches a method to the compound row's cost before either trains,
so the time it matches on is measured here, on the device the sweep runs
on: one jitted SGD step (forward, backward and update, BatchNorm statistics
updated, dropout on) of the scaled network at the sweep's batch size and
the trial's input side, on random data, compiled once and called
``repeats`` times after a warm-up; the median call divided by the batch.
A trial's own training records its time per image too
(``train_images_per_s``); this is the same work without the input pipeline,
so the two agree in proportion, not to the microsecond.
"""

import statistics
import time

import jax
import jax.numpy as jnp
import optax

from dvl.train.state import init_variables, model_from_config

REPEATS = 5


def seconds_per_image(model_cfg: dict, side: int, *, channels: int,
                      num_classes: int, batch: int,
                      repeats: int = REPEATS) -> float:
  """Median seconds per image of a train step of ``model_cfg`` at
  ``side``×``side``×``channels`` and batch size ``batch``."""
  if batch < 1 or repeats < 1:
    raise ValueError(f'batch and repeats must be >= 1; got {batch}, '
                     f'{repeats}')
  model = model_from_config(model_cfg, num_classes=num_classes)
  shape = (side, side, channels)
  variables = init_variables(model, shape, jax.random.key(0))
  tx = optax.sgd(1e-3, momentum=0.9)
  images = jax.random.uniform(jax.random.key(1), (batch, *shape))
  labels = jax.random.randint(jax.random.key(2), (batch,), 0, num_classes)

  def loss_fn(params, batch_stats):
    logits, updates = model.apply(
        {'params': params, 'batch_stats': batch_stats}, images, train=True,
        mutable=['batch_stats'], rngs={'dropout': jax.random.key(3)})
    if isinstance(logits, tuple):  # models that also return features
      logits = logits[0]
    loss = optax.softmax_cross_entropy_with_integer_labels(
        logits.astype(jnp.float32), labels).mean()
    return loss, updates.get('batch_stats', {})

  def step(params, batch_stats, opt_state):
    (_, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        params, batch_stats)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), batch_stats, opt_state

  params = variables['params']
  state = (params, variables.get('batch_stats', {}), tx.init(params))
  compiled = jax.jit(step).lower(*state).compile()
  jax.block_until_ready(compiled(*state))  # warm-up
  seconds = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(compiled(*state))
    seconds.append(time.perf_counter() - start)
  return statistics.median(seconds) / batch
