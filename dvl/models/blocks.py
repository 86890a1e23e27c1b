"""Architectures as data: the block-string decoder shared by MobileNetV1,
MobileNetV2, EfficientNet and EfficientNetV2.

A stage is one short string of ``_``-separated fields, e.g.
``'ir_r2_k3_s2_e6_c24_se0.25'``:

========  =====================================================
``ir``    block type: ``ir`` inverted residual (MBConv), ``fr``
          fused inverted residual (Fused-MBConv: one ``k×k``
          convolution expands, or with ``e1`` is the whole block),
          ``ds`` depthwise-separable (MobileNetV1)
``rN``    repeats: N blocks in the stage
``kN``    kernel size (depthwise; the fused convolution's in ``fr``)
``sN``    stride of the stage's first block (the others use 1)
``eX``    expansion ratio of an ``ir`` or ``fr`` block (default 1)
``cN``    output channels
``seX``   squeeze-and-excitation ratio of the block input (default 0)
========  =====================================================
"""

import dataclasses
import re

from dvl import layers

BLOCK_TYPES = ('ir', 'fr', 'ds')
_FIELD = re.compile(r'^(r|k|s|e|c|se)(\d+(?:\.\d+)?)$')


@dataclasses.dataclass(frozen=True)
class StageSpec:
  """One decoded stage: ``repeats`` blocks of type ``kind``."""
  kind: str
  repeats: int
  kernel: int
  stride: int
  channels: int
  expansion: float = 1.0
  se_ratio: float = 0.0


def decode(block: str) -> StageSpec:
  """Decodes one stage string; raises ValueError naming the bad field."""
  kind, *fields = block.split('_')
  if kind not in BLOCK_TYPES:
    raise ValueError(f'block string {block!r}: unknown block type {kind!r}; '
                     f'choose one of: {", ".join(BLOCK_TYPES)}')
  values = {}
  for field in fields:
    match = _FIELD.match(field)
    if not match:
      raise ValueError(f'block string {block!r}: cannot read field {field!r}; '
                       'fields are rN, kN, sN, eX, cN and seX')
    values[match.group(1)] = float(match.group(2))
  missing = [f for f in ('r', 'k', 's', 'c') if f not in values]
  if missing:
    raise ValueError(f'block string {block!r} lacks the fields {missing}')
  return StageSpec(kind=kind, repeats=int(values['r']),
                   kernel=int(values['k']), stride=int(values['s']),
                   channels=int(values['c']),
                   expansion=values.get('e', 1.0),
                   se_ratio=values.get('se', 0.0))


def encode(spec: StageSpec) -> str:
  """The inverse of ``decode``."""
  out = f'{spec.kind}_r{spec.repeats}_k{spec.kernel}_s{spec.stride}'
  if spec.kind in ('ir', 'fr'):
    out += f'_e{spec.expansion:g}'
  out += f'_c{spec.channels}'
  if spec.se_ratio:
    out += f'_se{spec.se_ratio:g}'
  return out


def scale_stages(blocks, *, width: float, depth: float, divisor: int = 8,
                 min_ratio: float = 0.9):
  """Decodes ``blocks`` and scales them: ``channels`` by ``width`` (rounded
  with ``layers.round_filters(…, divisor, min_ratio)``) and ``repeats`` by
  ``depth`` (rounded up)."""
  out = []
  for block in blocks:
    spec = decode(block)
    out.append(dataclasses.replace(
        spec,
        channels=layers.round_filters(spec.channels * width, divisor,
                                      min_ratio),
        repeats=layers.round_repeats(spec.repeats, depth)))
  return out
