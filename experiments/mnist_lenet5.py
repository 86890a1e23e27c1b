"""LeNet-5 on MNIST (LeCun et al. 1998), the classic first experiment.

    python launch.py --config experiments/mnist_lenet5.py --workdir runs/lenet

The lecture's LeNet-5 (tanh, average pooling, 61,706 parameters) on MNIST's
28x28 digits resized to the 32x32 input of the paper, trained with Adam and
a cosine schedule on small random affine distortions, 15 epochs. Measured
on a 2-core CPU from a fresh clone: 99.31% on the test split in 3m39s, the
import of the MNIST archives included (about 7,000 training images/s). Arguments: ``runlocal`` (50
steps, about half a minute).
"""

import ml_collections

from dvl.config_args import parse_arg
from dvl.data import default_input_config
from dvl.optim import default_optim_config
from dvl.train import default_train_config


def get_config(arg=None):
  arg = parse_arg(arg, runlocal=False)
  config = ml_collections.ConfigDict()
  config.job = 'train'
  config.name = 'mnist_lenet5'

  config.model = ml_collections.ConfigDict(dict(name='lenet5'))

  config.input = default_input_config()
  config.input.dataset = 'mnist_local'
  config.input.resolution = 32
  config.input.val_count = 5000
  config.input.batch_size = 128
  config.input.eval_batch_size = 1000
  config.input.augment.affine_degrees = 8.0
  config.input.augment.affine_translate = 0.08
  config.input.augment.affine_scale = 0.08

  config.optim = default_optim_config()
  config.optim.optimizer = 'adam'
  config.optim.learning_rate = 3e-3
  config.optim.warmup_epochs = 0.5

  config.train = default_train_config()
  config.train.epochs = 15
  config.train.log_every = 100

  if arg.runlocal:
    config.input.val_count = 1000
    config.train.steps = 50
    config.train.eval_every = 25
    config.train.log_every = 10
  return config
