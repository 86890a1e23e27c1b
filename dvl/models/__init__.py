"""The model zoo: one explicit registry of every dvl model.

``MODELS`` maps a name to its module class and the fields that make the
named variant; ``build_model(name, **fields)`` builds one, overriding any
field. Every model is a Flax linen module with ``__call__(x, *, train)``
on NHWC input that returns ``(logits, features)``; ``features`` holds named
intermediate maps (``stem``, ``stage1`` …, ``pre_logits``) for detection
and segmentation heads.
"""

import dataclasses

import flax.linen as nn

from dvl.models import (autoencoder, efficientnet, fcn, googlenet, lenet,
                        mobilenet_v1, resnet, resnet_cifar, resnet_v1, segnet,
                        unet, vgg, yolo)

MODELS: dict[str, tuple[type[nn.Module], dict]] = {
    'lenet5': (lenet.LeNet5, {}),
    **{name: (vgg.VGG, dict(stage_sizes=stages))
       for name, stages in vgg.STAGES.items()},
    **{f'{name}_bn': (vgg.VGG, dict(stage_sizes=stages, batch_norm=True))
       for name, stages in vgg.STAGES.items()},
    'googlenet': (googlenet.GoogLeNet, {}),
    **{name: (resnet.ResNet, dict(stage_sizes=stages, block=block))
       for name, (stages, block) in resnet.STAGES.items()},
    **{name: (resnet_v1.ResNetV1, dict(stage_sizes=stages))
       for name, stages in resnet_v1.STAGES.items()},
    'resnet9': (resnet_cifar.ResNetCifar, {}),
    'mobilenet_v1': (mobilenet_v1.MobileNetV1, {}),
    'mobilenet_v2': (efficientnet.EfficientNet,
                     efficientnet.MOBILENET_V2_FIELDS),
    'efficientnet': (efficientnet.EfficientNet, {}),
    **{name: (efficientnet.EfficientNet, efficientnet.efficientnet_fields(name))
       for name in efficientnet.EFFICIENTNET},
    # Detection, segmentation and image-to-image models.
    'yolo_v1': (yolo.YOLO, {}),
    **{name: (fcn.FCN, dict(stride=stride))
       for name, stride in fcn.VARIANTS.items()},
    'segnet': (segnet.SegNet, {}),
    'unet': (unet.UNet, {}),
    **{f'autoencoder_{mode}': (autoencoder.ConvAutoencoder, fields)
       for mode, fields in autoencoder.MODES.items()},
}


def task(name: str) -> str:
  """What a registered model predicts: 'classification', 'detection',
  'segmentation' or 'reconstruction'."""
  return getattr(_lookup(name)[0], 'task', 'classification')


def classifiers() -> list[str]:
  """The registered classification backbones."""
  return [n for n in MODELS if task(n) == 'classification']


def model_fields(name: str) -> dict:
  """The full field dict of a registered model (defaults included)."""
  cls, fields = _lookup(name)
  out = {f.name: f.default for f in dataclasses.fields(cls)
         if f.name not in ('parent', 'name') and f.init
         and f.default is not dataclasses.MISSING}
  out.update(fields)
  return out


def build_model(name: str, **overrides) -> nn.Module:
  """Builds the registered model ``name`` with some fields overridden.

  Raises ValueError for an unknown name or field, listing the valid ones.
  """
  cls, fields = _lookup(name)
  valid = model_fields(name)
  unknown = sorted(set(overrides) - set(valid))
  if unknown:
    raise ValueError(f'{name} has no field(s) {unknown}; its fields are: '
                     f'{", ".join(sorted(valid))}')
  return cls(**{**fields, **overrides})


def _lookup(name: str):
  if name not in MODELS:
    raise ValueError(f'unknown model {name!r}; choose one of: '
                     f'{", ".join(MODELS)}')
  return MODELS[name]
