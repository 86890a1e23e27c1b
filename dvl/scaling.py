"""Scaling as data: depth, width and resolution multipliers on model configs.

A model config is a mapping with the registry ``name`` and any field
overrides, e.g. ``{'name': 'resnet50'}``. Scaling never edits model code: it
multiplies the model's own ``depth`` and ``width`` fields (every scalable
model has them) and returns the input resolution to use. What the two fields
mean for each family is in the model's spec (``semantics(family)``).

Resolutions are rounded to a multiple of ``multiple`` (8 by default) so that
a feature map halves cleanly through the first three stride-2 stages and a
sweep compiles fewer distinct shapes; ``224 × 1.3`` becomes 288, not 291.

Compound scaling (Tan & Le 2019, Eq. 3): ``d = α^φ, w = β^φ, r = γ^φ`` with
``α·β²·γ² ≈ 2``, so the MACs grow by about ``2^φ``.
"""

from typing import Mapping

from dvl import models

def families() -> dict[str, tuple[str, ...]]:
  """Scaling family -> the registered models that scale by its rules."""
  out = {}
  for name, spec in models.MODELS.items():
    if spec.scaling is not None:
      out.setdefault(spec.scaling.family, ())
      out[spec.scaling.family] += (name,)
  return out


def semantics(family_name: str) -> str:
  """What depth and width mean for a scaling family."""
  for spec in models.MODELS.values():
    if spec.scaling is not None and spec.scaling.family == family_name:
      return spec.scaling.semantics
  raise ValueError(f'no scaling family {family_name!r}; the families are '
                   f'{", ".join(families())}')


def family(name: str) -> str:
  """The scaling family of a registered model; raises when unsupported."""
  spec = models.get_spec(name)
  if spec.scaling is None:
    supported = [n for names in families().values() for n in names]
    raise ValueError(f'model {name!r} cannot be scaled (its spec has no '
                     f'scaling rules): the scaling functions support '
                     f'{", ".join(supported)}')
  return spec.scaling.family


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
