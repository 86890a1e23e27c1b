"""The learning-rate range test (Smith 2017) on another experiment's setup.

    python launch.py --config experiments/lr_range.py --workdir runs/lr_range
    python launch.py --config experiments/lr_range.py:base=cifar10 \
        --workdir runs/lr_range_cifar10

Takes the model, data and optimizer of ``experiments/<base>.py`` (default:
LeNet-5 on MNIST, whose loss responds to the rate from the first steps; the
quickstart's shapes sit on a plateau for the first few hundred steps at any
rate, which leaves the test nothing to read), replaces the schedule with an exponential ramp from
``min_lr`` to ``max_lr`` over ``steps`` steps, and writes ``lr_range.csv``
and ``lr_range.png`` with the suggested learning rate (see ``dvl.jobs.lr_range``).

Arguments: ``base`` (an experiment file name), ``min_lr``, ``max_lr``,
``steps``, ``rule`` ('steepest' or 'min_over_10'), ``runlocal``.
"""

import importlib.util
from pathlib import Path

from dvl.config_args import parse_arg
from dvl.jobs.lr_range import default_lr_range_config


def _base_config(name: str, runlocal: bool):
  path = Path(__file__).with_name(f'{name}.py')
  if not path.is_file() or name == 'lr_range':
    choices = sorted(p.stem for p in path.parent.glob('*.py')
                     if p.stem != 'lr_range')
    raise ValueError(f'unknown base experiment {name!r}; choose one of: '
                     f'{", ".join(choices)}')
  spec = importlib.util.spec_from_file_location(f'{name}_experiment', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config('runlocal' if runlocal else None)


def get_config(arg=None):
  arg = parse_arg(arg, base='mnist_lenet5', min_lr=1e-5, max_lr=10.0,
                  steps=200, rule='steepest', runlocal=False)
  config = _base_config(arg.base, arg.runlocal)
  config.job = 'lr_range'
  config.name = f'lr_range_{arg.base}'
  config.lr_range = default_lr_range_config()
  config.lr_range.update(dict(min_lr=arg.min_lr, max_lr=arg.max_lr,
                              steps=arg.steps, rule=arg.rule))
  if arg.runlocal:
    config.lr_range.steps = 30
  return config
