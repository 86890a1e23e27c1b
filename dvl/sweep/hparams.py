"""A sweep in TensorBoard's HParams dashboard.

    tensorboard --logdir WORKDIR

lists every trial of the sweep in ``WORKDIR`` in the HParams dashboard (its
table, parallel coordinates and scatter plots): the trial's point (α, β, γ,
d, w, r, φ, kind, seed, budget), how far it trained and its status, against
its validation and test accuracy, MACs and parameters.

``WORKDIR/hparams/`` holds the experiment (``hp.hparams_config``, written
once per sweep) and one run per results row, ``WORKDIR/hparams/<trial id>``
(``hp.hparams`` and the metrics at the row's step), written by the driver
when it records the row. A halving rung's row ``<id>@<steps>`` is a run of
its own with ``rung`` true, so a candidate stopped at a rung shows too. A
driver killed between the two writes leaves the run missing; the next run of
the sweep writes every row that has none.

Written with TensorBoard's own protos and event writer (no TensorFlow ops),
so the driver never touches a GPU.
"""

import time
from pathlib import Path

from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.plugins.hparams import api as hp
from tensorboard.summary.writer.event_file_writer import EventFileWriter

DIRECTORY = 'hparams'
# (results column, display name) of each hyper-parameter ...
HPARAMS = (('alpha', 'α'), ('beta', 'β'), ('gamma', 'γ'), ('d', 'd'),
           ('w', 'w'), ('r', 'r'), ('phi', 'φ'), ('kind', 'kind'),
           ('seed', 'seed'), ('budget', 'budget'), ('steps', 'steps'),
           ('rung', 'rung'), ('status', 'status'))
# ... and of each metric.
METRICS = (('val_accuracy', 'val accuracy'),
           ('test_accuracy', 'test accuracy'),
           ('macs', 'MACs'), ('params', 'params'))


def _event(summary, step: int = 0) -> event_pb2.Event:
  return event_pb2.Event(wall_time=time.time(), step=step, summary=summary)


def _write(directory: Path, events: list) -> None:
  writer = EventFileWriter(str(directory))
  try:
    for event in events:
      writer.add_event(event)
  finally:
    writer.close()


def hparams_of(row: dict) -> dict:
  """A results row's hyper-parameters (those it has: no None)."""
  values = {k: row.get(k) for k, _ in HPARAMS}
  values['rung'] = bool(row.get('rung_of'))
  return {k: v for k, v in values.items() if v is not None}


def metrics_of(row: dict) -> dict:
  """A results row's metrics (those it has: a failed trial has none of its
  accuracies)."""
  return {k: float(row[k]) for k, _ in METRICS if row.get(k) is not None}


class HParamsWriter:
  """Writes the rows of the sweep in ``workdir`` as HParams sessions."""

  def __init__(self, workdir):
    self.root = Path(workdir) / DIRECTORY
    if not any(self.root.glob('events.out.tfevents.*')):
      config = hp.hparams_config_pb(
          hparams=[hp.HParam(name, display_name=shown)
                   for name, shown in HPARAMS],
          metrics=[hp.Metric(name, display_name=shown)
                   for name, shown in METRICS])
      _write(self.root, [_event(config)])

  def has(self, trial_id: str) -> bool:
    return any((self.root / trial_id).glob('events.out.tfevents.*'))

  def add(self, row: dict) -> None:
    """Writes ``row``'s run ``hparams/<trial id>``."""
    step = int(row.get('steps') or 0)
    session = hp.hparams_pb(hparams_of(row), trial_id=row['trial'])
    scalars = summary_pb2.Summary(value=[
        summary_pb2.Summary.Value(tag=name, simple_value=value)
        for name, value in metrics_of(row).items()])
    _write(self.root / row['trial'], [_event(session, step),
                                      _event(scalars, step)])

  def add_missing(self, rows) -> None:
    """Writes the rows that have no run yet."""
    for row in rows:
      if not self.has(row['trial']):
        self.add(row)
