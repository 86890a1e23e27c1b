"""Every registered classifier: init, a training apply and an evaluation
apply (the dense-prediction models have their own tests)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dvl import models
from model_variables import random_variables

# VGG's 4096-wide classifier is shrunk here: the layers under test are the same.
OVERRIDES = {n: dict(fc_width=64) for n in models.MODELS if n.startswith('vgg')}


def _build(name):
  return models.build_model(name, num_classes=7, **OVERRIDES.get(name, {}))


def _stochastic(name) -> bool:
  fields = models.model_fields(name)
  return bool(fields.get('dropout', 0) or fields.get('drop_connect', 0)
              or fields.get('drop_path', 0))


# The deepest variants repeat the code of their smaller siblings at a larger
# depth and width; they run with the slow tests.
# convnext_tiny and efficientnetv2_b0 share their code with the variants
# that stay in the default suite (ConvNeXt's proxy, EfficientNet-B0).
DEEP = ('resnet101', 'resnet152', 'efficientnet_b1', 'efficientnet_b2',
        'convnext_tiny', 'efficientnetv2_b0',
        'efficientnet_b3', 'efficientnet_b4',
        'efficientnet_b5', 'efficientnet_b6', 'efficientnet_b7',
        'efficientnetv2_b1', 'efficientnetv2_b2', 'efficientnetv2_b3',
        'efficientnetv2_s', 'efficientnetv2_m', 'efficientnetv2_l',
        'convnext_small', 'convnext_base', 'convnext_large', 'convnext_xlarge',
        *(n for n in models.MODELS
          if n.startswith('regnet') and not n.endswith('_002')))


@pytest.mark.parametrize('name', [
    pytest.param(n, marks=pytest.mark.slow) if n in DEEP else n
    for n in models.classifiers()])
def test_every_model_trains_and_evaluates(name):
  channels = models.get_spec(name).channels
  side = 32 if channels == 1 else 64  # LeNet-5's digits are 32x32
  model = _build(name)
  x = jax.random.normal(jax.random.key(0), (2, side, side, channels))
  variables = random_variables(model, x)
  evaluate = jax.jit(lambda v, x: model.apply(v, x, train=False))
  train_apply = jax.jit(lambda v, x, key: model.apply(
      v, x, train=True, mutable=['batch_stats'], rngs={'dropout': key}))

  logits, features = evaluate(variables, x)
  assert logits.shape == (2, 7)
  assert np.all(np.isfinite(logits))
  assert features['pre_logits'].shape[0] == 2
  again, _ = evaluate(variables, x)
  np.testing.assert_array_equal(logits, again)

  (out1, _), updates = train_apply(variables, x, jax.random.key(2))
  (out2, _), _ = train_apply(variables, x, jax.random.key(3))
  assert np.all(np.isfinite(out1))
  if 'batch_stats' in variables:
    before = jax.tree_util.tree_leaves(variables['batch_stats'])
    after = jax.tree_util.tree_leaves(updates['batch_stats'])
    assert any(not np.allclose(a, b) for a, b in zip(before, after))
  differs = not np.allclose(out1, out2)
  assert differs == _stochastic(name), (
      'dropout / drop-connect must act in training, and only where enabled')


def test_batch_norm_models_keep_statistics_apart():
  variables = _build('resnet18').init(jax.random.key(0),
                                      jnp.ones((1, 64, 64, 3)), train=False)
  assert 'batch_stats' in variables
  names = {k for k in jax.tree_util.tree_flatten_with_path(
      variables['params'])[0][0][0]}
  assert names, 'params collection is empty'


@pytest.mark.parametrize('name', ['resnet50', 'efficientnet_b0', 'vgg16',
                                  'mobilenet_v1', 'googlenet'])
def test_features_are_named_by_stage(name):
  model = _build(name)
  x = jnp.zeros((1, 64, 64, 3))
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x,
                                                train=False))
  _, features = jax.eval_shape(
      lambda v: model.apply(v, x, train=False), variables)
  assert 'stage1' in features and 'pre_logits' in features
  sides = [f.shape[1] for k, f in features.items() if k.startswith('stage')]
  assert sides == sorted(sides, reverse=True), 'stages must not grow'


def test_bf16_compute_keeps_float32_params():
  model = models.build_model('efficientnet_b0', num_classes=3,
                             dtype=jnp.bfloat16)
  x = jnp.ones((1, 64, 64, 3))
  variables = random_variables(model, x)
  logits, _ = jax.jit(lambda v: model.apply(v, x, train=False))(variables)
  assert logits.dtype == jnp.bfloat16
  dtypes = {p.dtype for p in jax.tree_util.tree_leaves(variables['params'])}
  assert dtypes == {jnp.dtype('float32')}


def test_unknown_model_lists_the_valid_names():
  with pytest.raises(ValueError, match="unknown model 'resnet5'.*resnet50"):
    models.build_model('resnet5')


def test_unknown_field_lists_the_fields():
  with pytest.raises(ValueError, match="no field.*'widht'.*width"):
    models.build_model('resnet50', widht=2.0)


@pytest.mark.parametrize('name', ['resnet50', 'mobilenet_v1',
                                  'efficientnet_b0', 'vgg16'])
@pytest.mark.parametrize('width', [0.0, -1.0])
def test_invalid_width_is_refused(name, width):
  model = models.build_model(name, width=width)
  with pytest.raises(ValueError, match='width multiplier must be > 0'):
    model.init(jax.random.key(0), jnp.ones((1, 64, 64, 3)), train=False)


@pytest.mark.parametrize('name,side', [('resnet50', 16), ('vgg16', 24),
                                       ('lenet5', 12)])
def test_too_small_input_says_why(name, side):
  model = models.build_model(name)
  channels = 1 if name == 'lenet5' else 3
  with pytest.raises(ValueError, match='collapses to zero'):
    model.init(jax.random.key(0), jnp.ones((1, side, side, channels)),
               train=False)


def test_unbatched_input_is_refused():
  with pytest.raises(ValueError, match='NHWC'):
    models.build_model('resnet18').init(jax.random.key(0),
                                        jnp.ones((64, 64, 3)), train=False)
