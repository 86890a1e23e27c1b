"""The model-table job: every backbone's parameters, MACs and activations
beside the published figures, or EfficientNet's Table 3
(``config.table = 'table3'``).

Writes ``model_table.md`` and ``model_table.csv`` in the workdir and prints
the markdown table.
"""

import csv
import os

import ml_collections

from dvl import flops, models, reference, scaling
from dvl.models import spec

CONVENTION = (
    'params: trainable parameters (BatchNorm running statistics excluded). '
    'MACs: multiply-accumulates of convolutions and dense layers for one '
    'image, every kernel tap counted. Activations: elements of the output of '
    'every convolution and dense layer for one image (Dollar et al. 2021, '
    'pycls; squeeze-and-excitation and classifier included, BatchNorm, '
    'activation functions, pooling and additions not). XLA MACs: '
    'cost_analysis() flops / 2 of the lowered evaluation step: it leaves out '
    'taps on SAME padding and adds elementwise work (BatchNorm, activations, '
    'pooling, additions) at half a MAC per element; on CPU depthwise '
    'convolutions are lowered as shifted multiply-adds, which XLA counts as '
    'elementwise, padding included.')


def _cost(name: str, fields: dict, side: int, channels: int, with_xla: bool):
  model = models.build_model(name, **fields)
  shape = (side, side, channels)
  cost = flops.count(model, shape)
  xla = flops.xla_macs(model, shape) if with_xla else None
  return cost, xla


def _pct(value, ref):
  return 100.0 * (value - ref) / ref


def _zoo_entries(config):
  """(label, registry name, fields, side, reference Row) of the zoo table."""
  names = list(config.models) or [n for n in models.classifiers()
                                   if n != 'efficientnet']
  for name in names:
    model = models.build_model(name)
    yield (name, name, {}, model.default_resolution,
           models.get_spec(name).reference)
  if 'mobilenet_v1' in names:
    for label, fields, side, macs, params, tol in reference.MOBILENET_V1_TABLES:
      row = spec.Reference(int(params * 1e6), macs, 'paper Tables 4/6/7',
                           tolerance=tol / macs,
                           params_tolerance=0.05 / params)
      yield f'mobilenet_v1 ({label})', 'mobilenet_v1', fields, side, row


def zoo_rows(config) -> list[dict]:
  rows = []
  for label, name, fields, side, ref in _zoo_entries(config):
    channels = models.get_spec(name).channels
    cost, xla = _cost(name, fields, side, channels, config.xla)
    row = {'model': label, 'resolution': side, 'params': cost.params,
           'macs_M': round(cost.macs / 1e6, 2),
           'xla_macs_M': None if xla is None else round(xla / 1e6, 2),
           'activations_M': round(cost.activations / 1e6, 3),
           'ref_params': ref.params if ref else None,
           'ref_macs_M': ref.macs_m if ref else None,
           'ref_activations_M': ref.activations_m if ref else None,
           'macs_dev_pct': None, 'params_dev_pct': None,
           'activations_dev_pct': None,
           'source': ref.source if ref else '', 'ok': None}
    if ref:
      row['macs_dev_pct'] = round(_pct(cost.macs / 1e6, ref.macs_m), 2)
      ok = abs(row['macs_dev_pct']) <= 100 * ref.tolerance
      if ref.params:
        row['params_dev_pct'] = round(_pct(cost.params, ref.params), 3)
        ok = ok and abs(row['params_dev_pct']) <= 100 * ref.params_tolerance
      if ref.activations_m:
        row['activations_dev_pct'] = round(
            _pct(cost.activations / 1e6, ref.activations_m), 2)
        ok = ok and (abs(row['activations_dev_pct'])
                     <= 100 * ref.activations_tolerance)
      row['ok'] = ok
    rows.append(row)
  return rows


def table3_rows(config) -> list[dict]:
  rows = []
  for name, label, (d, w, r), paper_g, top1 in reference.TABLE3:
    if config.models and name not in config.models:
      continue
    scaled, side = scaling.scale({'name': name}, depth=d, width=w,
                                 resolution=r, multiple=config.multiple)
    fields = {k: v for k, v in scaled.items() if k != 'name'}
    cost, xla = _cost(name, fields, side, 3, config.xla)
    rows.append({'baseline': name, 'scaled by': label, 'd': round(d, 3),
                 'w': round(w, 3), 'r': round(r, 3), 'resolution': side,
                 'params': cost.params, 'macs_G': round(cost.macs / 1e9, 3),
                 'xla_macs_G': None if xla is None else round(xla / 1e9, 3),
                 'paper_macs_G': paper_g,
                 'dev_pct': round(_pct(cost.macs / 1e9, paper_g), 1),
                 'paper_top1': top1})
  return rows


def table3_semantics(config) -> str:
  lines = ['Scaling semantics (dvl.scaling):', '']
  for fam in ('mobilenet_v1', 'mobilenet_v2', 'resnet'):
    lines.append(f'- {fam}: {scaling.semantics(fam)}.')
  lines.append(f'- resolution: the 224 input times r, rounded to a multiple '
               f'of {config.multiple} (224 x 1.3 -> 288).')
  lines.append('- The paper defines neither the per-backbone depth/width '
               'rules nor the coefficients of the MobileNetV2 and ResNet-50 '
               'compound rows; dvl uses phi = 2 of alpha=1.2, beta=1.1, '
               'gamma=1.15 there. Deviations are against the paper, whose '
               'MACs are rounded to 0.1 G.')
  return '\n'.join(lines)


def markdown(rows: list[dict]) -> str:
  keys = list(rows[0])
  fmt = lambda v: '—' if v is None else (
      ('yes' if v else 'NO') if isinstance(v, bool) else
      f'{v:,}' if isinstance(v, int) else str(v))
  out = ['| ' + ' | '.join(keys) + ' |', '|' + '---|' * len(keys)]
  out += ['| ' + ' | '.join(fmt(r[k]) for k in keys) + ' |' for r in rows]
  return '\n'.join(out)


def run(config: ml_collections.ConfigDict, workdir: str) -> list[dict]:
  """Builds the table, prints it and writes it to ``workdir``."""
  if config.table not in ('zoo', 'table3'):
    raise ValueError(f"config.table must be 'zoo' or 'table3'; got "
                     f'{config.table!r}')
  unknown = [m for m in config.models if m not in models.MODELS]
  if unknown:
    models.build_model(unknown[0])
  rows = zoo_rows(config) if config.table == 'zoo' else table3_rows(config)
  text = markdown(rows) + '\n\n' + (
      CONVENTION if config.table == 'zoo' else table3_semantics(config))
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, 'model_table.md'), 'w') as f:
    f.write(text + '\n')
  with open(os.path.join(workdir, 'model_table.csv'), 'w', newline='') as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
  print(text)
  return rows
