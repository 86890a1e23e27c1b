"""The report of a compound-scaling sweep (experiments/scaling_search.py).

    python launch.py --config experiments/scaling_report.py --workdir runs/search

Writes ``report.md``, ``accuracy_vs_macs.png``, ``accuracy_vs_params.png``
and ``search_grid.png`` into the sweep's workdir from its ``results.jsonl``
(``dvl.sweep.report``); it may run while the sweep is still going.
"""

from dvl.config_args import parse_arg


def get_config(arg=None):
  parse_arg(arg)  # takes no arguments
  return parse_arg(None, job='scaling_report')
