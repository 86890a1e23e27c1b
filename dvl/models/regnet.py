"""RegNetX and RegNetY (Radosavovic et al. 2020, "Designing Network Design
Spaces", Sec. 3.3 and Appendix; the twelve sizes of each, 200MF to 32GF).

A RegNet is five numbers, not a table of widths: the initial width ``w0``,
the slope ``wa``, the width multiplier ``wm``, the block count ``d`` and the
group width ``g`` (bottleneck ratio 1). ``generate`` turns them into four
stages by the paper's quantized-linear rule: block ``j`` wants the width
``u_j = w0 + wa·j``; ``s_j = round(log(u_j / w0) / log(wm))`` snaps it to
``w0·wm^s_j``, rounded to a multiple of 8; consecutive blocks of one width
form a stage. ``compatible`` then makes each stage's width a multiple of its
group width (and a group no wider than its stage). RegNetX-200MF comes out
as depths [1, 1, 4, 7], widths [24, 56, 152, 368], group width 8.

The network: a 3×3/2 stem of 32 channels; four stages whose first block has
stride 2 (in its 3×3 grouped convolution, with a 1×1 + BatchNorm projection
shortcut); global average pooling and a dense layer. A block is 1×1, 3×3
grouped (``width / g`` groups), 1×1, each with BatchNorm, ReLU after the
first two and after the residual addition. RegNetY adds squeeze-and-
excitation after the 3×3, its bottleneck a quarter of the block's *input*
width (``round(0.25 · w_in)``), ReLU then sigmoid.

Scaling semantics (``dvl.scaling``): ``depth`` multiplies the block count of
each of the four generated stages (rounded up); ``width`` multiplies the
stem's and every stage's width (rounded to a multiple of 8), after which
each stage is made compatible with the group width again: the group width
is not scaled, so a wider stage has more groups, and a stage narrower than
its group width becomes one group.
"""

import dataclasses
import math
from typing import ClassVar, Sequence

import flax.linen as nn
import jax.numpy as jnp

from dvl import layers
from dvl.models import scan
from dvl.models import spec
from dvl.models.common import Classifier, check_input, positive

# Multiple that the paper's rule rounds every width to.
QUANTUM = 8
NUM_STAGES = 4

# Suffix: (w0, wa, wm, d, group width), the paper's Appendix / pycls's
# configs/dds_baselines. RegNetY adds squeeze-excite 0.25.
REGNETX = {
    '002': (24, 36.44, 2.49, 13, 8),
    '004': (24, 24.48, 2.54, 22, 16),
    '006': (48, 36.97, 2.24, 16, 24),
    '008': (56, 35.73, 2.28, 16, 16),
    '016': (80, 34.01, 2.25, 18, 24),
    '032': (88, 26.31, 2.25, 25, 48),
    '040': (96, 38.65, 2.43, 23, 40),
    '064': (184, 60.83, 2.07, 17, 56),
    '080': (80, 49.56, 2.88, 23, 120),
    '120': (168, 73.36, 2.37, 19, 112),
    '160': (216, 55.59, 2.1, 22, 128),
    '320': (320, 69.86, 2.0, 23, 168),
}
REGNETY = {
    '002': (24, 36.44, 2.49, 13, 8),
    '004': (48, 27.89, 2.09, 16, 8),
    '006': (48, 32.54, 2.32, 15, 16),
    '008': (56, 38.84, 2.4, 14, 16),
    '016': (48, 20.71, 2.65, 27, 24),
    '032': (80, 42.63, 2.66, 21, 24),
    '040': (96, 31.41, 2.24, 22, 64),
    '064': (112, 33.22, 2.27, 25, 72),
    '080': (192, 76.82, 2.19, 17, 56),
    '120': (168, 73.36, 2.37, 19, 112),
    '160': (200, 106.23, 2.48, 18, 112),
    '320': (232, 115.89, 2.53, 20, 232),
}
SE_RATIO = 0.25


@dataclasses.dataclass(frozen=True)
class Stage:
  """One stage: its blocks' width, how many blocks, their group width."""
  width: int
  depth: int
  group_width: int


def _check_parameters(w0, wa, wm, d, group_width):
  where = f'regnet (w0={w0}, wa={wa}, wm={wm}, d={d}, g={group_width})'
  if not (isinstance(d, int) and d >= 1):
    raise ValueError(f'{where}: d is the number of blocks, a whole number '
                     f'(at least one per stage); got {d!r}')
  if not (isinstance(w0, int) and w0 > 0 and w0 % QUANTUM == 0):
    raise ValueError(f'{where}: w0 must be a positive multiple of {QUANTUM} '
                     f'(the rule quantizes every width to multiples of '
                     f'{QUANTUM}, w0 among them); got {w0!r}, e.g. use '
                     f'{max(QUANTUM, round(w0 / QUANTUM) * QUANTUM)}')
  if not wa > 0:
    raise ValueError(f'{where}: the slope wa must be > 0 (the widths grow '
                     f'linearly from w0); got {wa}')
  if not wm > 1:
    raise ValueError(f'{where}: the width multiplier wm must be > 1 (stage '
                     f'widths are w0·wm^s, s = log(u/w0)/log(wm)); got {wm}, '
                     'e.g. use 2.0 or more, as the paper does')
  if not (isinstance(group_width, int) and group_width >= 1):
    raise ValueError(f'{where}: the group width g must be a whole number '
                     f'>= 1; got {group_width!r}')


def generate(w0: int, wa: float, wm: float, d: int,
             group_width: int) -> tuple[Stage, ...]:
  """The paper's quantized-linear stages (Sec. 3.3, Eqs. 2-4).

  Raises ValueError, saying which parameter to change, for a parameter set
  that makes no four-stage RegNet (``wm <= 1``, ``w0`` not a multiple of 8,
  a ``d`` or ``wa`` that leaves a stage empty or makes a fifth).
  """
  _check_parameters(w0, wa, wm, d, group_width)
  widths = []
  for j in range(d):
    s = round(math.log((w0 + wa * j) / w0) / math.log(wm))
    widths.append(int(round(w0 * wm ** s / QUANTUM)) * QUANTUM)
  stage_widths = sorted(set(widths))
  depths = [widths.count(w) for w in stage_widths]
  if len(stage_widths) != NUM_STAGES:
    fix = ('raise d or wa, or lower wm' if len(stage_widths) < NUM_STAGES
           else 'lower d or wa, or raise wm')
    raise ValueError(
        f'regnet (w0={w0}, wa={wa}, wm={wm}, d={d}): the rule gives '
        f'{len(stage_widths)} stage(s) (widths {stage_widths}, depths '
        f'{depths}) but a RegNet has {NUM_STAGES}, each of at least one '
        f'block: {fix}')
  return tuple(compatible(Stage(w, n, group_width))
               for w, n in zip(stage_widths, depths))


def compatible(stage: Stage) -> Stage:
  """``stage`` with a group width no larger than its width and a width that
  is a whole number of groups (the nearest, at least one)."""
  g = min(stage.group_width, stage.width)
  return Stage(max(g, int(round(stage.width / g)) * g), stage.depth, g)


def scale_stages(stages: Sequence[Stage], *, width: float,
                 depth: float) -> tuple[Stage, ...]:
  """The stages under the ``width`` and ``depth`` multipliers (module doc)."""
  return tuple(compatible(Stage(
      layers.round_filters(s.width * width, QUANTUM),
      layers.round_repeats(s.depth, depth), s.group_width)) for s in stages)


class Bottleneck(nn.Module):
  """The X block (paper Fig. 4, bottleneck ratio 1): 1×1, 3×3 grouped with
  the stride, optional squeeze-excite (Y), 1×1, then the residual."""
  features: int
  strides: int
  group_width: int
  se_ratio: float = 0.0
  zero_init_residual: bool = True
  bn_momentum: float = 0.9
  bn_epsilon: float = 1e-5
  dtype: object = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    conv = dict(padding='symmetric', bn_momentum=self.bn_momentum,
                bn_epsilon=self.bn_epsilon, dtype=self.dtype)
    w_in, w = x.shape[-1], self.features
    y = layers.ConvBN(w, 1, name='conv1', **conv)(x, train=train)
    y = layers.ConvBN(w, 3, self.strides, groups=w // self.group_width,
                      name='conv2', **conv)(y, train=train)
    if self.se_ratio:
      y = layers.SqueezeExcite(int(round(w_in * self.se_ratio)), act='relu',
                               dtype=self.dtype, name='se')(y)
    y = layers.ConvBN(w, 1, act=None, zero_init_bn=self.zero_init_residual,
                      name='conv3', **conv)(y, train=train)
    if w_in != w or self.strides != 1:
      x = layers.ConvBN(w, 1, self.strides, act=None, name='downsample',
                        **conv)(x, train=train)
    return layers.relu(x + y)


class RegNet(nn.Module):
  """A RegNet from its five parameters (defaults: RegNetX-200MF).

  ``w0, wa, wm, d, group_width`` are the paper's (``d``: blocks in all;
  ``depth`` and ``width`` are the compound-scaling multipliers); ``strides``
  are the four stages' (the 32×32 proxy keeps its maps larger).
  """
  w0: int = 24
  wa: float = 36.44
  wm: float = 2.49
  d: int = 13
  group_width: int = 8
  se_ratio: float = 0.0
  stem_width: int = 32
  strides: Sequence[int] = (2, 2, 2, 2)
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

  def __post_init__(self):
    # A parameter set that makes no RegNet fails when the model is built.
    generate(self.w0, self.wa, self.wm, self.d, self.group_width)
    if len(self.strides) != NUM_STAGES:
      raise ValueError(f'regnet: strides needs one stride per stage '
                       f'({NUM_STAGES}); got {tuple(self.strides)}')
    super().__post_init__()

  def stages(self) -> tuple[Stage, ...]:
    """The four stages this model builds, multipliers applied."""
    return scale_stages(
        generate(self.w0, self.wa, self.wm, self.d, self.group_width),
        width=self.width, depth=self.depth)

  @nn.compact
  def __call__(self, x, *, train: bool):
    check_input(x, model='regnet', min_resolution=self.min_resolution,
                stride=2 * math.prod(self.strides))
    positive(self.width, 'width', 'regnet')
    positive(self.depth, 'depth', 'regnet')
    bn = dict(bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon,
              dtype=self.dtype)
    features = {}
    x = layers.ConvBN(layers.round_filters(self.stem_width * self.width), 3,
                      2, padding='symmetric', name='stem', **bn)(
                          x.astype(self.dtype), train=train)
    features['stem'] = x
    block = layers.remat(Bottleneck) if self.remat else Bottleneck
    for i, (stage, stride) in enumerate(zip(self.stages(), self.strides)):
      x = scan.stage(
          block, dict(features=stage.width, strides=1,
                      group_width=stage.group_width, se_ratio=self.se_ratio,
                      zero_init_residual=self.zero_init_residual, **bn),
          stage.depth, x, train=train, name=f'stage{i + 1}', scan=self.scan,
          first=dict(strides=stride))
      features[f'stage{i + 1}'] = x
    x = layers.global_avg_pool(x)
    features['pre_logits'] = x
    return Classifier(self.num_classes, dtype=self.dtype, name='head')(
        x, train=train), features


def regnet_fields(w0, wa, wm, d, group_width, se_ratio=0.0) -> dict:
  """The module fields of one parameter set."""
  return dict(w0=w0, wa=wa, wm=wm, d=d, group_width=group_width,
              se_ratio=se_ratio)


# The 32x32 proxy: RegNetX-200MF at a quarter width (stem 8, stages 8, 16,
# 40, 96 channels, group width 8) and half depth (1, 1, 2, 4 blocks), its
# first two stages at stride 1 so that after the stride-2 stem a 32x32 image
# ends on a 4x4 map.
SCALING = spec.Scaling(
    'regnet', 'depth multiplies the block count of each of the four '
    'generated stages (rounded up); width multiplies the stem and every '
    'stage width (multiple of 8), after which each width is rounded to a '
    'multiple of the unscaled group width (which shrinks to the width of a '
    'narrower stage), so wider stages have more groups',
    proxy=dict(width=0.25, depth=0.5, strides=(1, 1, 2, 2)))

# Suffix: (exact params, exact flops of pycls's complexity code, flops of
# pycls's MODEL_ZOO in B, activations in M where REFERENCE.md has them).
# The params are timm's, which equal pycls's. pycls's "flops" are
# multiply-adds of the convolutions and dense layers plus one per bias
# (dev/model_complexity.json), so dvl's counts sit a bias count below them
# (X-200MF: 199,039,872 against 199,040,872, the 1,000 of the head).
# MODEL_ZOO rounds them to 0.1 B, which leaves up to 1% between the two
# (X-200MF: 199.0 M exact, "0.2" B; X-4.0GF: 3.96 G exact, "4.0" B): the
# exact figure is the reference, the rounded one stays beside it.
REFERENCE_X = {
    '002': (2_684_792, 199_040_872, 0.2, 2.16),
    '004': (5_157_512, 397_678_568, 0.4, 3.14),
    '006': (6_196_040, 600_891_112, 0.6, None),
    '008': (7_259_656, 799_700_712, 0.8, None),
    '016': (9_190_136, 1_602_850_792, 1.6, 7.93),
    '032': (15_296_552, 3_176_622_952, 3.2, 11.37),
    '040': (22_118_248, 3_964_499_816, 4.0, None),
    '064': (26_209_256, 6_460_292_264, 6.5, None),
    '080': (39_572_648, 7_995_133_416, 8.0, None),
    '120': (46_106_056, 12_086_679_016, 12.1, None),
    '160': (54_278_536, 15_940_756_456, 15.9, None),
    '320': (107_811_560, 31_735_930_792, 31.7, None),
}
REFERENCE_Y = {
    '002': (3_162_996, 199_519_076, 0.2, 2.17),
    '004': (4_344_144, 401_849_056, 0.4, None),
    '006': (6_055_160, 601_227_608, 0.6, None),
    '008': (6_263_168, 797_183_328, 0.8, 5.25),
    '016': (11_202_430, 1_612_087_326, 1.6, 8.04),
    '032': (19_436_338, 3_176_496_162, 3.2, None),
    '040': (20_646_656, 3_973_301_344, 4.0, 12.29),
    '064': (30_583_252, 6_355_221_876, 6.4, None),
    '080': (39_180_068, 7_963_074_196, 8.0, None),
    '120': (51_822_544, 12_092_395_504, 12.1, None),
    '160': (83_590_140, 15_911_534_044, 15.9, None),
    '320': (145_046_770, 32_279_583_362, 32.3, 30.26),
}
SOURCE = 'pycls dev/model_complexity.json (params = timm)'


def _reference(row) -> spec.Reference:
  params, flops, _, activations = row
  return spec.Reference(params, flops / 1e6, SOURCE, tolerance=0.01,
                        activations_m=activations)


SPECS = tuple(
    spec.ModelSpec(f'regnet{kind}_{size}', RegNet,
                   regnet_fields(*table[size], se_ratio=se_ratio),
                   scaling=SCALING, reference=_reference(refs[size]),
                   remat=True)
    for kind, table, refs, se_ratio in (('x', REGNETX, REFERENCE_X, 0.0),
                                        ('y', REGNETY, REFERENCE_Y, SE_RATIO))
    for size in table)
