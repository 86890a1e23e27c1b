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
