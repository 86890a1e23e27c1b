"""Quickstart: a small EfficientNet on the embedded shapes dataset.

    python launch.py --config experiments/quickstart.py --workdir runs/quick

Six classes of procedural shapes at 32x32 (generated on first use) and an
EfficientNet (Tan & Le 2019) cut to B0's first four stages, one block each,
with strides for 32x32 images: its last map is 4x4, not 1x1, because telling
a star from a cross needs that resolution (at B0's stride of 32 the small
networks that fit the time stay at chance for epochs). AdamW, a cosine
schedule, label smoothing and flips, three passes over 28,000 images.
Measured on a 2-core CPU from a fresh clone: 91.95% on the test split in
2m47s, generating the dataset and compilation included.

Arguments: ``runlocal`` (a few hundred images, about half a minute).
"""

import ml_collections

from dvl.config_args import parse_arg
from dvl.data import default_input_config
from dvl.optim import default_optim_config
from dvl.train import default_train_config

# B0's first four stages (Table 1 of the paper) with strides 1, 2, 2, 1:
# after the stride-2 stem a 32x32 image ends at 4x4. With depth 0.5 each
# stage has one block.
BLOCKS_32PX = ('ir_r1_k3_s1_e1_c16_se0.25', 'ir_r2_k3_s2_e6_c24_se0.25',
               'ir_r2_k5_s2_e6_c40_se0.25', 'ir_r2_k3_s1_e6_c80_se0.25')


def get_config(arg=None):
  arg = parse_arg(arg, runlocal=False)
  config = ml_collections.ConfigDict()
  config.job = 'train'
  config.name = 'quickstart'

  config.model = ml_collections.ConfigDict(dict(
      name='efficientnet', blocks=BLOCKS_32PX, depth=0.5, head_width=320,
      resolution=32, dropout=0.0, drop_connect=0.0, bn_momentum=0.9))

  config.input = default_input_config()
  config.input.dataset = 'shapes'
  # Images are free: 30,000 seen about three times each generalise better
  # than 10,000 seen nine times, for the same minutes of training.
  config.input.shapes.num_train = 30_000
  config.input.val_count = 2000
  config.input.resolution = 32
  config.input.batch_size = 64  # more updates per second on a CPU than 128
  config.input.augment.hflip = True

  config.optim = default_optim_config()
  config.optim.optimizer = 'adamw'
  config.optim.learning_rate = 2e-3
  config.optim.warmup_epochs = 0.2
  config.optim.weight_decay = 0.02

  config.train = default_train_config()
  config.train.epochs = 3
  config.train.eval_every = 400
  config.train.label_smoothing = 0.1
  config.train.log_every = 20

  if arg.runlocal:
    config.input.shapes.update(dict(num_train=640, num_test=128))
    config.input.val_count = 64
    config.input.eval_batch_size = 64
    config.train.epochs = 3
    config.train.eval_every = 0
    config.train.log_every = 5
  return config
