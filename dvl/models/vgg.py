"""VGG (Simonyan & Zisserman 2015, "Very deep convolutional networks for
large-scale image recognition", Table 1, configurations A, B, D, E).

Five stages of 3×3 convolutions, each closed by 2×2 max pooling, then the
4096-4096 classifier on a 7×7 adaptive-average-pooled map (torchvision's
layout: VGG-16 has exactly 138,357,544 parameters; with BatchNorm the
convolutions keep their biases, as there).

Scaling semantics (``dvl.scaling``): ``depth`` multiplies the number of
convolutions in every stage (rounded up), ``width`` multiplies every
convolution's channels (rounded to a multiple of 8); the classifier's hidden
width stays 4096, so width scaling also grows the first dense layer's input.
"""

from typing import ClassVar, Sequence

import flax.linen as nn
import jax.numpy as jnp

from dvl import layers
from dvl.models import spec
from dvl.models.common import Classifier, check_input, positive

STAGES = {
    'vgg11': (1, 1, 2, 2, 2),
    'vgg13': (2, 2, 2, 2, 2),
    'vgg16': (2, 2, 3, 3, 3),
    'vgg19': (2, 2, 4, 4, 4),
}


class VGG(nn.Module):
  """VGG with or without BatchNorm after every convolution."""
  stage_sizes: Sequence[int] = STAGES['vgg16']
  widths: Sequence[int] = (64, 128, 256, 512, 512)
  batch_norm: bool = False
  fc_width: int = 4096
  pool_size: int = 7
  dropout: float = 0.5
  width: float = 1.0
  depth: float = 1.0
  num_classes: int = 1000
  dtype: object = jnp.float32

  default_resolution: ClassVar[int] = 224
  min_resolution: ClassVar[int] = 32

  @nn.compact
  def __call__(self, x, *, train: bool):
    check_input(x, model='vgg', min_resolution=self.min_resolution, stride=32)
    positive(self.width, 'width', 'vgg')
    positive(self.depth, 'depth', 'vgg')
    features = {}
    x = x.astype(self.dtype)
    for i, (n, c) in enumerate(zip(self.stage_sizes, self.widths)):
      for j in range(layers.round_repeats(n, self.depth)):
        x = layers.ConvBN(layers.round_filters(c * self.width), 3,
                          padding='symmetric', batch_norm=self.batch_norm,
                          use_bias=True,
                          dtype=self.dtype, name=f'stage{i + 1}_conv{j + 1}')(
                              x, train=train)
      features[f'stage{i + 1}'] = x
      x = layers.max_pool(x, 2, 2, padding='valid')
    if self.pool_size:
      x = layers.adaptive_avg_pool(x, self.pool_size).reshape(x.shape[0], -1)
    else:
      x = layers.global_avg_pool(x)
    for k in range(2):
      x = nn.relu(nn.Dense(self.fc_width, dtype=self.dtype, name=f'fc{k + 1}')(x))
      x = nn.Dropout(self.dropout, deterministic=not train)(x)
    features['pre_logits'] = x
    return Classifier(self.num_classes, dtype=self.dtype, name='head')(
        x, train=train), features


def keras_rules(model) -> list[spec.Rule]:
  """Keras ``VGG16`` / ``VGG19`` (``block{i}_conv{j}``, ``fc1``, ``fc2``)."""
  if model.batch_norm:
    raise ValueError('Keras VGG has no BatchNorm; import into vgg16 or vgg19')
  rules = [spec.Rule('conv', f'block{i + 1}_conv{j + 1}',
                     f'stage{i + 1}_conv{j + 1}/conv')
           for i, n in enumerate(model.stage_sizes)
           for j in range(layers.round_repeats(n, model.depth))]
  return [*rules, spec.Rule('dense', 'fc1', 'fc1'),
          spec.Rule('dense', 'fc2', 'fc2'),
          spec.Rule('dense', 'predictions', 'head/dense')]


SCALING = spec.Scaling(
    'vgg', 'depth multiplies the 3x3 convolutions of each of the five stages '
    "(rounded up); width multiplies every convolution's channels (multiple "
    'of 8); the 4096-wide classifier is unchanged')
REFERENCE = {'vgg16': spec.Reference(138_357_544, 15_470, 'torchvision'),
             'vgg19': spec.Reference(143_667_240, 19_630, 'torchvision')}
KERAS = {name: spec.Keras(name.upper(), keras_rules, 'caffe')
         for name in ('vgg16', 'vgg19')}

SPECS = tuple(
    spec.ModelSpec(f'{name}{suffix}', VGG,
                   dict(stage_sizes=stages, batch_norm=bool(suffix)),
                   scaling=SCALING,
                   reference=None if suffix else REFERENCE.get(name),
                   keras=None if suffix else KERAS.get(name))
    for suffix in ('', '_bn') for name, stages in STAGES.items())
