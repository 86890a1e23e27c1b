"""Optimizers built from ``config.optim`` with optax.

Every optimizer is one chain, in this order:

1. ``clip_by_global_norm(grad_clip_norm)`` when it is positive;
2. the direction: identity ('sgd'), heavy-ball or Nesterov momentum
   ('momentum', 'nesterov'), Adam's moments ('adam', 'adamw'), or the
   RMSProp preconditioner ('rmsprop');
3. decoupled weight decay ``+ weight_decay * p`` on the masked leaves
   (Loshchilov & Hutter 2019, "Decoupled weight decay regularization": for
   Adam this is AdamW, for momentum SGD it is their SGDW: the decay does not
   pass through the momentum buffer);
4. ``- lr_t`` from the schedule.

'rmsprop' follows the TF1 ``RMSPropOptimizer`` that the EfficientNet
reference (Tan & Le 2019) trains with::

    ms  = rms_decay * ms + (1 - rms_decay) * g**2      # ms starts at 1.0
    mom = momentum * mom + lr_t * g / sqrt(ms + rms_eps)
    p   = p - mom

i.e. ``optax.scale_by_rms(eps_in_sqrt=True, initial_scale=rms_initial_scale)``
then the learning rate, then ``optax.trace(momentum)``. The learning rate sits
inside the momentum buffer as in TF (so the decoupled decay, added before the
learning rate, is accumulated by the momentum too). ``rms_initial_scale`` is
1.0 because TF1 initialises the mean square with ones; with optax's default 0
the first update would be about ``lr / sqrt(1 - rms_decay)`` ≈ 3.2 lr per
coordinate whatever the gradient's size.

Then, when configured, ``freeze`` wraps the chain in ``optax.multi_transform``
(frozen parameters: zero updates, no state, left out of the clipping norm) and
``lr_multipliers`` scale the final updates per group.

``optimizer.update(grads, state, params)`` needs ``params`` when
``weight_decay`` is positive.
"""

from typing import Tuple

import optax

from dvl.optim import param_groups, regularizers
from dvl.optim.config import (OPTIMIZERS, REFERENCE_BATCH_SIZE,
                              validate_optim_config)
from dvl.optim.schedules import Schedule, make_schedule, warmup_steps_of


def _direction(cfg) -> optax.GradientTransformation:
  """Step 2 of the chain, without the learning rate."""
  if cfg.optimizer == 'sgd':
    return optax.identity()
  if cfg.optimizer in ('momentum', 'nesterov'):
    nesterov = cfg.nesterov or cfg.optimizer == 'nesterov'
    return optax.trace(decay=cfg.momentum, nesterov=nesterov)
  if cfg.optimizer in ('adam', 'adamw'):
    return optax.scale_by_adam(b1=cfg.b1, b2=cfg.b2, eps=cfg.eps)
  if cfg.optimizer == 'rmsprop':
    return optax.scale_by_rms(decay=cfg.rms_decay, eps=cfg.rms_eps,
                              initial_scale=cfg.rms_initial_scale,
                              eps_in_sqrt=True)
  raise ValueError(f"unknown optimizer '{cfg.optimizer}'; choose one of: "
                   f"{', '.join(OPTIMIZERS)}")


def _chain(cfg, schedule: Schedule) -> optax.GradientTransformation:
  parts = []
  if cfg.grad_clip_norm > 0:
    parts.append(optax.clip_by_global_norm(cfg.grad_clip_norm))
  parts.append(_direction(cfg))
  if cfg.weight_decay > 0:
    exclude = cfg.exclude_bn_and_bias
    parts.append(optax.add_decayed_weights(
        cfg.weight_decay,
        mask=lambda params: regularizers.decay_mask(params, exclude)))
  parts.append(optax.scale_by_learning_rate(schedule))
  if cfg.optimizer == 'rmsprop' and cfg.momentum > 0:
    parts.append(optax.trace(decay=cfg.momentum, nesterov=cfg.nesterov))
  return optax.chain(*parts)


def _check_run(cfg, steps_per_epoch: int, total_steps: int,
               batch_size: int) -> None:
  for name, value in (('steps_per_epoch', steps_per_epoch),
                      ('total_steps', total_steps), ('batch_size', batch_size)):
    if int(value) != value or value <= 0:
      raise ValueError(f'{name} must be a positive integer, got {value}')
  warmup = warmup_steps_of(cfg, steps_per_epoch)
  if warmup > total_steps:
    raise ValueError(f'warm-up of {warmup} steps is longer than training '
                     f'({total_steps} steps); shorten optim.warmup_epochs or '
                     f'optim.warmup_steps')


def peak_learning_rate(cfg, batch_size: int) -> float:
  """``learning_rate``, times ``batch_size / 256`` if ``lr_scale_by_batch``."""
  scale = batch_size / REFERENCE_BATCH_SIZE if cfg.lr_scale_by_batch else 1.0
  return cfg.learning_rate * scale


def make_optimizer(optim_cfg, *, steps_per_epoch: int, total_steps: int,
                   batch_size: int
                   ) -> Tuple[optax.GradientTransformation, Schedule]:
  """Builds ``config.optim`` into ``(optax transformation, schedule)``.

  ``schedule(step)`` is the learning rate of the untouched parameter group
  (multiplier 1), for logging. Raises ValueError on an unknown name or an
  invalid value. See the module docstring for the chain.
  """
  cfg = optim_cfg
  validate_optim_config(cfg)
  _check_run(cfg, steps_per_epoch, total_steps, batch_size)
  base_lr = peak_learning_rate(cfg, batch_size)
  if cfg.min_lr > base_lr:
    raise ValueError(f'optim.min_lr ({cfg.min_lr}) is above the peak '
                     f'learning rate ({base_lr})')
  schedule = make_schedule(cfg, base_lr=base_lr,
                           steps_per_epoch=steps_per_epoch,
                           total_steps=total_steps)
  tx = _chain(cfg, schedule)
  if cfg.freeze:
    tx = param_groups.freeze(tx, cfg.freeze)
  if cfg.lr_multipliers:
    tx = optax.chain(tx, param_groups.scale_by_lr_multipliers(
        [tuple(rule) for rule in cfg.lr_multipliers]))
  return tx, schedule
