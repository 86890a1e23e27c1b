"""Import pretrained weights into a dvl model (issue "Pretrained weights").

    python launch.py --config experiments/import_weights.py:source=keras,model=efficientnet_b0,path=B0.weights.h5 --workdir runs/b0_imported

Writes ``imported.json`` (model, fields, source, preprocessing) and a dvl
checkpoint with ``params`` and ``batch_stats`` into the workdir; nothing is
written when the file does not fit the model. Arguments:

- ``source``: ``keras`` (``keras.applications`` ``.weights.h5``, ``.keras``
  or legacy ``.h5`` files).
- ``model``: the dvl registry name (``efficientnet_b0`` … ``b7``,
  ``mobilenet_v1``, ``mobilenet_v2``, ``resnet50_v1``, ``vgg16``, ``vgg19``).
- ``path``: the weight file.
- ``alpha``: MobileNet / MobileNetV2 width multiplier (default 1.0).
- ``imagenet_rescale``: ``auto`` / ``on`` / ``off``, EfficientNet only:
  whether Keras applied its extra per-channel rescaling for the published
  ImageNet weights (``auto`` reads a ``.keras`` config, else recognises the
  published normalisation statistics).
"""

from dvl.config_args import parse_arg


def get_config(arg=None):
  config = parse_arg(arg, source='keras', model='', path='', alpha=1.0,
                     imagenet_rescale='auto')
  if not config.model or not config.path:
    raise ValueError('import_weights needs model=NAME and path=FILE, e.g. '
                     'experiments/import_weights.py:model=efficientnet_b0,'
                     'path=B0.weights.h5')
  config.job = 'import_weights'
  return config
