"""Cross-check against a peer no one here wrote: keras.applications.

Each Keras model is built with ``weights=None`` (offline); dvl's trainable
parameter count must equal Keras's, and the stage outputs must have the
same shapes.
"""

import os

os.environ.setdefault('KERAS_BACKEND', 'tensorflow')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dvl import flops, models

keras = pytest.importorskip('keras')

_MBV2_ENDS = np.cumsum([1, 2, 3, 4, 3, 3, 1]) - 1


def _prefixes(name):
  """Keras layer-name prefix whose last layer closes each dvl stage."""
  if name.startswith('efficientnet'):
    return [f'block{i}' for i in range(1, 8)]
  if name == 'mobilenet_v2':
    return ['expanded_conv_'] + [f'block_{e}_' for e in _MBV2_ENDS[1:]]
  if name == 'mobilenet_v1':
    return [f'conv_pw_{k}_' for k in (1, 3, 5, 11, 13)]
  return [f'block{i}_conv' for i in range(1, 6)]


KERAS = {
    **{f'efficientnet_b{i}': f'EfficientNetB{i}' for i in range(8)},
    'mobilenet_v1': 'MobileNet', 'mobilenet_v2': 'MobileNetV2',
    'vgg16': 'VGG16', 'vgg19': 'VGG19',
}


def _keras_stage_shapes(model, prefixes):
  shapes = []
  for prefix in prefixes:
    last = [l for l in model.layers if l.name.startswith(prefix)][-1]
    shapes.append(tuple(last.output.shape[1:]))
  return shapes


def _dvl_stage_shapes(model, side):
  x = jax.ShapeDtypeStruct((1, side, side, 3), jnp.float32)
  variables = jax.eval_shape(
      lambda x: model.init(jax.random.key(0), x, train=False), x)
  _, features = jax.eval_shape(
      lambda v, x: model.apply(v, x, train=False), variables, x)
  stages = sorted(k for k in features if k.startswith('stage'))
  return [tuple(features[k].shape[1:]) for k in stages]


@pytest.mark.parametrize('name', list(KERAS))
def test_matches_keras_applications(name):
  ours = models.build_model(name)
  side = ours.default_resolution
  peer = getattr(keras.applications, KERAS[name])(
      weights=None, input_shape=(side, side, 3))
  peer_params = sum(int(np.prod(w.shape)) for w in peer.trainable_weights)
  assert flops.count(ours, (side, side, 3)).params == peer_params
  assert (_dvl_stage_shapes(ours, side) ==
          _keras_stage_shapes(peer, _prefixes(name)))
  keras.backend.clear_session()
