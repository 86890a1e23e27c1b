"""Transfer learning: the CIFAR-10 model fine-tuned on three pet breeds.

    python launch.py --config experiments/cifar10.py --workdir runs/cifar10
    python launch.py --config experiments/pets_transfer.py --workdir runs/pets
    python launch.py --config experiments/pets_transfer.py:scratch \
        --workdir runs/pets_scratch

``pets_local`` is a 3-breed subset of Oxford-IIIT Pet (Parkhi et al. 2012):
Abyssinian and Bengal cats and American bulldogs, 300 training images (30
of them kept for validation) and 298 test images at 128x128, resized to the
model's resolution. The fine-tune starts from the newest checkpoint of the
run in ``init_from`` (the weights it evaluated: EMA ones if it kept them),
re-initialises the classifier head for 3 classes and trains the backbone at
a tenth of the head's learning rate. ``scratch`` trains the same model with
the same recipe from a random initialisation, for comparison.

Measured at 32x32 from the default CIFAR-10 run (88.3%): fine-tuned 82.2%
test accuracy, from scratch 78.9% (298 test images: +-2.4 points is noise).
With an earlier ResNet-9, fine-tuning at 64x64 fell behind scratch (72.2%
and 77.5%): the CIFAR features are tuned to 32x32 objects.

Arguments: ``init_from`` (a finished run's workdir, default runs/cifar10),
``scratch``, ``model`` (must match the source run; default: the CIFAR-10
default), ``resolution`` (0: the model's), ``runlocal``. Other groups are
frozen with a flag, e.g. ``--config.train.freeze=prep,stage1,stage2``.
"""


import ml_collections

from dvl.config_args import parse_arg, sibling_experiment
from dvl.data import default_input_config
from dvl.optim import default_optim_config
from dvl.train import default_train_config


def _cifar10_experiment():
  return sibling_experiment(__file__, 'cifar10')


def get_config(arg=None):
  cifar10 = _cifar10_experiment()
  arg = parse_arg(arg, init_from='runs/cifar10', scratch=False,
                  model=cifar10.DEFAULT_MODEL, resolution=0, runlocal=False)
  config = ml_collections.ConfigDict()
  config.job = 'train'
  config.name = 'pets_scratch' if arg.scratch else 'pets_transfer'

  fields = cifar10.RESNET9_FIELDS if arg.model == cifar10.DEFAULT_MODEL else {}
  config.model = ml_collections.ConfigDict(dict(name=arg.model, **fields))

  config.input = default_input_config()
  config.input.dataset = 'pets_local'
  if arg.resolution:
    config.input.resolution = arg.resolution
  config.input.val_count = 30
  config.input.batch_size = 30
  config.input.eval_batch_size = 100
  config.input.augment.hflip = True
  config.input.augment.crop = 'inception'
  config.input.augment.crop_scale = (0.35, 1.0)

  config.optim = default_optim_config()
  config.optim.optimizer = 'nesterov'
  config.optim.learning_rate = 0.05
  config.optim.weight_decay = 5e-4
  config.optim.warmup_epochs = 2.0
  if arg.model == cifar10.DEFAULT_MODEL:
    config.optim.freeze = 'prep/kernel'  # the whitening filters stay fixed

  config.train = default_train_config()
  config.train.epochs = 60
  config.train.eval_every = 45
  config.train.checkpoint_every = 180
  config.train.log_every = 45
  config.train.label_smoothing = 0.1
  config.train.eval_flip = True
  if not arg.scratch:
    config.train.init_from = arg.init_from

  if arg.runlocal:
    config.train.epochs = 3
    config.train.eval_every = 9
    config.train.log_every = 3
    config.optim.warmup_epochs = 1.0
  return config
