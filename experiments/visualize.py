"""Feature visualisation of a trained classifier (Zeiler & Fergus 2014).

    python launch.py --config experiments/cifar10.py:model=resnet18 --workdir runs/r18
    python launch.py --config experiments/visualize.py:run=runs/r18 --workdir runs/viz

Writes ``filters.png`` (the first layer's filters) and, per chosen layer,
``activations_<layer>.png`` (test images beside the maps of that layer's most
active channels) into the workdir; see ``dvl.jobs.visualize``.

Arguments: ``run`` (a training run's workdir), ``layers`` (feature names
joined by '+', e.g. ``stem+stage1``; default every stem and stage map),
``images`` (rows), ``channels`` (maps per image).
"""

import ml_collections

from dvl.config_args import parse_arg


def get_config(arg=None):
  arg = parse_arg(arg, run='', layers='', images=4, channels=8)
  config = ml_collections.ConfigDict()
  config.job = 'visualize'
  config.run = arg.run
  config.step = ml_collections.config_dict.placeholder(int)
  config.layers = arg.layers.replace('+', ',')
  config.images = arg.images
  config.channels = arg.channels
  return config
