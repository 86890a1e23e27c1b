"""The model table: params, MACs and activations of every backbone against
the papers.

    python launch.py --config experiments/model_table.py --workdir runs/model_table
    python launch.py --config experiments/model_table.py:table3 --workdir runs/table3

Arguments: ``table3`` (EfficientNet's Table 3 instead of the zoo),
``runlocal`` (four models, no XLA column: seconds), ``xla=false``.
"""

from dvl.config_args import parse_arg


def get_config(arg=None):
  arg = parse_arg(arg, table3=False, runlocal=False, xla=True)
  config = parse_arg(None, job='model_table')
  config.table = 'table3' if arg.table3 else 'zoo'
  # Registry names; empty means every model.
  config.models = ('lenet5', 'resnet18', 'mobilenet_v1', 'efficientnet_b0'
                  ) if arg.runlocal else ()
  if arg.runlocal and arg.table3:
    config.models = ('mobilenet_v1',)
  config.xla = arg.xla and not arg.runlocal
  # Table 3 rounds scaled resolutions to this multiple (dvl.scaling).
  config.multiple = 8
  return config
