"""CIFAR-10 (the JPEG-degraded copy in ../shared/data/cifar10).

    python launch.py --config experiments/cifar10.py --workdir runs/cifar10
    python launch.py --config experiments/cifar10.py:model=resnet18 --workdir runs/r18

The default is airbench's network (Jordan 2024; ``dvl.models.resnet_cifar``)
at reduced width: a 2x2 patch-whitening stem fitted to the training images,
three stages of two 3x3 convolutions with GELU, initialised to pass their
input channels through (dirac). Nesterov SGD with a
one-epoch warm-up and a cosine decay, label smoothing 0.2, random 2-pixel
translations and flips, and six test-time views (two shifts and the image,
each mirrored); 2,000 training images are held out for validation. On a
2-core CPU about 340 training images/s, 10.5 epochs in under half an hour
(measured figures in docs/training-results.md). ``model=NAME`` trains
any registered model instead (e.g. ``resnet18`` at 32x32, with its 7x7 stem
and max pooling). Arguments: ``model``, ``epochs``, ``runlocal`` (30 steps,
about a minute).
"""

import ml_collections

from dvl.config_args import parse_arg
from dvl.data import default_input_config
from dvl.optim import default_optim_config
from dvl.train import default_train_config

DEFAULT_MODEL = 'resnet9'
# Fields of the default model: airbench's network (a 2x2 patch-whitening
# stem, then three stages of two 3x3 convolutions, no residual connections)
# with half its widths in the first two stages; the 7x7 and 3x3 maps of the
# last stage keep all 256 channels, which XLA's CPU convolutions compute at
# the most FLOP/s (44M MACs).
RESNET9_FIELDS = dict(widths=(24, 32, 128, 256), residual=(False, False, False),
                      double=True, whiten=2, dirac=True, act='gelu')


def get_config(arg=None):
  arg = parse_arg(arg, model=DEFAULT_MODEL, epochs=10.5, runlocal=False)
  config = ml_collections.ConfigDict()
  config.job = 'train'
  config.name = f'cifar10_{arg.model}'

  fields = RESNET9_FIELDS if arg.model == DEFAULT_MODEL else {}
  config.model = ml_collections.ConfigDict(dict(name=arg.model, **fields))

  config.input = default_input_config()
  config.input.dataset = 'cifar10_local'
  config.input.resolution = 32
  config.input.val_count = 2000
  config.input.batch_size = 64  # on a CPU, 25% faster per image than 128
  config.input.eval_batch_size = 1000
  config.input.augment.hflip = True
  config.input.augment.crop = 'pad_crop'
  config.input.augment.crop_padding = 2

  config.optim = default_optim_config()
  config.optim.optimizer = 'nesterov'
  config.optim.learning_rate = 0.1
  config.optim.momentum = 0.9
  config.optim.weight_decay = 5e-4
  config.optim.warmup_epochs = 1.0
  if arg.model == DEFAULT_MODEL:
    config.optim.freeze = 'prep/kernel'  # the fitted whitening filters

  config.train = default_train_config()
  config.train.epochs = arg.epochs
  config.train.label_smoothing = 0.2
  config.train.eval_flip = True
  config.train.eval_translate = 1
  # Six views of 2,000 images cost a twentieth of an epoch: every 5 epochs
  # (and at the end). Evaluating changes nothing in the training itself.
  config.train.eval_every = 5 * 750
  config.train.log_every = 10

  if arg.runlocal:
    config.input.val_count = 1000
    config.train.steps = 30
    config.optim.warmup_epochs = 0.0
    config.optim.warmup_steps = 5
    config.train.eval_every = 15
    config.input.eval_batch_size = 500
  return config
