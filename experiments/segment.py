"""Semantic segmentation: U-Net, FCN-32s/16s/8s or SegNet, trained from
scratch on the pet trimaps or the shapes masks.

    python launch.py --config experiments/segment.py:model=unet,dataset=pets --workdir runs/unet
    python launch.py --config experiments/segment.py:model=fcn8s,dataset=pets --workdir runs/fcn8s
    python launch.py --config experiments/segment.py:model=segnet,dataset=pets --workdir runs/segnet

``pets``: the 3-breed Oxford-IIIT Pet set (``pets_local``), 128x128, 300
training images (30 kept for validation) and 298 test images; the trimaps
become pet / background with the boundary class ignored (``dvl.segmentation``),
so the metrics are pixel accuracy, the IoU of each class, their mean and the
foreground (pet) IoU. ``shapes``: 64x64 shapes, one class per shape plus
background.

Models (all from scratch, sized for a CPU):
  * ``unet`` (Ronneberger et al. 2015): four poolings, 16 to 256 channels;
  * ``fcn8s``, ``fcn16s``, ``fcn32s`` (Long et al. 2015): a ResNet-18 at half
    width as the backbone, skips from strides 8 and 16, transposed
    convolutions initialised as bilinear upsampling;
  * ``segnet`` (Badrinarayanan et al. 2017): VGG-16's encoder at a quarter
    width, decoded by max-unpooling at the recorded argmax positions.

Adam, a cosine decay, flips and small affine warps (masks follow the image).
The run draws predicted and true masks over test images into ``pictures/``.

Arguments: ``model``, ``dataset`` (pets or shapes), ``epochs``, ``runlocal``
(a few batches, about a minute).
"""

import ml_collections

from dvl.config_args import parse_arg
from dvl.data import default_input_config
from dvl.optim import default_optim_config
from dvl.tasks import default_task_config
from dvl.train import default_train_config

MODELS = {
    'unet': dict(name='unet', depth=4, base_width=16),
    'segnet': dict(name='segnet', width=0.25),
    **{name: dict(name=name, backbone='resnet18',
                  backbone_fields={'width': 0.5})
       for name in ('fcn8s', 'fcn16s', 'fcn32s')},
}
DATASETS = {
    'pets': dict(dataset='pets_local', resolution=128, val_count=30),
    'shapes': dict(dataset='shapes', resolution=64, val_count=1000),
}


def _choice(value, choices, what):
  if value not in choices:
    raise ValueError(f'unknown {what} {value!r}; choose one of: '
                     f'{", ".join(choices)}')
  return choices[value]


def get_config(arg=None):
  arg = parse_arg(arg, model='unet', dataset='pets', epochs=0.0,
                  runlocal=False)
  data = _choice(arg.dataset, DATASETS, 'dataset')
  config = ml_collections.ConfigDict()
  config.job = 'train'
  config.name = f'segment_{arg.model}_{arg.dataset}'
  config.model = ml_collections.ConfigDict(
      _choice(arg.model, MODELS, 'model'))

  config.input = default_input_config()
  config.input.dataset = data['dataset']
  config.input.resolution = data['resolution']
  config.input.val_count = data['val_count']
  config.input.shapes.update(dict(image_size=64, num_train=6000,
                                  num_test=1000))
  config.input.batch_size = 16
  config.input.eval_batch_size = 50
  config.input.augment.hflip = True
  config.input.augment.affine_degrees = 10.0
  config.input.augment.affine_scale = 0.1

  config.optim = default_optim_config()
  config.optim.optimizer = 'adamw'
  config.optim.learning_rate = 2e-3
  config.optim.weight_decay = 1e-4
  config.optim.warmup_epochs = 1.0

  config.task = default_task_config()

  config.train = default_train_config()
  config.train.epochs = arg.epochs or (60.0 if arg.dataset == 'pets' else 4.0)
  config.train.eval_every = 0 if arg.dataset == 'shapes' else 5 * 16
  config.train.log_every = 10

  if arg.runlocal:
    config.input.shapes.update(dict(num_train=320, num_test=64))
    config.input.val_count = 16 if arg.dataset == 'pets' else 64
    config.input.eval_batch_size = 16
    config.train.epochs = 0.0
    config.train.steps = 12
    config.train.eval_every = 6
    config.train.log_every = 4
    config.optim.warmup_epochs = 0.0
  return config
