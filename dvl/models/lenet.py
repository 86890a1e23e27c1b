"""LeNet-5 (LeCun et al. 1998, "Gradient-based learning applied to document
recognition"), in the form the lecture uses: C1 6@5×5, S2 pooling, C3 16@5×5
fully connected to S2, S4 pooling, F5 120, F6 84, 10 outputs.

61,706 parameters and 0.417 M MACs at 32×32×1 (``../shared/REFERENCE.md``).
MNIST's 28×28 digits are padded to 32×32, as in the paper.
"""

from typing import ClassVar

import flax.linen as nn
import jax.numpy as jnp

from dvl import layers
from dvl.models import spec
from dvl.models.common import Classifier, check_input


class LeNet5(nn.Module):
  """LeNet-5 with a sigmoid or tanh activation and average or max pooling."""
  num_classes: int = 10
  act: str = 'tanh'
  pool: str = 'avg'
  dtype: object = jnp.float32

  default_resolution: ClassVar[int] = 32
  min_resolution: ClassVar[int] = 16

  @nn.compact
  def __call__(self, x, *, train: bool):
    check_input(x, model='lenet5', min_resolution=self.min_resolution,
                stride=4)
    if self.pool not in ('avg', 'max'):
      raise ValueError(f"lenet5: pool must be 'avg' or 'max'; got {self.pool!r}")
    act = layers.get_activation(self.act)
    pool = layers.avg_pool if self.pool == 'avg' else layers.max_pool
    conv = dict(padding='VALID', dtype=self.dtype)
    features = {}
    x = act(nn.Conv(6, (5, 5), name='c1', **conv)(x.astype(self.dtype)))
    features['c1'] = x
    x = pool(x, 2, 2, padding='valid')
    x = act(nn.Conv(16, (5, 5), name='c3', **conv)(x))
    features['c3'] = x
    x = pool(x, 2, 2, padding='valid')
    x = x.reshape(x.shape[0], -1)
    x = act(nn.Dense(120, dtype=self.dtype, name='f5')(x))
    x = act(nn.Dense(84, dtype=self.dtype, name='f6')(x))
    features['pre_logits'] = x
    return Classifier(self.num_classes, dtype=self.dtype, name='head')(
        x, train=train), features


SPECS = (
    spec.ModelSpec(
        'lenet5', LeNet5, channels=1, resolution=32,
        reference=spec.Reference(61_706, 0.417,
                                 'lecture: 61,706 params; 0.417 M MACs')),
)
