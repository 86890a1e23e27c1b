"""A sweep's results: ``sweep.json``, ``results.jsonl``, ``results.csv``.

Layout of a sweep workdir::

    workdir/sweep.json       the sweep's config and its fingerprint
    workdir/results.jsonl    one JSON object per finished trial (append-only;
                             ``COLUMNS``, the hash of the trial's train
                             config and the sweep's fingerprint)
    workdir/trials.csv       the same rows as a table, rewritten from it
    workdir/results.csv      one line per point: accuracies as means over
                             seeds with their 95% intervals
    workdir/trials/<id>/     each trial's run: config.json, metrics,
                             TensorBoard events, checkpoints, summary.json
    workdir/hparams/<id>/    each row as a TensorBoard HParams session
                             (``dvl.sweep.hparams``)

Only the sweep's driver process writes these files, whatever the executor.
A row is appended as one ``os.write`` of a complete line followed by
``fsync``, so a kill leaves at most a torn last line, which the next open
drops (rewriting the file cleanly). The fingerprint hashes the config minus
the fields that only say where trials run (``FREE_FIELDS``): a workdir
refuses a sweep with any other config rather than mix their results.
"""

import csv
import io
import json
import os
import tempfile
from pathlib import Path

from dvl import fileio
from dvl.sweep.trials import digest

# Fields that change how a sweep runs, not what it computes. ``sweep.seeds``
# is one of them: a trial's id names its seed, so a rerun with more seeds
# keeps every trial already done and trains only the new seeds.
FREE_FIELDS = ('sweep.executor', 'sweep.workers', 'sweep.threads_per_worker',
               'sweep.gpus_per_worker', 'sweep.ray_address', 'sweep.report',
               'sweep.seeds', 'sweep.population', 'sweep.population_memory_gb',
               'sweep.max_retries', 'sweep.compile_ahead',
               'sweep.memory_fraction')
COLUMNS = ('trial', 'kind', 'phi', 'seed', 'label', 'backbone', 'alpha',
           'beta', 'gamma', 'd', 'w', 'r', 'resolution', 'params', 'macs',
           'steps', 'val_accuracy', 'best_val_accuracy', 'test_accuracy',
           'test_loss', 'train_s', 'compile_s', 'wall_s', 'status', 'reason',
           'same_as', 'budget', 'rung_of', 'population', 'population_dir',
           'retries', 'programs', 'activations', 'train_images_per_s',
           'step_bytes', 'peak_bytes', 'match_cost', 'match_value')


def _flatten(tree: dict, prefix: str = '') -> dict:
  out = {}
  for key, value in tree.items():
    name = f'{prefix}{key}'
    if isinstance(value, dict):
      out.update(_flatten(value, name + '.'))
    else:
      out[name] = value
  return out


# Fields left out of the fingerprint while they hold these values, which
# compute what sweeps without them computed: a workdir made before they
# existed is resumed, not refused.
NEUTRAL = {'sweep.strategies': [], 'sweep.match': 'macs',
           'sweep.law.holdout': 0, 'sweep.law.cost': 'macs'}


def fingerprinted(config_dict: dict) -> dict:
  """The config fields the fingerprint covers (flattened, JSON values):
  all but ``FREE_FIELDS``, the ``NEUTRAL`` ones at their neutral values,
  and ``sweep.star.*`` unless ``sweep.search`` is 'star'."""
  flat = {k: json.loads(json.dumps(v, default=str))
          for k, v in _flatten(config_dict).items()}
  star = flat.get('sweep.search') == 'star'
  return {k: v for k, v in flat.items()
          if k not in FREE_FIELDS and NEUTRAL.get(k, object()) != v
          and (star or not k.startswith('sweep.star.'))}


def check_writable(workdir: Path) -> None:
  """Raises ValueError when ``workdir`` cannot be created or written."""
  try:
    workdir.mkdir(parents=True, exist_ok=True)
    fd, probe = tempfile.mkstemp(dir=workdir, prefix='.write-test-')
    os.close(fd)
    os.remove(probe)
  except OSError as error:
    raise ValueError(f'cannot write to the sweep workdir {workdir}: {error}. '
                     'Choose a writable --workdir.') from None


def read_rows(path: Path) -> list[dict]:
  """The rows of ``results.jsonl``; a torn last line is dropped (and the
  file rewritten without it)."""
  if not path.exists():
    return []
  text = path.read_text()
  lines = text.splitlines()
  rows = []
  for i, line in enumerate(lines):
    try:
      rows.append(json.loads(line))
    except json.JSONDecodeError:
      if i != len(lines) - 1:
        raise ValueError(f'{path} line {i + 1} is not JSON and not the last '
                         'line: the file was edited by hand; restore it or '
                         'start a new workdir') from None
  clean = ''.join(json.dumps(r) + '\n' for r in rows)
  if clean != text:
    fileio.write_atomic(path, clean)
  return rows


class ResultStore:
  """The results of the sweep in ``workdir`` (see the module docstring).

  ``config`` is the sweep's whole config as a dict. Opening a workdir that
  holds another config's results raises ValueError naming the differences.
  """

  def __init__(self, workdir, config: dict):
    self.workdir = Path(workdir).absolute()
    check_writable(self.workdir)
    fields = fingerprinted(config)
    self.fingerprint = digest(fields)[:16]
    self._check_or_write(config, fields)
    self.jsonl = self.workdir / 'results.jsonl'
    self.rows = {}
    for row in read_rows(self.jsonl):
      if row.get('sweep') != self.fingerprint:
        raise ValueError(
            f'{self.jsonl} holds trial {row.get("trial")} of another sweep '
            f'config (fingerprint {row.get("sweep")}, this sweep is '
            f'{self.fingerprint}); results of two configs are never mixed. '
            'Use a new --workdir.')
      self.rows.setdefault(row['trial'], row)

  def _check_or_write(self, config: dict, fields: dict) -> None:
    path = self.workdir / 'sweep.json'
    if path.exists():
      stored = json.loads(path.read_text())
      if stored['fingerprint'] != self.fingerprint:
        theirs = fingerprinted(stored['config'])
        keys = sorted(k for k in set(theirs) | set(fields)
                      if theirs.get(k, '<unset>') != fields.get(k, '<unset>'))
        diffs = '; '.join(f'{k}: {theirs.get(k, "<unset>")!r} there, '
                          f'{fields.get(k, "<unset>")!r} here'
                          for k in keys[:6])
        raise ValueError(
            f'{self.workdir} holds a sweep with another config ({diffs}'
            f'{"; ..." if len(keys) > 6 else ""}). Its results would mix '
            'with this sweep\'s: use a new --workdir, or rerun with the '
            f'config saved in {path} to continue that sweep.')
      if stored['config'] != json.loads(json.dumps(config, default=str)):
        # Another seed list or executor: the stored config follows.
        fileio.write_atomic(path, json.dumps(
            {'fingerprint': self.fingerprint, 'config': config}, indent=2,
            default=str) + '\n')
      return
    if (self.workdir / 'results.jsonl').exists():
      raise ValueError(f'{self.workdir} has results.jsonl but no sweep.json, '
                       'so which config wrote it is unknown; use a new '
                       '--workdir')
    fileio.write_atomic(path, json.dumps(
        {'fingerprint': self.fingerprint, 'config': config}, indent=2,
        default=str) + '\n')

  def current(self, seeds) -> list[dict]:
    """The rows of the seeds in ``seeds`` (a sweep rerun with fewer seeds
    reads only those)."""
    seeds = set(seeds)
    return [r for r in self.rows.values() if r['seed'] in seeds]

  def trial_dir(self, trial_id: str) -> Path:
    return self.workdir / 'trials' / trial_id

  def add(self, row: dict) -> None:
    """Appends one finished trial's row (once) and rewrites the CSV."""
    if row['trial'] in self.rows:
      return
    row = {**{k: row.get(k) for k in COLUMNS}, 'content': row.get('content'),
           'sweep': self.fingerprint}
    line = (json.dumps(row) + '\n').encode()
    fd = os.open(self.jsonl, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
      os.write(fd, line)
      os.fsync(fd)
    finally:
      os.close(fd)
    self.rows[row['trial']] = row
    self.write_csv()

  def write_csv(self) -> None:
    """``trials.csv`` (one row per trial) and ``results.csv`` (one row per
    point: its accuracies as means over seeds with 95% intervals)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, extrasaction='ignore')
    writer.writeheader()
    writer.writerows(self.rows.values())
    fileio.write_atomic(self.workdir / 'trials.csv', out.getvalue())
    fileio.write_atomic(self.workdir / 'results.csv',
                        points_csv(list(self.rows.values())))


POINT_COLUMNS = ('kind', 'label', 'phi', 'budget', 'alpha', 'beta', 'gamma',
                 'd', 'w', 'r', 'resolution', 'params', 'macs', 'activations',
                 'train_images_per_s', 'match_cost', 'match_value', 'seeds')


def points_csv(rows: list[dict]) -> str:
  """One line per point of the sweep (seeds pooled, rungs left out):
  each accuracy's mean and 95% CI (``low``, ``high``) over its seeds."""
  from dvl.sweep import analysis
  metrics = ('val_accuracy', 'test_accuracy')
  by_metric = {m: {tuple(p['trials']): p for p in analysis.aggregate(rows, m)}
               for m in metrics}
  columns = list(POINT_COLUMNS) + [f'{m}_{part}' for m in metrics
                                   for part in ('mean', 'low', 'high')]
  columns.append('trials')
  out = io.StringIO()
  writer = csv.DictWriter(out, fieldnames=columns, extrasaction='ignore')
  writer.writeheader()
  for trials, point in by_metric['val_accuracy'].items():
    line = {k: point.get(k) for k in POINT_COLUMNS}
    for m in metrics:
      p = by_metric[m].get(trials)
      if p is not None:
        line.update({f'{m}_mean': p['ci'].mean, f'{m}_low': p['ci'].low,
                     f'{m}_high': p['ci'].high})
    line['trials'] = ' '.join(trials)
    writer.writerow(line)
  return out.getvalue()


def load(workdir) -> tuple[dict, list[dict]]:
  """``(sweep config, rows)`` of an existing sweep workdir, read-only."""
  workdir = Path(workdir)
  path = workdir / 'sweep.json'
  if not path.exists():
    raise ValueError(f'{workdir} holds no sweep (no sweep.json): run the '
                     'scaling_search job with this --workdir first')
  stored = json.loads(path.read_text())
  rows = []
  jsonl = workdir / 'results.jsonl'
  if jsonl.exists():
    for line in jsonl.read_text().splitlines():
      try:
        rows.append(json.loads(line))
      except json.JSONDecodeError:
        pass  # a torn last line: the next search run drops it
  mixed = [r['trial'] for r in rows if r.get('sweep') != stored['fingerprint']]
  if mixed:
    raise ValueError(f'{jsonl} holds rows of another sweep config ({mixed[0]}'
                     ', ...); results of two configs are never mixed')
  return stored['config'], rows
