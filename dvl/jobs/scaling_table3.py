"""The ``scaling_table3`` job: the rows of EfficientNet's Table 3, trained.

    python launch.py --config experiments/efficientnet_table3.py:dataset=cifar10 --workdir runs/t3

Table 3 of Tan & Le 2019 scales MobileNetV1, MobileNetV2 and ResNet-50 by
depth, width or resolution alone and by compound scaling, at about the same
MACs. This job trains the rows of ``config.model``'s backbone on the
sweep's dataset through the sweep runner (same results files, executors and
resuming as ``scaling_search``), each row's multipliers applied to the
sweep's baseline at the dataset's resolution, and writes ``table3.md``:
the MACs at 224 pixels of the full-size backbone beside the paper's
(``dvl.jobs.model_table.table3_rows``), the MACs actually trained, and the test
accuracy beside the paper's ImageNet top-1. ``accuracy_vs_macs.png`` plots
the trained rows.
"""

from pathlib import Path

import ml_collections
from absl import logging

from dvl import reference
from dvl.jobs import model_table
from dvl.sweep import analysis, plots, report, results
from dvl.sweep.executors import make_executor
from dvl.sweep.search import Runner
from dvl.sweep.trials import Planner, Trial


def table3_trials(name: str, seeds) -> list[Trial]:
  """One trial per Table 3 row of backbone ``name`` and seed."""
  trials = []
  for backbone, label, (d, w, r), _, _ in reference.TABLE3:
    if backbone == name:
      kind = label.split()[0]
      phi = 0 if kind == 'baseline' else 1
      trials += [Trial(kind, phi, d, w, r, seed, label=label)
                 for seed in seeds]
  return trials


def markdown(name: str, rows: list[dict]) -> str:
  """The Table 3 rows: MACs at 224 against the paper's, and accuracy."""
  full = model_table.table3_rows(ml_collections.ConfigDict(dict(
      models=(name,), multiple=8, xla=False)))
  trained = {p['label']: p for p in analysis.aggregate(rows, 'test_accuracy')}
  lines = ['| scaled by | d | w | r | MACs at 224 (G) | paper MACs (G) | '
           'trained side | trained MACs (M) | test acc (%) | paper top-1 |',
           '|' + '---|' * 10]
  for entry in full:
    label = entry['scaled by']
    p = trained.get(label)
    cells = [label, f'{entry["d"]:g}', f'{entry["w"]:g}', f'{entry["r"]:g}',
             f'{entry["macs_G"]:.3f}', f'{entry["paper_macs_G"]:g}',
             str(p['resolution']) if p else '—',
             f'{p["macs"] / 1e6:.2f}' if p else '—',
             report._mean(p) if p else 'not trained',
             f'{entry["paper_top1"]:g}']
    lines.append('| ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def run(config, workdir: str) -> str:
  """Trains the Table 3 rows of ``config.model.name``; writes table3.md."""
  name = config.model.name
  if name not in {row[0] for row in reference.TABLE3}:
    raise ValueError(f'Table 3 has rows for mobilenet_v1, mobilenet_v2 and '
                     f'resnet50, not {name!r}: choose one of them')
  logging.set_verbosity(logging.WARNING)  # TFDS's INFO lines
  results.check_writable(Path(workdir))
  planner = Planner(config)
  store = results.ResultStore(workdir, config.to_dict())
  plans = [planner.plan(t) for t in table3_trials(name, config.sweep.seeds)]
  executor = make_executor(config.sweep)
  try:
    finished = Runner(store, executor).run(plans)
  finally:
    executor.close()
  if not finished:
    print('stopped; run the same command to resume.', flush=True)
    return ''
  sweep_config, rows = results.load(workdir)
  plots.plot_scaling(rows, sweep_config, 'macs').savefig(
      Path(workdir) / 'accuracy_vs_macs.png')
  text = (f'# EfficientNet Table 3 rows of {name} on '
          f'{config.input.dataset}\n\n' + markdown(name, rows) + '\n\n'
          + model_table.table3_semantics(ml_collections.ConfigDict(
              dict(multiple=8))) + '\n')
  (Path(workdir) / 'table3.md').write_text(text)
  print(text, flush=True)
  return text
