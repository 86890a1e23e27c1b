"""Convolutional autoencoders trained with the mean squared error:
denoising, colourisation and super-resolution.

    python launch.py --config experiments/autoencoder.py:task=denoise,dataset=mnist --workdir runs/dae
    python launch.py --config experiments/autoencoder.py:task=colorize,dataset=cifar10 --workdir runs/color
    python launch.py --config experiments/autoencoder.py:task=super_resolution,dataset=cifar10 --workdir runs/sr

* ``denoise`` (Vincent et al. 2008): Gaussian noise of standard deviation
  ``noise`` (0.5 by default) is added to each [0, 1] image on the fly, a new
  draw every step, and clipped back to [0, 1]; the target is the clean image.
* ``colorize``: the grey image (BT.601 luma) in, the colour image out.
* ``super_resolution``: the image average-pooled by 2 in, the full image out.

The encoder halves the sides with each strided convolution and the decoder
doubles them back (``dvl.models.autoencoder``): two levels for MNIST's
28x28, three for CIFAR-10 and shapes. Metrics on the test split: PSNR and
SSIM of the output and, as the baseline, of the input (noisy, grey or
enlarged); ``psnr_gain`` is their difference. The run draws input / output /
target triples into ``pictures/``.

Arguments: ``task``, ``dataset`` (mnist, cifar10 or shapes), ``noise``,
``epochs``, ``runlocal`` (a few batches, well under a minute).
"""

import ml_collections

from dvl.config_args import parse_arg
from dvl.data import default_input_config
from dvl.optim import default_optim_config
from dvl.tasks import RECONSTRUCTION_MODES, default_task_config
from dvl.train import default_train_config

DATASETS = {
    'mnist': dict(dataset='mnist_local', resolution=28, widths=(32, 64),
                  val_count=5000),
    'cifar10': dict(dataset='cifar10_local', resolution=32,
                    widths=(32, 64, 128), val_count=5000),
    'shapes': dict(dataset='shapes', resolution=32, widths=(32, 64, 128),
                   val_count=1000),
}


def get_config(arg=None):
  arg = parse_arg(arg, task='denoise', dataset='mnist', noise=0.5, epochs=3.0,
                  runlocal=False)
  if arg.task not in RECONSTRUCTION_MODES:
    raise ValueError(f'unknown task {arg.task!r}; choose one of: '
                     f'{", ".join(RECONSTRUCTION_MODES)}')
  if arg.dataset not in DATASETS:
    raise ValueError(f'unknown dataset {arg.dataset!r}; choose one of: '
                     f'{", ".join(DATASETS)}')
  data = DATASETS[arg.dataset]
  config = ml_collections.ConfigDict()
  config.job = 'train'
  config.name = f'autoencoder_{arg.task}_{arg.dataset}'
  config.model = ml_collections.ConfigDict(dict(
      name=f'autoencoder_{arg.task}', widths=data['widths']))

  config.input = default_input_config()
  config.input.dataset = data['dataset']
  config.input.resolution = data['resolution']  # the images' own size
  config.input.val_count = data['val_count']
  config.input.batch_size = 64
  config.input.eval_batch_size = 500
  config.input.normalize = 'none'
  config.input.augment.hflip = arg.dataset != 'mnist'

  config.optim = default_optim_config()
  config.optim.optimizer = 'adam'
  config.optim.learning_rate = 2e-3
  config.optim.warmup_epochs = 0.1

  config.task = default_task_config()
  config.task.mode = arg.task
  config.task.noise_std = arg.noise
  config.task.upscale = 2

  config.train = default_train_config()
  config.train.epochs = arg.epochs
  config.train.log_every = 20

  if arg.runlocal:
    config.input.val_count = 500
    config.train.epochs = 0.0
    config.train.steps = 30
    config.train.eval_every = 15
    config.train.log_every = 5
    config.optim.warmup_epochs = 0.0
  return config
