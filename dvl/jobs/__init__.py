"""The jobs ``launch.py`` runs: one module per job, each with
``run(config, workdir)``; ``config.job`` names one of ``JOBS``.

A job reads its config and writes its workdir; the library it drives lives
elsewhere in ``dvl`` (models, data, training, the sweep). Modules are
imported when their job runs, so a job's dependencies (Keras for the
benchmark's peer, matplotlib for the report) load only then.
"""

import importlib

JOBS = {
    'train': 'dvl.jobs.train',
    'model_table': 'dvl.jobs.model_table',
    'lr_range': 'dvl.jobs.lr_range',
    'import_weights': 'dvl.jobs.import_weights',
    'benchmark': 'dvl.jobs.benchmark',
    'imagenet_eval': 'dvl.jobs.imagenet_eval',
    'visualize': 'dvl.jobs.visualize',
    'scaling_search': 'dvl.jobs.scaling_search',
    'scaling_report': 'dvl.jobs.scaling_report',
    'scaling_table3': 'dvl.jobs.scaling_table3',
}


def run(config, workdir: str):
  """Runs the job ``config.job``; an unknown name lists the jobs."""
  if config.job not in JOBS:
    raise ValueError(f'unknown job {config.job!r}; choose one of: '
                     f'{", ".join(JOBS)}')
  return importlib.import_module(JOBS[config.job]).run(config, workdir)
