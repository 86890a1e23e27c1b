"""YOLO v1 (Redmon et al. 2016) on the shapes dataset: every object boxed.

    python launch.py --config experiments/yolo_shapes.py --workdir runs/yolo

Each 56x56 image holds one large shape and up to two small ones (boxes of
about 7 to 45 pixels), six classes. The paper's design at the scale of the
data: a 7x7 grid of 8-pixel cells, two predictors per cell, the paper's loss
(lambda_coord 5, lambda_noobj 0.5, the responsible predictor by IoU); the
backbone is the paper's kind of network (3x3 convolutions, 1x1 reductions,
max pooling, leaky ReLU) cut to eight convolutions of stride 8, with
BatchNorm, and the head keeps the two fully connected layers (512 hidden
units). Adam with a cosine decay. Evaluation: decoding, class-wise NMS at
IoU 0.5 and VOC mAP at IoU 0.5 on the test split; the run draws predicted
and true boxes on test images into ``pictures/``.

Arguments: ``distractors`` (small shapes per image, 0-3), ``epochs``,
``runlocal`` (a few hundred images, about a minute).
"""

import ml_collections

from dvl.config_args import parse_arg
from dvl.data import default_input_config
from dvl.optim import default_optim_config
from dvl.tasks import default_task_config
from dvl.train import default_train_config

# Stride 8 for 56x56 images: 56 -> 28 -> 14 -> 7 cells.
SHAPES_STAGES = ('3x32', 'M 3x64', 'M 3x128 1x64 3x128',
                 'M 3x256 1x128 3x256')


def get_config(arg=None):
  arg = parse_arg(arg, distractors=2, epochs=6.0, head='conv',
                  runlocal=False)
  config = ml_collections.ConfigDict()
  config.job = 'train'
  config.name = 'yolo_shapes'

  config.model = ml_collections.ConfigDict(dict(
      name='yolo_v1', stages=SHAPES_STAGES, grid=7, boxes_per_cell=2,
      head=arg.head, fc_width=512 if arg.head == 'dense' else 128,
      dropout=0.3 if arg.head == 'dense' else 0.0))

  config.input = default_input_config()
  config.input.dataset = 'shapes'
  config.input.shapes.update(dict(image_size=56, num_train=20_000,
                                  num_test=2000,
                                  max_distractors=arg.distractors))
  config.input.resolution = 56
  config.input.val_count = 1000
  config.input.batch_size = 64
  config.input.eval_batch_size = 250
  config.input.max_boxes = 1 + arg.distractors
  config.input.augment.hflip = True

  config.optim = default_optim_config()
  config.optim.optimizer = 'adamw'
  config.optim.learning_rate = 1e-3
  config.optim.weight_decay = 1e-4
  config.optim.warmup_epochs = 0.3
  config.optim.grad_clip_norm = 10.0

  config.task = default_task_config()

  config.train = default_train_config()
  config.train.epochs = arg.epochs
  config.train.log_every = 20
  config.train.eval_every = 2 * 296  # every two epochs

  if arg.runlocal:
    config.input.shapes.update(dict(num_train=640, num_test=128))
    config.input.val_count = 128
    config.input.eval_batch_size = 64
    config.train.epochs = 4
    config.train.eval_every = 0
    config.train.log_every = 5
  return config
