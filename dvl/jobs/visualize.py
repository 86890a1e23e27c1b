"""The ``visualize`` job: what a trained classifier learned, in pictures.

    python launch.py --config experiments/visualize.py:run=runs/r18 --workdir runs/viz

Draws, from the newest checkpoint of the training run in ``config.run``
(its evaluated weights: the EMA ones when it kept them):

* ``filters.png``: the first layer's filters, each as a small image (colour
  for RGB input), as Krizhevsky et al. (2012, Fig. 3) and Zeiler & Fergus
  (2014, "Visualizing and understanding convolutional networks", Fig. 2)
  show them;
* ``activations_<layer>.png`` for each layer of ``config.layers``: a few
  test images and, beside each, the feature maps of that layer's most active
  channels (by mean activation over those images), so the same channel can
  be followed across images;
* ``visualize.json``: what was drawn (layers, channels, the first layer's
  name and shape, the checkpoint step).

``config.layers`` names entries of the model's ``features`` (``stem``,
``stage1``, …); '' takes every ``stem`` and ``stageN`` map.
"""

import json
import re
from pathlib import Path

import jax
import numpy as np
from flax import traverse_util

from dvl import draw
from dvl.data import make_pipeline
from dvl.train import job as job_lib
from dvl.train import steps, transfer
from dvl.train.state import model_from_config


def first_layer(params: dict, in_channels: int) -> tuple[str, np.ndarray]:
  """``(path, kernel)`` of the first convolution the input meets: the first
  4-D kernel, in the order the model created its parameters, that takes
  ``in_channels`` channels."""
  for path, value in traverse_util.flatten_dict(params, sep='/').items():
    if path.endswith('kernel') and value.ndim == 4 and (
        value.shape[2] == in_channels):
      return path, np.asarray(value)
  raise ValueError(f'the model has no convolution taking {in_channels} input '
                   'channels; the visualize job draws convolutional networks')


def choose_layers(features: dict, wanted: str) -> list[str]:
  """The feature maps to draw: ``wanted`` (comma-separated names) or every
  ``stem`` and ``stageN`` map."""
  maps = {k: v for k, v in features.items() if np.ndim(v) == 4}
  if not wanted:
    stages = sorted((k for k in maps if re.fullmatch(r'stage\d+', k)),
                    key=lambda k: int(k[5:]))
    return ['stem'] * ('stem' in maps) + stages or list(maps)
  names = [n.strip() for n in wanted.split(',') if n.strip()]
  for name in names:
    if name not in maps:
      raise ValueError(f'config.layers: the model has no feature map '
                       f'{name!r}; it has: {", ".join(maps)}')
  return names


def strongest_channels(maps: np.ndarray, count: int) -> list[int]:
  """The ``count`` channels with the highest mean activation."""
  mean = np.asarray(maps, np.float32).mean(axis=(0, 1, 2))
  return [int(c) for c in np.argsort(-mean, kind='stable')[:count]]


def _source(cfg):
  if not cfg.run:
    raise ValueError('config.run is empty: name the workdir of a finished '
                     'training run, e.g. experiments/visualize.py:run=runs/r18')
  source = transfer.source_config(cfg.run)
  if source.run.get('task', 'classification') != 'classification':
    raise ValueError(f'{cfg.run} trained a {source.run.task} model; the '
                     'visualize job draws classifiers')
  variables, step = transfer.load_source_variables(
      cfg.run, cfg.step, job_lib.state_template)
  return source, variables, step


def run(config, workdir: str) -> dict:
  """Draws the pictures of ``config.run`` into ``workdir``."""
  source, variables, step = _source(config)
  model = model_from_config(
      source.model, num_classes=source.run.get('model_classes',
                                               source.run.num_classes))
  pipeline = make_pipeline(source.input, seed=source.train.seed)
  batch = next(pipeline.eval_iter('test'))
  images = batch['image'][:config.images]
  inputs = steps.model_input(images, source.run.get('preprocessing'))
  _, features = jax.jit(lambda v, x: model.apply(v, x, train=False))(
      variables, inputs)
  out = Path(workdir)
  out.mkdir(parents=True, exist_ok=True)
  name, kernel = first_layer(variables['params'], images.shape[-1])
  draw.save_filters(out / 'filters.png', kernel,
                    title=f'{source.model.name}: {name} {kernel.shape}')
  drawn = {}
  for layer in choose_layers(features, config.layers):
    maps = np.asarray(features[layer])
    channels = strongest_channels(maps, config.channels)
    draw.save_activations(out / f'activations_{layer}.png', images, maps,
                          layer=layer, channels=channels)
    drawn[layer] = dict(shape=list(maps.shape[1:]), channels=channels)
  summary = dict(run=str(config.run), step=step, model=source.model.name,
                 first_layer=name, first_layer_shape=list(kernel.shape),
                 layers=drawn)
  (out / 'visualize.json').write_text(json.dumps(summary, indent=2))
  print(f'drew {source.model.name} step {step}: filters.png and '
        f'{len(drawn)} activation grids in {out}', flush=True)
  return summary
