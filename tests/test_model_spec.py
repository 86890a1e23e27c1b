"""The model spec: every registered model meets the contract, and a spec
that breaks it fails at registration with a message naming what is wrong."""

import dataclasses

import flax.linen as nn
import pytest

from dvl import models, peer, scaling
from dvl.jobs import imagenet_eval
from dvl.convert import keras_layouts
from dvl.models import lenet, spec
from dvl.models.spec import Keras, ModelSpec, Scaling, SpecError


@pytest.mark.parametrize('name', list(models.MODELS))
def test_every_registered_model_meets_the_contract(name):
  found = models.get_spec(name)
  assert found.name == name
  spec.check(found)
  model = models.build_model(name)
  assert model.default_resolution == found.resolution
  fields = models.model_fields(name)
  assert set(found.fields) <= set(fields)
  assert found.remat == ('remat' in fields)
  if found.task == 'classification':
    assert model.min_resolution <= found.resolution
    assert 'num_classes' in fields
  if found.scaling is not None:
    scaled, side = scaling.scale({'name': name}, depth=2.0, width=1.5,
                                 resolution=1.5)
    assert scaled['depth'] == 2.0 * fields['depth']
    assert scaled['width'] == 1.5 * fields['width']
    assert side > found.resolution
    assert set(found.scaling.proxy) <= set(fields)
    assert name in scaling.families()[found.scaling.family]
  else:
    with pytest.raises(ValueError, match='cannot be scaled'):
      scaling.scale({'name': name}, depth=2.0)


def test_tables_read_from_the_specs():
  assert imagenet_eval.resize_method('efficientnet_b3') == 'bicubic'
  assert imagenet_eval.resize_method('resnet50_v1') == 'bilinear'
  assert peer.keras_peer('efficientnet_b0') == 'EfficientNetB0'
  assert peer.keras_peer('resnet50') == 'ResNet50'  # v1.5 against Keras v1
  assert peer.keras_peer('googlenet') is None
  assert keras_layouts.family('vgg16').preprocessing == 'caffe'
  assert 'mobilenet_v2' in keras_layouts.importable()
  with pytest.raises(ValueError, match='resnet50_v1 instead'):
    keras_layouts.family('resnet50')
  with pytest.raises(ValueError, match='importable models: .*vgg16'):
    keras_layouts.family('googlenet')
  assert models.get_spec('lenet5').channels == 1
  assert scaling.semantics('vgg').startswith('depth multiplies')


class _NoFields(nn.Module):
  default_resolution = 32
  min_resolution = 8

  def __call__(self, x, *, train: bool):
    return x, {}


def _lenet(**changes):
  return dataclasses.replace(lenet.SPECS[0], **changes)


@pytest.mark.parametrize('bad, message', [
    (ModelSpec('x', object), 'must be a flax.linen.Module class'),
    (ModelSpec('x', _NoFields, resolution=32), 'has no num_classes field'),
    (_lenet(task='depth'), "task 'depth' is not one of"),
    (_lenet(resize='lanczos'), "resize 'lanczos' is not one of"),
    (_lenet(fields=dict(widht=2)), r"fields \['widht'\] are not fields"),
    (_lenet(resolution=28), 'builds for 32x32 inputs but the spec says '
     'resolution=28'),
    (_lenet(scaling=Scaling('lenet', 'none')),
     "can scale, but LeNet5 has no float 'depth' field"),
    (_lenet(remat=True), 'spec.remat must be True exactly when'),
    (_lenet(keras=Keras('LeNet')), 'must say why'),
    (_lenet(keras=Keras('LeNet', rules=lambda m: [], preprocessing='x')),
     "keras.preprocessing 'x' is not one of"),
    (_lenet(reference=spec.Reference(-5, 1.0, 'x')),
     'params must be a positive int'),
])
def test_a_broken_spec_fails_at_registration(bad, message):
  with pytest.raises(SpecError, match=message):
    spec.register((bad,))


def test_two_models_cannot_register_one_name():
  with pytest.raises(SpecError, match="two models register the name 'lenet5'"):
    spec.register(lenet.SPECS, (_lenet(fields=dict(act='relu')),))


def test_a_family_registers_with_one_line():
  extra = _lenet(name='lenet5_relu', fields=dict(act='relu'))
  registry = spec.register(lenet.SPECS, (extra,))
  assert list(registry) == ['lenet5', 'lenet5_relu']
  assert registry['lenet5_relu'].build().act == 'relu'
