"""The ``config.train`` section: every field, its default, and its checks."""

import re

import ml_collections
from ml_collections.config_dict import placeholder

from dvl import errors


def default_train_config() -> ml_collections.ConfigDict:
  """Every ``config.train`` field with its default; the dict is locked.

  Fields:
    steps: training steps; 0 means ``epochs`` passes over the training split.
    epochs: length in epochs when ``steps`` is 0 (fractions allowed).
    eval_every: evaluate on the ``val`` split every this many steps; 0 is
      once per epoch. The last step is always evaluated, and ``test`` is
      evaluated once, at the end, for reporting.
    eval_flip: evaluate on each image and its mirror and average the logits.
    eval_translate: also evaluate on each image shifted by this many pixels
      up-left and down-right (edges reflected), averaging all the logits.
    checkpoint_every: save every this many steps; 0 is once per epoch.
      The last step and a step stopped by SIGTERM are always saved.
    keep: checkpoints kept on disk (the most recent ones).
    seed: seeds parameter initialisation, dropout and the input pipeline.
    log_every: fetch, write and print training metrics every this many steps;
      also how often the loss is checked for NaN or Inf.
    overfit_batches: k > 0 trains on the first k batches over and over (a
      debugging aid: a healthy model drives their loss to about 0).
    label_smoothing: epsilon of label smoothing (Szegedy et al. 2016).
    mixed_precision: compute in bfloat16 (``config.model.dtype``) with
      float32 parameters, losses and optimizer state.
    init_from: work directory of another run whose newest checkpoint
      initialises the parameters and BatchNorm statistics ('' is off). Its
      EMA weights are taken when it kept them.
    reinit: regular expression of the parameters that ``init_from`` leaves
      freshly initialised (the classifier head by default); the new head may
      have another number of classes.
    freeze: parameter groups that are not trained: comma-separated top-level
      module names (``stem,stage1``) or regular expressions on the
      '/'-joined parameter path. Their BatchNorm statistics are frozen too.
    preprocessing: the input preprocessing of imported weights: '' (none:
      the pipeline's own normalisation), a preset of
      ``dvl.convert.preprocess`` ('tf', 'caffe', 'torch'), or 'from_init'
      (the spec that ``init_from``, an import_weights workdir, was saved
      with). When set, the pipeline delivers [0, 1] images
      (``input.normalize = 'none'``) and the steps apply the spec to them.
    backbone_lr_mult: with ``init_from``, the learning-rate multiplier of
      every parameter that was loaded (``reinit`` ones keep 1).
    distributed: 'auto' calls ``jax.distributed.initialize()`` when
      $JAX_COORDINATOR_ADDRESS is set (with $JAX_NUM_PROCESSES and
      $JAX_PROCESS_ID), 'on' always (cluster auto-detection), 'off' never.
    compilation_cache: keep compiled programs in JAX's persistent cache.
  """
  return ml_collections.ConfigDict(dict(
      steps=0,
      epochs=1.0,
      eval_every=0,
      eval_flip=False,
      eval_translate=0,
      checkpoint_every=0,
      keep=3,
      seed=0,
      log_every=50,
      overfit_batches=0,
      label_smoothing=0.0,
      mixed_precision=False,
      init_from='',
      init_step=placeholder(int),
      reinit='head/.*',
      freeze='',
      preprocessing='',
      backbone_lr_mult=0.1,
      distributed='auto',
      compilation_cache=True,
  ), type_safe=True).lock()


def validate_train_config(cfg) -> None:
  """Raises ValueError naming the first invalid field of ``config.train``."""
  for field in ('steps', 'eval_every', 'checkpoint_every', 'overfit_batches',
                'eval_translate'):
    errors.require(cfg[field] >= 0,
                   f'train.{field} must be >= 0, got {cfg[field]}')
  errors.require(cfg.steps > 0 or cfg.epochs > 0,
                 'set train.steps or train.epochs above 0')
  errors.require(cfg.keep >= 1, f'train.keep must be >= 1, got {cfg.keep}')
  errors.require(cfg.log_every >= 1,
                 f'train.log_every must be >= 1, got {cfg.log_every}')
  errors.require(0.0 <= cfg.label_smoothing < 1.0,
                 f'train.label_smoothing must be in [0, 1), got '
                 f'{cfg.label_smoothing}')
  errors.require(cfg.backbone_lr_mult >= 0,
                 'train.backbone_lr_mult must be >= 0, got '
                 f'{cfg.backbone_lr_mult}')
  errors.require(cfg.distributed in ('auto', 'on', 'off'),
                 f"train.distributed must be 'auto', 'on' or 'off', got "
                 f'{cfg.distributed!r}')
  freeze_regex(cfg.freeze)
  _compile(cfg.reinit, 'reinit')
  errors.require(cfg.preprocessing != 'from_init' or bool(cfg.init_from),
                 "train.preprocessing = 'from_init' needs train.init_from, the "
                 'workdir of an import_weights run')


def _compile(pattern: str, field: str) -> re.Pattern:
  try:
    return re.compile(pattern)
  except re.error as err:
    raise ValueError(f'train.{field}: invalid regular expression '
                     f'{pattern!r}: {err}') from None


def freeze_regex(freeze: str) -> str:
  """``train.freeze`` as one regular expression on parameter paths.

  A bare name such as ``stage1`` stands for the module of that name and its
  numbered parts (``stage1_block1``, ``stage1_block2``, ...), i.e.
  ``stage1(_\w+)?/.*``; anything else is a regular expression. '' freezes
  nothing.
  """
  parts = []
  for item in filter(None, (s.strip() for s in freeze.split(','))):
    bare = re.fullmatch(r'[A-Za-z]\w*', item)
    parts.append(f'{item}(?:_\\w+)?/.*' if bare else item)
  regex = '|'.join(f'(?:{p})' for p in parts)
  _compile(regex, 'freeze')
  return regex
