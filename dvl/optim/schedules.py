"""Learning-rate schedules: warm-up, cosine, step, exponential, range test.

Conventions (those of the TF EfficientNet reference, Tan & Le 2019):

* Linear warm-up overrides the first ``w`` steps: ``lr(t) = base * t / w``
  for ``t < w`` (so the first update uses lr 0), then the decay takes over.
* 'step' and 'exponential' count from step 0, not from the end of warm-up:
  the reference's ``0.97 every 2.4 epochs`` is staircase on the global step,
  so after 5 warm-up epochs the rate is already ``base * 0.97**2``.
* 'cosine' anneals from ``base`` at the end of warm-up to ``min_lr`` at
  ``total_steps`` (Loshchilov & Hutter 2017, "SGDR"; Goyal et al. 2017
  warm-up), so it is continuous where warm-up ends.
* ``min_lr`` floors 'step' and 'exponential' and is the end of 'cosine'.
"""

import math
from typing import Callable

import jax.numpy as jnp

Schedule = Callable[[jnp.ndarray], jnp.ndarray]


def lr_range_schedule(min_lr: float, max_lr: float, num_steps: int) -> Schedule:
  """Exponential ramp from ``min_lr`` (step 0) to ``max_lr`` (step N - 1).

  The learning-rate range test of Smith 2017 ("Cyclical learning rates for
  training neural networks", Sec. 3.3) grows the rate during a short run and
  records the loss; the exponential ramp gives every decade the same number
  of steps. Steps past ``num_steps - 1`` stay at ``max_lr``.
  """
  if not 0 < min_lr < max_lr:
    raise ValueError(f'the range test needs 0 < min_lr < max_lr, got '
                     f'min_lr={min_lr}, max_lr={max_lr}')
  if num_steps < 2:
    raise ValueError(f'the range test needs at least 2 steps, got {num_steps}')
  log_ratio = math.log(max_lr / min_lr)

  def schedule(step):
    fraction = jnp.clip(jnp.asarray(step, jnp.float32) / (num_steps - 1), 0, 1)
    return min_lr * jnp.exp(log_ratio * fraction)
  return schedule


def warmup_steps_of(cfg, steps_per_epoch: int) -> int:
  """Warm-up length in steps, from ``warmup_steps`` or ``warmup_epochs``."""
  if cfg.warmup_steps:
    return int(cfg.warmup_steps)
  return int(round(cfg.warmup_epochs * steps_per_epoch))


def _constant(cfg, base_lr, steps_per_epoch, total_steps, warmup):
  del cfg, steps_per_epoch, total_steps, warmup
  return lambda t: jnp.full_like(t, base_lr)


def _cosine(cfg, base_lr, steps_per_epoch, total_steps, warmup):
  del steps_per_epoch
  span = max(total_steps - warmup, 1)
  min_lr = cfg.min_lr

  def schedule(t):
    fraction = jnp.clip((t - warmup) / span, 0.0, 1.0)
    cosine = 0.5 * (1.0 + jnp.cos(jnp.pi * fraction))
    return min_lr + (base_lr - min_lr) * cosine
  return schedule


def _exponential(cfg, base_lr, steps_per_epoch, total_steps, warmup):
  del total_steps, warmup
  period = cfg.decay_epochs * steps_per_epoch
  rate, min_lr = cfg.decay_rate, cfg.min_lr

  def schedule(t):
    return jnp.maximum(base_lr * rate ** jnp.floor(t / period), min_lr)
  return schedule


def _step(cfg, base_lr, steps_per_epoch, total_steps, warmup):
  del total_steps, warmup
  bounds = jnp.asarray([round(b * steps_per_epoch) for b in cfg.boundaries],
                       jnp.float32).reshape(-1)
  rate, min_lr = cfg.decay_rate, cfg.min_lr

  def schedule(t):
    passed = jnp.sum(t[..., None] >= bounds, axis=-1)
    return jnp.maximum(base_lr * rate ** passed, min_lr)
  return schedule


def _lr_range(cfg, base_lr, steps_per_epoch, total_steps, warmup):
  del steps_per_epoch, warmup
  return lr_range_schedule(cfg.min_lr, base_lr, total_steps)


_DECAYS = {
    'constant': _constant,
    'cosine': _cosine,
    'exponential': _exponential,
    'step': _step,
    'lr_range': _lr_range,
}


def make_schedule(cfg, *, base_lr: float, steps_per_epoch: int,
                  total_steps: int) -> Schedule:
  """The schedule named by ``cfg.schedule`` with its warm-up, as ``t -> lr``.

  ``base_lr`` is the peak rate (already scaled by batch size if asked).
  Expects a validated config (see ``validate_optim_config``).
  """
  if cfg.schedule not in _DECAYS:
    raise ValueError(f"unknown schedule '{cfg.schedule}'; choose one of: "
                     f"{', '.join(_DECAYS)}")
  warmup = warmup_steps_of(cfg, steps_per_epoch)
  decay = _DECAYS[cfg.schedule](cfg, base_lr, steps_per_epoch, total_steps,
                                warmup)

  def schedule(step):
    t = jnp.asarray(step, jnp.float32)
    if warmup == 0:
      return decay(t)
    return jnp.where(t < warmup, base_lr * t / warmup, decay(t))
  return schedule
