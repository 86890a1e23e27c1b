"""Scaling strategies beyond FLOPs on the main job's proxy.

    python launch.py --config experiments/scaling_strategies.py --workdir runs/strategies
    python launch.py --config experiments/scaling_strategies.py:match=activations --workdir runs/strategies_acts

The proxy, data and recipe of ``experiments/scaling_search.py`` (three
seeds), without its search and at two epochs instead of three: compound
scaling takes the paper's (α, β, γ) = (1.2, 1.1, 1.15), and at φ = 1, 2, 3
uniform scaling and dWr scaling (A = 0.8; Dollár, Singh & Girshick 2021)
are each matched to the compound row on ``match`` (macs, activations,
params or time). Per method, the saturating law of error against the
matched cost (MACs for time) is fitted on φ = 0, 1, 2 and judged at
φ = 3. The report adds each network's measured step time and the
correlation of step time with MACs and with activations.

The single dimensions are left out and the budget cut to keep both runs
within about an hour on a 2-core CPU: the φ = 3 networks cost about eight
times the baseline's MACs each, and depth alone at φ = 3 builds seven
times its blocks. ``--config.sweep.baselines="('depth', 'width',
'resolution')"`` and ``--config.train.epochs=3`` put them back.

Arguments: ``match`` (default macs), ``runlocal`` (the runlocal proxy, 8
steps a network, two seeds).
"""


from dvl.config_args import parse_arg, sibling_experiment


def _search_config(arg: str):
  """``experiments/scaling_search.py``'s config: the proxy and its recipe."""
  return sibling_experiment(__file__, 'scaling_search').get_config(arg)


def get_config(arg=None):
  arg = parse_arg(arg, match='macs', runlocal=False)
  config = _search_config('runlocal' if arg.runlocal else None)
  config.name = f'scaling_strategies_{arg.match}'
  sweep = config.sweep
  sweep.candidates = ((1.2, 1.1, 1.15),)
  sweep.search = 'grid'
  sweep.max_phi = 3
  sweep.baselines = ()
  if not arg.runlocal:
    config.train.epochs = 2.0
  sweep.strategies = ('uniform', 'dwr:0.8')
  sweep.match = arg.match
  sweep.law.holdout = 3
  sweep.law.cost = arg.match if arg.match != 'time' else 'macs'
  return config
