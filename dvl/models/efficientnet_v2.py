"""EfficientNetV2 (Tan & Le 2021, "EfficientNetV2: Smaller models and faster
training", Table 4 and Appendix): ``EfficientNet`` with Fused-MBConv
stages (block type ``fr``) before the MBConv ones, expansion 4 in the early
stages, 3×3 kernels only, no stage of stride 1 at 320 channels, a 1280-wide
head.

- S, M, L: the searched and scaled networks of Table 7, each its own block
  strings, at 384/480/480 (8.8/24/53 G MACs in the paper).
- B0–B3: the smaller baseline scaled as EfficientNet is, B1–B3 at
  (width, depth) = (1.0, 1.1), (1.1, 1.2), (1.2, 1.4) and 240/260/300,
  given with the reference code for comparison with EfficientNetV1.

The reference code rounds scaled widths to the nearest multiple of 8
without V1's step up when that loses more than 10%
(``round_min_ratio=0``): B3's first stage keeps 16 channels, not 24. Every
BatchNorm has momentum 0.9. Dropout before the classifier follows the
reference configs (0.2, 0.2, 0.3, 0.3 for B0–B3; 0.2, 0.3, 0.4 for S/M/L;
Keras uses 0.2 for all), drop-connect rises to 0.2 over the blocks.

Scaling semantics (``dvl.scaling``): ``depth`` multiplies every stage's
repeats (rounded up), ``width`` the stem's, every stage's and the head's
channels (nearest multiple of 8). The params of every variant equal
``keras.applications.EfficientNetV2*``'s trainable parameters.
"""

from dvl.models import spec
from dvl.models.efficientnet import TF_BATCHNORM, EfficientNet, stages

EFFICIENTNETV2_B0 = (
    'fr_r1_k3_s1_e1_c16', 'fr_r2_k3_s2_e4_c32', 'fr_r2_k3_s2_e4_c48',
    'ir_r3_k3_s2_e4_c96_se0.25', 'ir_r5_k3_s1_e6_c112_se0.25',
    'ir_r8_k3_s2_e6_c192_se0.25')
EFFICIENTNETV2_S = (
    'fr_r2_k3_s1_e1_c24', 'fr_r4_k3_s2_e4_c48', 'fr_r4_k3_s2_e4_c64',
    'ir_r6_k3_s2_e4_c128_se0.25', 'ir_r9_k3_s1_e6_c160_se0.25',
    'ir_r15_k3_s2_e6_c256_se0.25')
EFFICIENTNETV2_M = (
    'fr_r3_k3_s1_e1_c24', 'fr_r5_k3_s2_e4_c48', 'fr_r5_k3_s2_e4_c80',
    'ir_r7_k3_s2_e4_c160_se0.25', 'ir_r14_k3_s1_e6_c176_se0.25',
    'ir_r18_k3_s2_e6_c304_se0.25', 'ir_r5_k3_s1_e6_c512_se0.25')
EFFICIENTNETV2_L = (
    'fr_r4_k3_s1_e1_c32', 'fr_r7_k3_s2_e4_c64', 'fr_r7_k3_s2_e4_c96',
    'ir_r10_k3_s2_e4_c192_se0.25', 'ir_r19_k3_s1_e6_c224_se0.25',
    'ir_r25_k3_s2_e6_c384_se0.25', 'ir_r7_k3_s1_e6_c640_se0.25')

# name: (blocks, stem width, width, depth, resolution, dropout).
EFFICIENTNETV2 = {
    'efficientnetv2_b0': (EFFICIENTNETV2_B0, 32, 1.0, 1.0, 224, 0.2),
    'efficientnetv2_b1': (EFFICIENTNETV2_B0, 32, 1.0, 1.1, 240, 0.2),
    'efficientnetv2_b2': (EFFICIENTNETV2_B0, 32, 1.1, 1.2, 260, 0.3),
    'efficientnetv2_b3': (EFFICIENTNETV2_B0, 32, 1.2, 1.4, 300, 0.3),
    'efficientnetv2_s': (EFFICIENTNETV2_S, 24, 1.0, 1.0, 384, 0.2),
    'efficientnetv2_m': (EFFICIENTNETV2_M, 24, 1.0, 1.0, 480, 0.3),
    'efficientnetv2_l': (EFFICIENTNETV2_L, 32, 1.0, 1.0, 480, 0.4),
}
# What the variants share and V1 does not.
V2_FIELDS = dict(head_width=1280, bn_momentum=0.9, drop_connect=0.2,
                 round_min_ratio=0.0)


def efficientnetv2_fields(name: str) -> dict:
  """The constructor fields of one row of ``EFFICIENTNETV2``."""
  blocks, stem, width, depth, resolution, dropout = EFFICIENTNETV2[name]
  return dict(blocks=blocks, stem_width=stem, width=width, depth=depth,
              resolution=resolution, dropout=dropout, **V2_FIELDS)


def keras_rules(model) -> list[spec.Rule]:
  """Keras ``EfficientNetV2B0``…``L`` (blocks ``block{stage}{letter}_``;
  a Fused-MBConv's convolutions are ``expand_conv`` and ``project_conv``,
  an MBConv's depthwise one ``dwconv2``)."""
  rules = spec.conv_bn('stem_conv', 'stem_bn', 'stem')
  for i, stage in enumerate(stages(model)):
    for j in range(stage.repeats):
      k, d = f'block{i + 1}{chr(ord("a") + j)}_', f'stage{i + 1}_block{j + 1}'
      if stage.expansion != 1:
        rules += spec.conv_bn(k + 'expand_conv', k + 'expand_bn', d + '/expand')
      if stage.kind == 'ir':
        rules += spec.conv_bn(k + 'dwconv2', k + 'bn', d + '/depthwise',
                              'depthwise')
      if stage.se_ratio:
        rules += [spec.Rule('conv', k + 'se_reduce', d + '/se/reduce'),
                  spec.Rule('conv', k + 'se_expand', d + '/se/expand')]
      rules += spec.conv_bn(k + 'project_conv', k + 'project_bn',
                            d + '/project')
  return [*rules, *spec.conv_bn('top_conv', 'top_bn', 'head_conv'),
          spec.Rule('dense', 'predictions', 'head/dense')]


# Keras's input layers, which hold no weights: B0–B3 rescale to [0, 1] and
# normalise by the ImageNet mean and standard deviation (torch's preset);
# S, M and L map [0, 255] to [-1, 1) by x / 128 - 1.
KERAS_PREPROCESSING = dict(
    b='torch',
    sml=dict(name='keras_efficientnetv2', channel_order='rgb', scale=1 / 128,
             mean=[1.0] * 3, std=[1.0] * 3))
# The CPU proxy: the widths of EfficientNet's (16-24-40 after a 16-wide
# stem, a 128-wide head, two blocks per stage, strides 1, 2, 2: a 32x32
# image ends on a 4x4 map) with V2's block types, two Fused-MBConv stages
# then MBConv with squeeze-excite: 73k params, 4.0M MACs (B0's own first
# four stages at this size: 341k, 8.7M).
PROXY_BLOCKS = ('fr_r2_k3_s1_e1_c16', 'fr_r2_k3_s2_e4_c24',
                'ir_r2_k3_s2_e4_c40_se0.25')
SCALING = spec.Scaling(
    'efficientnetv2', 'depth multiplies the repeats of each block-string '
    'stage (rounded up); width multiplies the stem, every stage and the head '
    "(nearest multiple of 8, without V1's step up): the reference's rule, "
    'B1-B3 being B0 at (w, d) = (1.0, 1.1), (1.1, 1.2), (1.2, 1.4)',
    proxy=dict(blocks=PROXY_BLOCKS, stem_width=16, head_width=128,
               resolution=32, dropout=0.0, drop_connect=0.0))
# Exact trainable params of keras.applications (weights=None, 1000
# classes). MACs (M) of the reference repository's README ("FLOPs",
# multiply-adds, at these resolutions): the paper lists no B0-B3, and its
# Table 7 (PAPER_MACS_M) gives S/M/L figures 5% above, 2% and 6% below every
# count of the released architecture (torchvision's 8.37/24.58/56.08 G
# included), whose params it matches.
REFERENCE = {
    'efficientnetv2_b0': (7_139_704, 720),
    'efficientnetv2_b1': (8_141_052, 1_200),
    'efficientnetv2_b2': (10_096_086, 1_700),
    'efficientnetv2_b3': (14_358_406, 3_000),
    'efficientnetv2_s': (21_458_488, 8_400),
    'efficientnetv2_m': (54_139_356, 24_700),
    'efficientnetv2_l': (118_515_272, 56_300),
}
# Activations (M, pycls convention) of timm's definitions at these
# resolutions (REFERENCE.md).
REFERENCE_ACTIVATIONS_M = dict(efficientnetv2_b0=4.77, efficientnetv2_s=35.77,
                               efficientnetv2_l=157.99)
PAPER_MACS_M = dict(efficientnetv2_s=8_800, efficientnetv2_m=24_000,
                    efficientnetv2_l=53_000)


def _spec(name: str) -> spec.ModelSpec:
  params, macs_m = REFERENCE[name]
  suffix = name.rsplit('_', 1)[1]
  preprocessing = KERAS_PREPROCESSING[
      'b' if suffix.startswith('b') else 'sml']
  return spec.ModelSpec(
      name, EfficientNet, efficientnetv2_fields(name),
      resolution=EFFICIENTNETV2[name][4], resize='bicubic', scaling=SCALING,
      reference=spec.Reference(params, macs_m, 'MACs: reference README; '
                               'params: keras.applications', tolerance=0.01,
                               activations_m=REFERENCE_ACTIVATIONS_M.get(name)),
      keras=spec.Keras(f'EfficientNetV2{suffix.upper()}', keras_rules,
                       preprocessing, TF_BATCHNORM),
      remat=True)


SPECS = tuple(_spec(name) for name in EFFICIENTNETV2)
