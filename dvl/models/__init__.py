"""The model zoo: one explicit registry of every dvl model.

Each family's file declares what dvl knows about its variants as
``SPECS`` (``dvl.models.spec``); ``MODELS`` registers them, one line per
family, checking each against the contract. ``build_model(name, **fields)``
builds one, overriding any field. Every model is a Flax linen module with
``__call__(x, *, train)`` on NHWC input that returns ``(output, features)``;
``features`` holds named intermediate maps (``stem``, ``stage1`` …,
``pre_logits``) for detection and segmentation heads.

A new backbone is one file ending in ``SPECS`` and one line below.
"""

import flax.linen as nn

from dvl.models import (autoencoder, convnext, efficientnet, efficientnet_v2,
                        fcn, googlenet, lenet, mobilenet_v1, regnet, resnet,
                        resnet_cifar, segnet, unet, vgg, yolo)
from dvl.models.spec import ModelSpec, SpecError, register

MODELS: dict[str, ModelSpec] = register(
    lenet.SPECS,
    vgg.SPECS,
    googlenet.SPECS,
    resnet.SPECS,
    resnet_cifar.SPECS,
    mobilenet_v1.SPECS,
    efficientnet.SPECS,
    efficientnet_v2.SPECS,
    convnext.SPECS,
    regnet.SPECS,
    # Detection, segmentation and image-to-image models.
    yolo.SPECS,
    fcn.SPECS,
    segnet.SPECS,
    unet.SPECS,
    autoencoder.SPECS,
)


def get_spec(name: str) -> ModelSpec:
  """The spec of a registered model; raises ValueError with the choices."""
  if name not in MODELS:
    raise ValueError(f'unknown model {name!r}; choose one of: '
                     f'{", ".join(MODELS)}')
  return MODELS[name]


def task(name: str) -> str:
  """What a registered model predicts: 'classification', 'detection',
  'segmentation' or 'reconstruction'."""
  return get_spec(name).task


def classifiers() -> list[str]:
  """The registered classification backbones."""
  return [n for n, s in MODELS.items() if s.task == 'classification']


def model_fields(name: str) -> dict:
  """The full field dict of a registered model (defaults included)."""
  return get_spec(name).defaults()


def build_model(name: str, **overrides) -> nn.Module:
  """Builds the registered model ``name`` with some fields overridden.

  Raises ValueError for an unknown name or field, listing the valid ones.
  """
  found = get_spec(name)
  valid = found.defaults()
  unknown = sorted(set(overrides) - set(valid))
  if unknown:
    raise ValueError(f'{name} has no field(s) {unknown}; its fields are: '
                     f'{", ".join(sorted(valid))}')
  return found.build(**overrides)
