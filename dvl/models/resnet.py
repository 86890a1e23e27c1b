"""ResNet (He et al. 2016, "Deep residual learning for image recognition",
Table 1), v1.5 and v1 in one module.

``stride_in = '3x3'`` (v1.5, torchvision's layout, ``resnet18`` …
``resnet152``) puts the stride of a downsampling bottleneck in its 3×3
convolution; ``stride_in = '1x1'`` (v1, Keras's ``ResNet50`` layout,
``resnet50_v1``) in its first 1×1. Both have the same parameters
(ResNet-50: 25,557,032) but compute different functions, so weights do not
carry over between them; v1 costs the paper's 3.8 G MACs, v1.5 6% more.

Keras's convolutions carry a bias before every BatchNorm; dvl's do not: the
importer folds each bias into the following BatchNorm's moving mean, which
is exact (``BN(conv(x) + b)`` with mean ``m`` equals ``BN(conv(x))`` with
mean ``m - b``). ``resnet50_v1`` takes Keras's BatchNorm epsilon, 1.001e-5.
Padding is symmetric: Keras's ``ZeroPadding2D(3)`` + 7×7 valid stem
convolution is the same computation, and so is its ``ZeroPadding2D(1)`` +
3×3/2 max pooling, because the pooled map comes out of a ReLU (zeros never
exceed it).

Scaling semantics (``dvl.scaling``): ``depth`` multiplies the block count of
each of the four stages (rounded up: ResNet-50's [3, 4, 6, 3] at depth 2 is
[6, 8, 12, 6]); ``width`` multiplies every channel count, the stem's, the
bottlenecks' inner and outer widths (each rounded to a multiple of 8).
"""

from typing import ClassVar, Sequence

import flax.linen as nn
import jax.numpy as jnp

from dvl import layers
from dvl.models import scan
from dvl.models import spec
from dvl.models.common import Classifier, check_input, positive

STAGES = {
    'resnet18': ((2, 2, 2, 2), 'basic'),
    'resnet34': ((3, 4, 6, 3), 'basic'),
    'resnet50': ((3, 4, 6, 3), 'bottleneck'),
    'resnet101': ((3, 4, 23, 3), 'bottleneck'),
    'resnet152': ((3, 8, 36, 3), 'bottleneck'),
}


class ResidualBlock(nn.Module):
  """A basic (two 3×3) or bottleneck (1×1, 3×3, 1×1 ×4) residual block; a
  bottleneck's stride sits in its 3×3 (v1.5) or its first 1×1 (v1)."""
  width: int
  strides: int
  kind: str
  zero_init_residual: bool = True
  stride_in: str = '3x3'
  bn_momentum: float = 0.9
  bn_epsilon: float = 1e-5
  dtype: object = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    conv = dict(padding='symmetric', bn_momentum=self.bn_momentum,
                bn_epsilon=self.bn_epsilon, dtype=self.dtype)
    if self.kind == 'basic':
      out = self.width
      y = layers.ConvBN(out, 3, self.strides, name='conv1', **conv)(x, train=train)
      y = layers.ConvBN(out, 3, act=None, zero_init_bn=self.zero_init_residual,
                        name='conv2', **conv)(y, train=train)
    else:
      out = self.width * 4
      first, middle = ((self.strides, 1) if self.stride_in == '1x1' else
                       (1, self.strides))
      y = layers.ConvBN(self.width, 1, first, name='conv1', **conv)(
          x, train=train)
      y = layers.ConvBN(self.width, 3, middle, name='conv2', **conv)(
          y, train=train)
      y = layers.ConvBN(out, 1, act=None, zero_init_bn=self.zero_init_residual,
                        name='conv3', **conv)(y, train=train)
    if x.shape[-1] != out or self.strides != 1:
      x = layers.ConvBN(out, 1, self.strides, act=None, name='downsample',
                        **conv)(x, train=train)
    return layers.relu(x + y)


class ResNet(nn.Module):
  """ResNet-18…152: a 7×7 stem, max pooling and four residual stages."""
  stage_sizes: Sequence[int] = STAGES['resnet50'][0]
  block: str = 'bottleneck'
  stride_in: str = '3x3'  # '1x1': v1
  stem_width: int = 64
  widths: Sequence[int] = (64, 128, 256, 512)
  width: float = 1.0
  depth: float = 1.0
  zero_init_residual: bool = True
  bn_momentum: float = 0.9
  bn_epsilon: float = 1e-5
  remat: bool = False  # recompute each block's activations (layers.remat)
  scan: bool = False  # repeated blocks as one scanned layer (models.scan)
  num_classes: int = 1000
  dtype: object = jnp.float32

  default_resolution: ClassVar[int] = 224
  min_resolution: ClassVar[int] = 32

  @nn.compact
  def __call__(self, x, *, train: bool):
    check_input(x, model='resnet', min_resolution=self.min_resolution,
                stride=32)
    positive(self.width, 'width', 'resnet')
    positive(self.depth, 'depth', 'resnet')
    if self.block not in ('basic', 'bottleneck'):
      raise ValueError(f"resnet: block must be 'basic' or 'bottleneck'; got "
                       f'{self.block!r}')
    if self.stride_in not in ('3x3', '1x1'):
      raise ValueError("resnet: stride_in must be '3x3' (v1.5) or '1x1' (v1); "
                       f'got {self.stride_in!r}')
    bn = dict(bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon,
              dtype=self.dtype)
    features = {}
    x = layers.ConvBN(layers.round_filters(self.stem_width * self.width), 7, 2,
                      padding='symmetric', name='stem', **bn)(
                          x.astype(self.dtype), train=train)
    features['stem'] = x
    x = layers.max_pool(x, 3, 2, padding='symmetric')
    block = layers.remat(ResidualBlock) if self.remat else ResidualBlock
    for i, (n, c) in enumerate(zip(self.stage_sizes, self.widths)):
      x = scan.stage(
          block, dict(width=layers.round_filters(c * self.width), strides=1,
                      kind=self.block,
                      zero_init_residual=self.zero_init_residual,
                      stride_in=self.stride_in, **bn),
          layers.round_repeats(n, self.depth), x, train=train,
          name=f'stage{i + 1}', scan=self.scan,
          first=dict(strides=2 if i > 0 else 1))
      features[f'stage{i + 1}'] = x
    x = layers.global_avg_pool(x)
    features['pre_logits'] = x
    return Classifier(self.num_classes, dtype=self.dtype, name='head')(
        x, train=train), features


SCALING = spec.Scaling(
    'resnet', 'depth multiplies the block count of each of the four stages '
    '(rounded up); width multiplies every channel count (stem, bottleneck '
    'inner and outer widths), rounded to a multiple of 8')
REFERENCE = {
    'resnet18': spec.Reference(11_689_512, 1_814, 'torchvision'),
    'resnet34': spec.Reference(21_797_672, 3_664, 'torchvision'),
    # Activations (pycls convention) of timm's resnet50, v1.5 as dvl's.
    'resnet50': spec.Reference(25_557_032, 4_089, 'torchvision',
                               activations_m=11.11),
    'resnet101': spec.Reference(44_549_160, 7_801, 'torchvision'),
    'resnet152': spec.Reference(60_192_808, 11_514, 'torchvision'),
}
_V15 = ("Keras's ResNet50/101/152 are ResNet v1, with the stride of a "
        "downsampling block in its first 1x1 convolution; dvl's {name} is "
        'v1.5, with the stride in the 3x3. The architectures differ, so the '
        'weights would compute another function. {hint}')
_HINTS = {'resnet50': 'Import into resnet50_v1 instead (model=resnet50_v1).'}
_OTHER = ('Of the v1 models dvl registers resnet50_v1; '
          "dvl.models.resnet.ResNet(stage_sizes=..., stride_in='1x1') builds "
          'others.')
# Keras's ResNet50 is v1 (stride in the first 1x1 of a block), as dvl's
# resnet50_v1; it stands as resnet50's throughput peer (v1.5: +6% MACs),
# but its weights do not import.
KERAS = {name: spec.Keras(f'ResNet{name[6:]}', peer=name == 'resnet50',
                          no_import=_V15.format(
                              name=name, hint=_HINTS.get(name, _OTHER)))
         for name in ('resnet50', 'resnet101', 'resnet152')}

def keras_rules(model) -> list[spec.Rule]:
  """Keras ``ResNet50`` (``conv{2..5}_block{j}_{0..3}_conv``); every
  convolution bias folds into its BatchNorm."""
  rules = spec.conv_bn('conv1_conv', 'conv1_bn', 'stem', fold=True)
  for i, n in enumerate(model.stage_sizes):
    for j in range(layers.round_repeats(n, model.depth)):
      k, d = f'conv{i + 2}_block{j + 1}_', f'stage{i + 1}_block{j + 1}/'
      if j == 0:
        rules += spec.conv_bn(k + '0_conv', k + '0_bn', d + 'downsample',
                              fold=True)
      for c in (1, 2, 3):
        rules += spec.conv_bn(f'{k}{c}_conv', f'{k}{c}_bn', f'{d}conv{c}',
                              fold=True)
  return [*rules, spec.Rule('dense', 'predictions', 'head/dense')]


_KERAS_BN = dict(bn_epsilon=1.001e-5)
SPECS = (
    *(spec.ModelSpec(name, ResNet, dict(stage_sizes=stages, block=block),
                     scaling=SCALING, reference=REFERENCE[name],
                     keras=KERAS.get(name), remat=True)
      for name, (stages, block) in STAGES.items()),
    # v1 as Keras builds it (stride in the first 1x1): the paper's 3.8 G.
    spec.ModelSpec(
        'resnet50_v1', ResNet,
        dict(stage_sizes=(3, 4, 6, 3), block='bottleneck', stride_in='1x1',
             **_KERAS_BN),
        scaling=SCALING,
        reference=spec.Reference(25_557_032, 3_800,
                                 'ResNet paper Table 1 / Keras'),
        keras=spec.Keras('ResNet50', keras_rules, 'caffe', _KERAS_BN),
        remat=True),
)
