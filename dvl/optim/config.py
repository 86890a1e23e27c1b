"""The ``config.optim`` section: every field, its default, and its checks."""

import re

import ml_collections

from dvl import errors

OPTIMIZERS = ('sgd', 'momentum', 'nesterov', 'adam', 'adamw', 'rmsprop')
SCHEDULES = ('constant', 'cosine', 'exponential', 'step', 'lr_range')

# Goyal et al. 2017, "Accurate, large minibatch SGD": lr = base * batch / 256.
REFERENCE_BATCH_SIZE = 256


def default_optim_config() -> ml_collections.ConfigDict:
  """Every ``config.optim`` field with its default; the dict is locked.

  Fields:
    optimizer: one of ``OPTIMIZERS``. 'sgd' is plain gradient descent (it
      ignores ``momentum``); 'momentum' is heavy-ball SGD, Nesterov's when
      ``nesterov``; 'nesterov' forces Nesterov; 'adam' (no decoupled decay)
      and 'adamw' (Loshchilov & Hutter 2019); 'rmsprop' is the TF variant of
      the EfficientNet reference (Tan & Le 2019), see ``make_optimizer``.
    learning_rate: peak learning rate, after warm-up.
    lr_scale_by_batch: multiply ``learning_rate`` by ``batch_size / 256``.
    momentum, nesterov: for 'momentum', 'nesterov' and 'rmsprop'.
    b1, b2, eps: Adam's moment decays and epsilon (outside the square root).
    rms_decay, rms_eps, rms_initial_scale: RMSProp's mean-square decay, the
      epsilon added *inside* the square root, and the accumulator's initial
      value (1.0 as TF1's ``RMSPropOptimizer``).
    weight_decay: decoupled weight decay, ``p -= lr_t * weight_decay * p``
      (Loshchilov & Hutter 2019); 0 is off.
    l2, l1: coefficients of the penalty that ``regularization`` adds to the
      loss: ``l2 * sum(w**2) / 2 + l1 * sum(|w|)`` (elastic net when both).
    exclude_bn_and_bias: the penalty and the decoupled decay apply only to
      leaves named ``kernel`` with at least two dimensions, which leaves out
      BatchNorm scales and offsets and every bias.
    schedule: one of ``SCHEDULES``; see ``make_schedule``.
    warmup_epochs, warmup_steps: linear warm-up from 0, in epochs or in steps
      (set at most one).
    decay_epochs: period of the 'exponential' schedule (2.4 in the reference).
    decay_rate: factor applied every ``decay_epochs`` ('exponential', 0.97 in
      the reference) or at each boundary ('step', typically 0.1).
    boundaries: epochs at which 'step' multiplies the rate by ``decay_rate``.
    min_lr: floor of the decaying schedules and end value of 'cosine'; start
      value of 'lr_range'. Not scaled by ``lr_scale_by_batch``.
    grad_clip_norm: clip gradients to this global norm; 0 is off.
    ema_decay: decay of the weight EMA used for evaluation; 0 is off.
    ema_warmup: use ``min(ema_decay, (1 + t) / (10 + t))`` at update t.
    freeze: regular expression; parameters whose '/'-joined path matches it
      (``re.fullmatch``) are not updated. '' freezes nothing.
    lr_multipliers: list of ``(regex, multiplier)``; the first regex that
      fully matches a path scales that parameter's update. Unmatched: 1.
  """
  return ml_collections.ConfigDict(dict(
      optimizer='momentum',
      learning_rate=0.1,
      lr_scale_by_batch=False,
      momentum=0.9,
      nesterov=False,
      b1=0.9,
      b2=0.999,
      eps=1e-8,
      rms_decay=0.9,
      rms_eps=1e-3,
      rms_initial_scale=1.0,
      weight_decay=0.0,
      l2=0.0,
      l1=0.0,
      exclude_bn_and_bias=True,
      schedule='cosine',
      warmup_epochs=0.0,
      warmup_steps=0,
      decay_epochs=2.4,
      decay_rate=0.97,
      boundaries=[],
      min_lr=0.0,
      grad_clip_norm=0.0,
      ema_decay=0.0,
      ema_warmup=False,
      freeze='',
      lr_multipliers=[],
  ), type_safe=True).lock()


def _check_choice(kind: str, name: str, valid) -> None:
  errors.require(name in valid,
                 f"unknown {kind} '{name}'; choose one of: {', '.join(valid)}")


def compile_regex(pattern: str, field: str) -> re.Pattern:
  """``re.compile`` with an error that names the config field."""
  try:
    return re.compile(pattern)
  except re.error as err:
    raise ValueError(f'optim.{field}: invalid regular expression '
                     f'{pattern!r}: {err}') from None


def _check_ranges(cfg) -> None:
  errors.require(cfg.learning_rate > 0,
                 'optim.learning_rate must be positive, got '
                 f'{cfg.learning_rate}')
  for field in ('momentum', 'b1', 'b2', 'rms_decay', 'ema_decay'):
    value = cfg[field]
    errors.require(0.0 <= value < 1.0,
                   f'optim.{field} must be in [0, 1), got {value}')
  for field in ('eps', 'rms_eps'):
    errors.require(cfg[field] > 0,
                   f'optim.{field} must be positive, got {cfg[field]}')
  for field in ('rms_initial_scale', 'weight_decay', 'l2', 'l1', 'min_lr',
                'grad_clip_norm', 'warmup_epochs', 'warmup_steps'):
    errors.require(cfg[field] >= 0,
                   f'optim.{field} must be non-negative, got {cfg[field]}')
  errors.require(not (cfg.warmup_epochs > 0 and cfg.warmup_steps > 0),
                 'set optim.warmup_epochs or optim.warmup_steps, not both')
  errors.require(cfg.optimizer != 'adam' or cfg.weight_decay == 0,
                 "optimizer 'adam' takes no decoupled weight_decay; use "
                 "'adamw' for decoupled decay or optim.l2 for an L2 penalty")


def _check_schedule_fields(cfg) -> None:
  if cfg.schedule == 'exponential':
    errors.require(cfg.decay_epochs > 0,
                   'optim.decay_epochs must be positive, got '
                   f'{cfg.decay_epochs}')
  if cfg.schedule in ('exponential', 'step'):
    errors.require(0 < cfg.decay_rate <= 1,
                   f'optim.decay_rate must be in (0, 1], got {cfg.decay_rate}')
  if cfg.schedule == 'step':
    bounds = list(cfg.boundaries)
    errors.require(all(b > 0 for b in bounds) and bounds == sorted(bounds),
                   f'optim.boundaries must be increasing positive epochs, '
                   f'got {bounds}')
  if cfg.schedule == 'lr_range':
    errors.require(0 < cfg.min_lr,
                   'optim.min_lr is where the lr_range schedule starts; it '
                   f'must be positive, got {cfg.min_lr}')
    errors.require(cfg.warmup_epochs == 0 and cfg.warmup_steps == 0,
                   'the lr_range schedule takes no warm-up')


def _check_groups(cfg) -> None:
  compile_regex(cfg.freeze, 'freeze')
  for rule in cfg.lr_multipliers:
    errors.require(len(rule) == 2,
                   f'optim.lr_multipliers entries are (regex, multiplier), '
                   f'got {rule!r}')
    pattern, multiplier = rule
    compile_regex(pattern, 'lr_multipliers')
    errors.require(multiplier >= 0, f'optim.lr_multipliers: multiplier for '
                   f'{pattern!r} must be non-negative, got {multiplier}')


def validate_optim_config(cfg) -> None:
  """Raises ValueError naming the first invalid field of ``config.optim``."""
  _check_choice('optimizer', cfg.optimizer, OPTIMIZERS)
  _check_choice('schedule', cfg.schedule, SCHEDULES)
  _check_ranges(cfg)
  _check_schedule_fields(cfg)
  _check_groups(cfg)
