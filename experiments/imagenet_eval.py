"""ImageNet top-1 / top-5 of imported weights (see ``dvl.jobs.imagenet_eval``).

    python launch.py --config experiments/import_weights.py:source=keras,model=efficientnet_b0,path=B0.weights.h5 --workdir runs/b0_imported
    python launch.py --config experiments/imagenet_eval.py:model=efficientnet_b0,checkpoint=runs/b0_imported --workdir runs/b0_eval

``imagenet2012`` is read through TFDS: put ILSVRC2012_img_train.tar and
ILSVRC2012_img_val.tar in the manual dir (default
``<data_dir>/downloads/manual``) and the first run prepares it. Arguments:
``checkpoint`` (an import_weights workdir), ``model`` (optional check),
``dataset``, ``split``, ``data_dir``, ``manual_dir``, ``batch``,
``crop_padding`` (32, the reference's), ``resize`` ('' is the source's:
bicubic for EfficientNet, bilinear otherwise), ``max_examples`` (0: all),
``save_predictions`` (top-5 classes per image in ``predictions.npz``).
"""

from dvl.config_args import parse_arg


def get_config(arg=None):
  arg = parse_arg(arg, checkpoint='', model='', dataset='imagenet2012',
                  split='validation', data_dir='', manual_dir='', batch=50,
                  crop_padding=32, resize='', max_examples=0,
                  save_predictions=False)
  if not arg.checkpoint:
    raise ValueError('imagenet_eval needs checkpoint=WORKDIR, the workdir of '
                     'an import_weights run, e.g. '
                     'experiments/imagenet_eval.py:checkpoint=runs/b0_imported')
  if arg.resize not in ('', 'bilinear', 'bicubic'):
    raise ValueError("resize must be 'bilinear' or 'bicubic' (or empty for "
                     f"the source's); got {arg.resize!r}")
  config = parse_arg(None, job='imagenet_eval')
  config.checkpoint = arg.checkpoint
  config.model = arg.model
  config.dataset = arg.dataset
  config.split = arg.split
  config.data_dir = arg.data_dir or None
  config.manual_dir = arg.manual_dir or None
  config.batch_size = arg.batch
  config.crop_padding = arg.crop_padding
  config.resize = arg.resize
  config.max_examples = arg.max_examples
  config.save_predictions = arg.save_predictions
  return config
