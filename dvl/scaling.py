"""Scaling as data: depth, width and resolution multipliers on model configs.

A model config is a mapping with the registry ``name`` and any field
overrides, e.g. ``{'name': 'resnet50'}``. Scaling never edits model code: it
multiplies the model's own ``depth`` and ``width`` fields (every scalable
model has them) and returns the input resolution to use. What the two fields
mean for each family is in ``SEMANTICS`` (and in each model's docstring).

Resolutions are rounded to a multiple of ``multiple`` (8 by default) so that
a feature map halves cleanly through the first three stride-2 stages and a
sweep compiles fewer distinct shapes; ``224 × 1.3`` becomes 288, not 291.

Compound scaling (Tan & Le 2019, Eq. 3): ``d = α^φ, w = β^φ, r = γ^φ`` with
``α·β²·γ² ≈ 2``, so the MACs grow by about ``2^φ``.
"""

from typing import Mapping

from dvl import models

# family: (registry names, what depth and width mean)
SEMANTICS = {
    'resnet': (('resnet18', 'resnet34', 'resnet50', 'resnet101', 'resnet152'),
               'depth multiplies the block count of each of the four stages '
               '(rounded up); width multiplies every channel count (stem, '
               'bottleneck inner and outer widths), rounded to a multiple of 8'),
    'vgg': (tuple(n for n in models.MODELS if n.startswith('vgg')),
            'depth multiplies the 3x3 convolutions of each of the five stages '
            '(rounded up); width multiplies every convolution\'s channels '
            '(multiple of 8); the 4096-wide classifier is unchanged'),
    'mobilenet_v1': (('mobilenet_v1',),
                     'depth multiplies the block count of each of the five '
                     'width stages 64/128/256/512/1024 (1, 2, 2, 6, 2 blocks; '
                     'rounded up); width is the multiplier alpha on every '
                     'layer (multiple of 8)'),
    'mobilenet_v2': (('mobilenet_v2',),
                     'depth multiplies the repeats of each of the seven '
                     'block-string stages (rounded up); width multiplies the '
                     'stem and every stage (multiple of 8), the 1280 head '
                     'grows but never shrinks'),
    'efficientnet': (tuple(n for n in models.MODELS
                           if n.startswith('efficientnet')),
                     'depth multiplies the repeats of each of the seven '
                     'block-string stages (rounded up); width multiplies the '
                     'stem, every stage and the head (multiple of 8): the TF '
                     "reference's own rule"),
}


def family(name: str) -> str:
  """The scaling family of a registered model; raises when unsupported."""
  for fam, (names, _) in SEMANTICS.items():
    if name in names:
      return fam
  supported = [n for names, _ in SEMANTICS.values() for n in names]
  raise ValueError(f'model {name!r} cannot be scaled: the scaling functions '
                   f'support {", ".join(supported)}')


def round_resolution(resolution: float, multiple: int = 8) -> int:
  """Rounds an input side to the nearest multiple of ``multiple``."""
  if multiple < 1:
    raise ValueError(f'resolution multiple must be >= 1; got {multiple}')
  return max(multiple, int(round(resolution / multiple)) * multiple)


def base_resolution(model_cfg: Mapping) -> int:
  """The reference input side of a model config."""
  fields = {k: v for k, v in model_cfg.items() if k != 'name'}
  return models.build_model(model_cfg['name'], **fields).default_resolution


def scale(model_cfg: Mapping, *, depth: float = 1.0, width: float = 1.0,
          resolution: float = 1.0, multiple: int = 8) -> tuple[dict, int]:
  """Scales a model config by depth, width and resolution multipliers.

  Returns ``(scaled_config, input_resolution)``. The multipliers compose
  with any already in the config. Raises ValueError for a model the scaling
  functions do not support or a multiplier that is not positive.
  """
  for what, value in (('depth', depth), ('width', width),
                      ('resolution', resolution)):
    if not value > 0:
      raise ValueError(f'{what} multiplier must be > 0; got {value}')
  family(model_cfg['name'])
  defaults = models.model_fields(model_cfg['name'])
  out = dict(model_cfg)
  out['depth'] = model_cfg.get('depth', defaults['depth']) * depth
  out['width'] = model_cfg.get('width', defaults['width']) * width
  side = round_resolution(base_resolution(model_cfg) * resolution, multiple)
  if 'resolution' in defaults:
    out['resolution'] = side
  elif 'resolution_multiplier' in defaults:
    out['resolution_multiplier'] = side / 224
  return out, side


def compound(phi: float, alpha: float = 1.2, beta: float = 1.1,
             gamma: float = 1.15) -> tuple[float, float, float]:
  """(depth, width, resolution) multipliers at compound coefficient φ."""
  return alpha ** phi, beta ** phi, gamma ** phi


def flops_ratio(depth: float, width: float, resolution: float) -> float:
  """The nominal MAC growth ``d·w²·r²`` of a scaling."""
  return depth * width ** 2 * resolution ** 2
