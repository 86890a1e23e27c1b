"""EfficientNet's Table 3: scaling MobileNetV1, MobileNetV2 and ResNet-50.

    python launch.py --config experiments/efficientnet_table3.py --workdir runs/table3
    python launch.py --config experiments/efficientnet_table3.py:dataset=cifar10,backbone=mobilenet_v2 --workdir runs/t3

Without a dataset, the MACs column of Tan & Le 2019's Table 3 from dvl's
scaling functions, beside the paper's (the ``model_table`` job's Table 3,
``dvl.jobs.model_table``). With ``dataset=shapes`` or ``dataset=cifar10``, the
rows of one backbone are trained on it through the sweep runner (the
``scaling_table3`` job, ``dvl.jobs.scaling_table3``), each row's d, w, r applied
to the 32x32 baseline of ``experiments/scaling_search.py`` with its
training recipe.

Arguments: ``dataset`` ('' for the MACs table), ``backbone``
(mobilenet_v1, mobilenet_v2 or resnet50), ``runlocal``.
"""


from dvl.config_args import parse_arg, sibling_experiment


def _search_config(arg: str):
  """``experiments/scaling_search.py``'s config: the proxy and its recipe."""
  return sibling_experiment(__file__, 'scaling_search').get_config(arg)


def get_config(arg=None):
  arg = parse_arg(arg, dataset='', backbone='mobilenet_v1', runlocal=False)
  if not arg.dataset:
    config = parse_arg(None, job='model_table', table='table3', models=(),
                       xla=False, multiple=8)
    if arg.runlocal:
      config.models = (arg.backbone,)
    return config
  config = _search_config(f'backbone={arg.backbone},dataset={arg.dataset}'
                          + (',runlocal' if arg.runlocal else ''))
  config.job = 'scaling_table3'
  config.name = f'table3_{arg.backbone}_{arg.dataset}'
  return config
