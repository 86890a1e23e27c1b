"""GoogLeNet / Inception v1 (Szegedy et al. 2015, "Going deeper with
convolutions", Table 1), without the auxiliary classifiers.

Inception modules have the paper's true 5×5 branch (torchvision uses 3×3
there). Local response normalisation is replaced by BatchNorm after every
convolution (``batch_norm=False`` gives the paper's biased convolutions).
About 6.8 M parameters and 1.5 G MACs at 224×224.
"""

from typing import ClassVar

import flax.linen as nn
import jax.numpy as jnp

from dvl import layers
from dvl.models import spec
from dvl.models.common import Classifier, check_input

# Table 1: #1×1, #3×3 reduce, #3×3, #5×5 reduce, #5×5, pool proj.
INCEPTION = {
    '3a': (64, 96, 128, 16, 32, 32),
    '3b': (128, 128, 192, 32, 96, 64),
    '4a': (192, 96, 208, 16, 48, 64),
    '4b': (160, 112, 224, 24, 64, 64),
    '4c': (128, 128, 256, 24, 64, 64),
    '4d': (112, 144, 288, 32, 64, 64),
    '4e': (256, 160, 320, 32, 128, 128),
    '5a': (256, 160, 320, 32, 128, 128),
    '5b': (384, 192, 384, 48, 128, 128),
}


class Inception(nn.Module):
  """Four parallel branches concatenated on channels: 1×1; 1×1→3×3;
  1×1→5×5; 3×3 max pooling→1×1."""
  filters: tuple
  batch_norm: bool = True
  dtype: object = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    c1, r3, c3, r5, c5, cp = self.filters

    def conv(f, k, name):
      return layers.ConvBN(f, k, padding='symmetric', dtype=self.dtype,
                           batch_norm=self.batch_norm, name=name)

    b1 = conv(c1, 1, 'b1')(x, train=train)
    b3 = conv(c3, 3, 'b3')(conv(r3, 1, 'b3_reduce')(x, train=train),
                           train=train)
    b5 = conv(c5, 5, 'b5')(conv(r5, 1, 'b5_reduce')(x, train=train),
                           train=train)
    bp = conv(cp, 1, 'pool_proj')(layers.max_pool(x, 3, 1), train=train)
    return jnp.concatenate([b1, b3, b5, bp], axis=-1)


class GoogLeNet(nn.Module):
  """Inception v1 for classification."""
  batch_norm: bool = True
  dropout: float = 0.4
  num_classes: int = 1000
  dtype: object = jnp.float32

  default_resolution: ClassVar[int] = 224
  min_resolution: ClassVar[int] = 32

  @nn.compact
  def __call__(self, x, *, train: bool):
    check_input(x, model='googlenet', min_resolution=self.min_resolution,
                stride=32)
    conv = dict(padding='symmetric', batch_norm=self.batch_norm,
                dtype=self.dtype)
    features = {}
    x = layers.ConvBN(64, 7, 2, name='conv1', **conv)(x.astype(self.dtype),
                                                       train=train)
    x = layers.max_pool(x, 3, 2, padding='same')
    x = layers.ConvBN(64, 1, name='conv2_reduce', **conv)(x, train=train)
    x = layers.ConvBN(192, 3, name='conv2', **conv)(x, train=train)
    features['stem'] = x
    x = layers.max_pool(x, 3, 2, padding='same')
    for stage, names in (('stage1', '3a 3b'), ('stage2', '4a 4b 4c 4d 4e'),
                         ('stage3', '5a 5b')):
      for name in names.split():
        x = Inception(INCEPTION[name], self.batch_norm, self.dtype,
                      name=f'inception{name}')(x, train=train)
      features[stage] = x
      if stage != 'stage3':
        x = layers.max_pool(x, 3, 2, padding='same')
    x = layers.global_avg_pool(x)
    features['pre_logits'] = x
    return Classifier(self.num_classes, self.dropout, self.dtype,
                      name='head')(x, train=train), features


SPECS = (
    # Table 1's "ops" column sums to 1,586 M; the text rounds it to 1.5 G.
    spec.ModelSpec(
        'googlenet', GoogLeNet,
        reference=spec.Reference(6_797_700, 1_586,
                                 'paper Table 1 totals (5x5 branch)',
                                 tolerance=0.05, params_tolerance=0.05)),
)
