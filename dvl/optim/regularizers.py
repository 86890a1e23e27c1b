"""Weight penalties on a params pytree: L2, L1 and elastic net.

``l2_penalty`` is ``sum(w**2) / 2`` (TF's ``tf.nn.l2_loss``), so adding
``l2 * l2_penalty`` to the loss adds ``l2 * w`` to the gradient, as the
EfficientNet reference's ``weight_decay * sum(l2_loss(w))`` (Tan & Le 2019).
Elastic net (Zou & Hastie 2005) is ``l1 * sum(|w|) + l2 * sum(w**2) / 2``.

Exclusion rule (``exclude_bn_and_bias``): only leaves named ``kernel`` with at
least two dimensions are penalised. In Flax that keeps every Conv and Dense
kernel (depthwise ones included) and leaves out BatchNorm / LayerNorm
``scale`` and ``bias`` and every Conv / Dense ``bias``, whatever the module is
called.
"""

from typing import Any, Optional

import jax
import jax.numpy as jnp

from dvl.optim.param_groups import map_with_names


def decay_mask(params: Any, exclude_bn_and_bias: bool = True) -> Any:
  """Bool pytree: True for the leaves that penalties and weight decay touch."""
  def keep(name: str, leaf) -> bool:
    if not exclude_bn_and_bias:
      return True
    return name.split('/')[-1] == 'kernel' and jnp.ndim(leaf) >= 2
  return map_with_names(keep, params)


def _masked_sum(fn, params: Any, mask: Optional[Any]) -> jax.Array:
  leaves = jax.tree.leaves(params)
  keep = [True] * len(leaves) if mask is None else jax.tree.leaves(mask)
  if len(keep) != len(leaves):
    raise ValueError(f'mask has {len(keep)} leaves but params have '
                     f'{len(leaves)}; build it with decay_mask(params)')
  terms = [jnp.sum(fn(jnp.asarray(x, jnp.float32)))
           for x, k in zip(leaves, keep) if k]
  return sum(terms, jnp.zeros((), jnp.float32))


def l2_penalty(params: Any, mask: Optional[Any] = None) -> jax.Array:
  """``sum(w**2) / 2`` over the leaves where ``mask`` is True (all if None)."""
  return 0.5 * _masked_sum(jnp.square, params, mask)


def l1_penalty(params: Any, mask: Optional[Any] = None) -> jax.Array:
  """``sum(|w|)`` over the leaves where ``mask`` is True (all if None)."""
  return _masked_sum(jnp.abs, params, mask)


def elastic_net_penalty(params: Any, *, l1: float, l2: float,
                        exclude_bn_and_bias: bool = True) -> jax.Array:
  """``l1 * sum(|w|) + l2 * sum(w**2) / 2`` (Zou & Hastie 2005)."""
  if l1 < 0 or l2 < 0:
    raise ValueError(f'penalty coefficients must be non-negative, got '
                     f'l1={l1}, l2={l2}')
  mask = decay_mask(params, exclude_bn_and_bias)
  total = jnp.zeros((), jnp.float32)
  if l1:
    total = total + l1 * l1_penalty(params, mask)
  if l2:
    total = total + l2 * l2_penalty(params, mask)
  return total


def regularization(params: Any, optim_cfg) -> jax.Array:
  """The penalty ``config.optim`` asks for, to add to the training loss.

  Uses ``optim_cfg.l1``, ``optim_cfg.l2`` and ``optim_cfg.exclude_bn_and_bias``;
  0 when both coefficients are 0. Decoupled ``weight_decay`` is not here: the
  optimizer applies it.
  """
  return elastic_net_penalty(params, l1=optim_cfg.l1, l2=optim_cfg.l2,
                             exclude_bn_and_bias=optim_cfg.exclude_bn_and_bias)
