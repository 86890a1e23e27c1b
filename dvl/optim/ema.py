"""Exponential moving average of the weights, evaluated instead of them.

Polyak & Juditsky 1992 averaging in its exponential form, as the EfficientNet
reference (Tan & Le 2019) uses it with decay 0.9999 through TF's
``ExponentialMovingAverage``. The state is a plain pytree (a NamedTuple), so
it sits in the train state and is checkpointed with it; pass any pytree, e.g.
``{'params': ..., 'batch_stats': ...}`` to average BatchNorm statistics too.

With ``warmup`` the decay of update ``t`` (1 for the first) is
``min(decay, (1 + t) / (10 + t))``, TF's ``num_updates`` rule, so the early
average follows the weights instead of remembering the initialisation.
"""

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp


class EmaState(NamedTuple):
  count: jax.Array   # number of updates applied so far, int32 scalar
  params: Any        # the averaged pytree


def ema_init(params: Any, dtype: Optional[jnp.dtype] = None) -> EmaState:
  """Starts the average at ``params`` with a count of 0.

  ``dtype`` stores the average in that dtype (float32 for bfloat16 weights,
  whose 8-bit mantissa cannot resolve a 1e-4 step); None keeps each leaf's.
  """
  cast = jnp.asarray if dtype is None else (lambda x: jnp.asarray(x, dtype))
  return EmaState(count=jnp.zeros((), jnp.int32),
                  params=jax.tree.map(cast, params))


def ema_decay_at(count: jax.Array, decay: float, warmup: bool) -> jax.Array:
  """Decay used by update number ``count`` (1-based)."""
  decay = jnp.asarray(decay, jnp.float32)
  if not warmup:
    return decay
  t = jnp.asarray(count, jnp.float32)
  return jnp.minimum(decay, (1.0 + t) / (10.0 + t))


def ema_update(state: EmaState, params: Any, *, decay: float,
               warmup: bool = False) -> EmaState:
  """``ema = d * ema + (1 - d) * params``, with ``d`` from ``ema_decay_at``.

  ``decay`` comes from ``config.optim.ema_decay`` and ``warmup`` from
  ``config.optim.ema_warmup``; a decay of 0 copies ``params``.
  """
  if isinstance(decay, (int, float)) and not 0.0 <= decay < 1.0:
    raise ValueError(f'EMA decay must be in [0, 1), got {decay}')
  count = state.count + 1
  d = ema_decay_at(count, decay, warmup)

  def average(ema, new):
    mixed = d * ema.astype(jnp.float32) + (1.0 - d) * new.astype(jnp.float32)
    return mixed.astype(ema.dtype)
  return EmaState(count=count,
                  params=jax.tree.map(average, state.params, params))
