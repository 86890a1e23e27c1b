"""ConvNeXt (Liu et al. 2022, "A ConvNet for the 2020s", Table 1 / Sec. 3).

A patchify stem (4×4/4 convolution, LayerNorm), four stages of ConvNeXt
blocks with a downsampling layer (LayerNorm, 2×2/2 convolution) before
stages 2–4, and a head of global average pooling, LayerNorm and a dense
layer. A block is a 7×7 depthwise convolution, LayerNorm, a 1×1 expansion
to 4× the channels, GELU (exact, the erf form), a 1×1 projection back, a
per-channel layer scale initialised to 1e-6 and stochastic depth on the
residual branch, rising linearly from 0 to ``drop_path`` over the blocks.
The 1×1 convolutions are dense layers on the channel axis, as in the
reference code and Keras. Tiny/Small/Base/Large/XLarge are rows of
``CONVNEXT``: blocks and channels per stage, stochastic depth, the Keras
peer and the published cost.

Keras's ``ConvNeXtTiny`` … ``ConvNeXtXLarge`` normalise their input inside
the model (a fixed Normalization with the ImageNet mean and standard
deviation, no trainable weights): the imported model takes the 'torch'
preprocessing, which is the same arithmetic. Keras names its layers after
the model (``convnext_tiny_stage_0_block_0_depthwise_conv``), so a file of
another variant misses the names this one expects and is refused.

Scaling semantics (``dvl.scaling``): ``depth`` multiplies the block count of
each of the four stages (rounded up: Tiny's [3, 3, 9, 3] at depth 2 is
[6, 6, 18, 6]); ``width`` multiplies the channels of every stage (the stem's
and the downsampling layers' outputs, and with them each block's, whose
hidden layer stays at 4×), rounded to a multiple of 8.
"""

import functools
from typing import ClassVar, NamedTuple, Sequence

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from dvl import layers
from dvl.lowering import conv_general_dilated
from dvl.models import scan
from dvl.models import spec
from dvl.models.common import Classifier, check_input, positive


class Variant(NamedTuple):
  """One row of the paper's Sec. 3 / Table 1 and its Keras counterpart."""
  stages: tuple[int, ...]    # blocks per stage
  widths: tuple[int, ...]    # channels per stage
  drop_path: float           # stochastic depth of the last block
  keras: str                 # keras.applications name
  params: int                # Keras's trainable parameters (weights=None)
  macs_g: float              # the paper's FLOPs (MACs), rounded to 0.1 G


# Stochastic depth of the paper's ImageNet-1K recipe (Appendix A.1): 0.1,
# 0.4, 0.5, 0.5 for T/S/B/L; XL, trained there only after ImageNet-22K
# pre-training, keeps L's rate. dvl's exact MACs (convolutions and dense
# layers) are 4,455.5 / 8,683.7 / 15,354.7 / 34,361.4 / 60,921.0 M: -0.99 /
# -0.19 / -0.29 / -0.11 / +0.03% from the paper's rounded figures.
CONVNEXT = {
    'convnext_tiny': Variant((3, 3, 9, 3), (96, 192, 384, 768), 0.1,
                             'ConvNeXtTiny', 28_589_128, 4.5),
    'convnext_small': Variant((3, 3, 27, 3), (96, 192, 384, 768), 0.4,
                              'ConvNeXtSmall', 50_223_688, 8.7),
    'convnext_base': Variant((3, 3, 27, 3), (128, 256, 512, 1024), 0.5,
                             'ConvNeXtBase', 88_591_464, 15.4),
    'convnext_large': Variant((3, 3, 27, 3), (192, 384, 768, 1536), 0.5,
                              'ConvNeXtLarge', 197_767_336, 34.4),
    'convnext_xlarge': Variant((3, 3, 27, 3), (256, 512, 1024, 2048), 0.5,
                               'ConvNeXtXLarge', 350_196_968, 60.9),
}

# The reference code's initialisation of convolutions and dense layers.
_INIT = nn.initializers.truncated_normal(0.02)


def _layer_norm(epsilon: float, dtype, name: str) -> nn.LayerNorm:
  """LayerNorm over the channels (params ``scale``, ``bias``); the variance
  from the centred values, as Keras and the reference compute it."""
  return nn.LayerNorm(epsilon=epsilon, dtype=dtype, use_fast_variance=False,
                      name=name)


class LayerScale(nn.Module):
  """A learned per-channel factor on a residual branch (Touvron et al.
  2021, CaiT), initialised to ``init``."""
  init: float

  @nn.compact
  def __call__(self, x):
    scale = self.param('scale', nn.initializers.constant(self.init),
                       (x.shape[-1],), jnp.float32)
    return x * scale.astype(x.dtype)


class Patchify(nn.Module):
  """A ``patch``×``patch`` convolution of stride ``patch`` with a LayerNorm
  after it (the stem) or before it (a downsampling layer)."""
  features: int
  patch: int
  norm_first: bool = False
  ln_epsilon: float = 1e-6
  dtype: object = jnp.float32

  @nn.compact
  def __call__(self, x):
    norm = _layer_norm(self.ln_epsilon, self.dtype, 'norm')
    if self.norm_first:
      x = norm(x)
    x = nn.Conv(self.features, (self.patch, self.patch),
                (self.patch, self.patch), padding='VALID', kernel_init=_INIT,
                dtype=self.dtype, conv_general_dilated=conv_general_dilated,
                name='conv')(x)
    return x if self.norm_first else norm(x)


class ConvNeXtBlock(nn.Module):
  """7×7 depthwise, LayerNorm, 1×1 to 4×, GELU, 1×1 back, layer scale,
  stochastic depth, residual (paper Fig. 4)."""
  drop_path: float = 0.0
  layer_scale: float = 1e-6
  ln_epsilon: float = 1e-6
  kernel_size: int = 7
  depthwise_impl: str | None = None
  dtype: object = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    channels = x.shape[-1]
    dense = functools.partial(nn.Dense, kernel_init=_INIT, dtype=self.dtype)
    y = layers.DepthwiseConv(self.kernel_size, padding='symmetric',
                             use_bias=True, impl=self.depthwise_impl,
                             dtype=self.dtype, name='depthwise')(x)
    y = _layer_norm(self.ln_epsilon, self.dtype, 'norm')(y)
    y = dense(4 * channels, name='expand')(y)
    y = nn.gelu(y, approximate=False)
    y = dense(channels, name='project')(y)
    if self.layer_scale:
      y = LayerScale(self.layer_scale, name='layer_scale')(y)
    return x + layers.DropPath(self.drop_path, name='drop_path')(y, train=train)


class ConvNeXt(nn.Module):
  """ConvNeXt-T…XL; the defaults are ConvNeXt-T.

  ``layer_scale`` 0 leaves the layer scale out; ``patch_size`` is the stem's
  kernel and stride (4; the 32×32 proxy takes 2).
  """
  stage_sizes: Sequence[int] = CONVNEXT['convnext_tiny'].stages
  widths: Sequence[int] = CONVNEXT['convnext_tiny'].widths
  width: float = 1.0
  depth: float = 1.0
  patch_size: int = 4
  kernel_size: int = 7
  drop_path: float = 0.1
  layer_scale: float = 1e-6
  ln_epsilon: float = 1e-6
  depthwise_impl: str | None = None
  remat: bool = False  # recompute each block's activations (layers.remat)
  scan: bool = False  # repeated blocks as one scanned layer (models.scan)
  num_classes: int = 1000
  dtype: object = jnp.float32

  default_resolution: ClassVar[int] = 224
  min_resolution: ClassVar[int] = 32

  def stages(self) -> list[tuple[int, int]]:
    """(blocks, channels) of each stage after depth and width scaling."""
    return [(layers.round_repeats(n, self.depth),
             layers.round_filters(c * self.width))
            for n, c in zip(self.stage_sizes, self.widths)]

  @nn.compact
  def __call__(self, x, *, train: bool):
    check_input(x, model='convnext', min_resolution=self.min_resolution,
                stride=self.patch_size * 8)
    positive(self.width, 'width', 'convnext')
    positive(self.depth, 'depth', 'convnext')
    common = dict(ln_epsilon=self.ln_epsilon, dtype=self.dtype)
    stages = self.stages()
    rates = np.linspace(0.0, self.drop_path, sum(n for n, _ in stages))
    block = layers.remat(ConvNeXtBlock) if self.remat else ConvNeXtBlock
    features = {}
    x = Patchify(stages[0][1], self.patch_size, name='stem', **common)(
        x.astype(self.dtype))
    features['stem'] = x
    index = 0
    for i, (n, channels) in enumerate(stages):
      if i:
        x = Patchify(channels, 2, norm_first=True,
                     name=f'stage{i + 1}_downsample', **common)(x)
      x = scan.stage(
          block, dict(layer_scale=self.layer_scale,
                      kernel_size=self.kernel_size,
                      depthwise_impl=self.depthwise_impl, **common),
          n, x, train=train, name=f'stage{i + 1}', scan=self.scan,
          rates=rates[index:index + n])
      index += n
      features[f'stage{i + 1}'] = x
    x = layers.global_avg_pool(x)
    x = _layer_norm(self.ln_epsilon, self.dtype, 'head_norm')(x)
    features['pre_logits'] = x
    return Classifier(self.num_classes, dtype=self.dtype, name='head')(
        x, train=train), features


def keras_rules(model, prefix: str) -> list[spec.Rule]:
  """Keras ``ConvNeXt*`` named ``prefix`` (``convnext_tiny``): stages and
  blocks numbered from 0 (``{prefix}_stage_0_block_0_depthwise_conv``);
  the depthwise convolution is a grouped Conv2D, already (7, 7, 1, C)."""
  Rule, k = spec.Rule, prefix + '_'
  rules = [Rule('conv', k + 'stem_conv', 'stem/conv'),
           Rule('layer_norm', k + 'stem_layernorm', 'stem/norm')]
  for i, (n, _) in enumerate(model.stages()):
    if i:
      d = f'stage{i + 1}_downsample/'
      rules += [Rule('layer_norm', f'{k}downsampling_layernorm_{i - 1}',
                     d + 'norm'),
                Rule('conv', f'{k}downsampling_conv_{i - 1}', d + 'conv')]
    for j in range(n):
      b, d = f'{k}stage_{i}_block_{j}_', f'stage{i + 1}_block{j + 1}/'
      rules += [Rule('conv', b + 'depthwise_conv', d + 'depthwise'),
                Rule('layer_norm', b + 'layernorm', d + 'norm'),
                Rule('dense', b + 'pointwise_conv_1', d + 'expand'),
                Rule('dense', b + 'pointwise_conv_2', d + 'project')]
      if model.layer_scale:
        rules.append(Rule('layer_scale', b + 'layer_scale', d + 'layer_scale'))
  return [*rules, Rule('layer_norm', k + 'head_layernorm', 'head_norm'),
          Rule('dense', k + 'head_dense', 'head/dense')]


SCALING = spec.Scaling(
    'convnext', 'depth multiplies the block count of each of the four stages '
    '(rounded up); width multiplies the channels of every stage (stem and '
    'downsampling outputs, each block at 4x inside), rounded to a multiple '
    'of 8',
    # Tiny at a quarter of the width (24-48-96-192) and a third of the
    # depth (1, 1, 3, 1), its stem 2x2/2: a 32x32 image ends on a 2x2 map
    # (a 4x4/4 stem would leave 1x1, where the 7x7 depthwise sees one
    # pixel). XLA's depthwise lowering: on these maps a train step (batch
    # 64, 2-core CPU) takes as long as with the shifted one (1.2 s), whose
    # 49 taps per 7x7 layer took 53 s to compile against 10 s.
    proxy=dict(width=0.25, stage_sizes=(1, 1, 3, 1), patch_size=2,
               drop_path=0.0, depthwise_impl='xla'))

# Activations (M, pycls convention) of timm's definitions (REFERENCE.md).
REFERENCE_ACTIVATIONS_M = dict(convnext_tiny=13.44, convnext_base=28.75)

# The import sets Keras's LayerNorm epsilon, 1e-6 (dvl's default too).
SPECS = tuple(
    spec.ModelSpec(
        name, ConvNeXt,
        dict(stage_sizes=v.stages, widths=v.widths, drop_path=v.drop_path),
        resize='bicubic', scaling=SCALING,
        reference=spec.Reference(
            v.params, round(v.macs_g * 1e3),
            'Liu et al. 2022 (MACs, rounded to 0.1 G) / Keras (params)',
            tolerance=0.01,
            activations_m=REFERENCE_ACTIVATIONS_M.get(name)),
        keras=spec.Keras(v.keras, functools.partial(keras_rules, prefix=name),
                         'torch', dict(ln_epsilon=1e-6)),
        remat=True)
    for name, v in CONVNEXT.items())
