"""Fine-tuning imported or dvl-trained weights on another dataset.

    python launch.py --config experiments/import_weights.py:source=keras,model=efficientnet_b0,path=B0.weights.h5 --workdir runs/b0_imported
    python launch.py --config experiments/finetune.py:init=runs/b0_imported,dataset=pets --workdir runs/b0_pets
    python launch.py --config experiments/finetune.py:init=runs/cifar10,dataset=pets --workdir runs/cifar10_pets

``init`` is the workdir of an import_weights run (the model, its fields and
its input preprocessing come from ``imported.json``) or of a dvl training
run (the model from its ``config.json``; the new dataset gets its own
normalisation). The lecture's recipe: the classifier head is
re-initialised for the new classes, everything else is loaded and trained at
a tenth of the head's learning rate (Nesterov SGD, warm-up and cosine decay,
label smoothing, flips and random-resized crops). ``scratch`` trains the same
model from a random initialisation with the same recipe, for comparison.

Arguments: ``init``, ``dataset`` (``pets``, ``cifar10``, ``shapes`` or a
TFDS name), ``resolution`` (0: the source model's), ``epochs``, ``batch``,
``lr`` (the head's), ``freeze`` (groups kept fixed, e.g. ``stem,stage1``),
``scratch``, ``runlocal`` (a few steps at 64x64).
"""

import json
from pathlib import Path

import ml_collections

from dvl.config_args import parse_arg
from dvl.data import default_input_config
from dvl.optim import default_optim_config
from dvl.train import default_train_config

DATASETS = {'pets': 'pets_local', 'cifar10': 'cifar10_local',
            'shapes': 'shapes'}


def source_model(init: str) -> tuple[dict, bool]:
  """``(config.model fields, imported?)`` of the run in ``init``."""
  workdir = Path(init).expanduser()
  if (workdir / 'imported.json').is_file():
    info = json.loads((workdir / 'imported.json').read_text())
    fields = dict(info['fields'], name=info['model'])
    imported = True
  elif (workdir / 'config.json').is_file():
    fields = dict(json.loads((workdir / 'config.json').read_text())['model'])
    imported = False
  else:
    raise ValueError(f'init={init!r} holds neither imported.json (an '
                     'import_weights run) nor config.json (a training run)')
  fields.pop('num_classes', None)  # the new dataset decides
  fields.pop('dtype', None)
  return fields, imported


def get_config(arg=None):
  arg = parse_arg(arg, init='', dataset='pets', resolution=0, epochs=10.0,
                  batch=16, lr=0.01, freeze='', scratch=False, runlocal=False)
  if not arg.init:
    raise ValueError('finetune needs init=WORKDIR: an import_weights or a '
                     'training run, e.g. finetune.py:init=runs/b0_imported')
  fields, imported = source_model(arg.init)
  config = ml_collections.ConfigDict()
  config.job = 'train'
  config.name = f'finetune_{fields["name"]}_{arg.dataset}'
  config.model = ml_collections.ConfigDict(fields)

  config.input = default_input_config()
  config.input.dataset = DATASETS.get(arg.dataset, arg.dataset)
  config.input.resolution = arg.resolution or None
  config.input.val_count = 30
  config.input.batch_size = arg.batch
  config.input.eval_batch_size = 50
  config.input.augment.hflip = True
  config.input.augment.crop = 'inception'
  config.input.augment.crop_scale = (0.35, 1.0)

  config.optim = default_optim_config()
  config.optim.optimizer = 'nesterov'
  config.optim.learning_rate = arg.lr
  config.optim.weight_decay = 5e-4
  config.optim.warmup_epochs = 1.0

  config.train = default_train_config()
  config.train.epochs = arg.epochs
  config.train.label_smoothing = 0.1
  config.train.log_every = 10
  config.train.freeze = arg.freeze
  if not arg.scratch:
    config.train.init_from = arg.init
    if imported:
      config.train.preprocessing = 'from_init'

  if arg.runlocal:
    config.input.resolution = 64
    config.input.batch_size = 8
    config.input.val_count = 8
    config.input.eval_batch_size = 16
    config.train.steps = 4
    config.train.log_every = 1
    config.optim.warmup_epochs = 0.0
  return config
