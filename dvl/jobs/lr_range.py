"""The learning-rate range test (Smith 2017, "Cyclical learning rates for
training neural networks", Sec. 3.3): job ``lr_range``.

    python launch.py --config experiments/lr_range.py --workdir runs/lr_range

Trains the experiment's model from scratch for ``lr_range.steps`` steps while
the learning rate grows exponentially from ``lr_range.min_lr`` to
``lr_range.max_lr``, recording the loss of every step; stops early once the
loss has clearly diverged. Writes ``lr_range.csv`` (step, lr, loss, smoothed
loss) and ``lr_range.png`` (loss against the learning rate on a log axis) in
the workdir and prints the rate ``dvl.optim.suggest_learning_rate`` suggests.

``config.lr_range`` fields: min_lr, max_lr, steps, rule ('steepest' or
'min_over_10'), beta (loss smoothing), diverge_factor, skip_start (records
left out of the suggestion: the first smoothed losses rest on a handful of
batches, and their noise can look like the steepest descent of the curve).
Everything else is an
ordinary train config: model, input, optim (its optimizer, momentum and
penalties are used; the schedule is replaced), train (seed, precision).
"""

import csv
import os
from pathlib import Path

import jax
import ml_collections
import numpy as np

from dvl.optim import smooth_losses, suggest_learning_rate
from dvl.train import job as job_lib
from dvl.train import loop, parallel


def default_lr_range_config() -> ml_collections.ConfigDict:
  """``config.lr_range`` with its defaults (see the module docstring)."""
  return ml_collections.ConfigDict(dict(
      min_lr=1e-5, max_lr=10.0, steps=200, rule='steepest', beta=0.98,
      diverge_factor=4.0, skip_start=10))


def range_test_config(config) -> ml_collections.ConfigDict:
  """The train config whose schedule is the range test's ramp."""
  out = ml_collections.ConfigDict(config.to_dict())
  out.optim.update(dict(schedule='lr_range', min_lr=config.lr_range.min_lr,
                        learning_rate=config.lr_range.max_lr,
                        lr_scale_by_batch=False, warmup_epochs=0.0,
                        warmup_steps=0))
  out.train.overfit_batches = 0
  return out


def record(job, cfg) -> tuple[list[float], list[float]]:
  """``(lrs, losses)`` of the range test's steps, up to the divergence."""
  state = parallel.replicate(
      job_lib.fresh_state(job.config, job.model, job.tx, job.pipeline),
      job.mesh)
  batches = job.pipeline.train_iter(0)
  lrs, losses, best = [], [], np.inf
  for step in range(1, cfg.steps + 1):
    batch = parallel.put_batch(next(batches), job.mesh)
    state, metrics = job.train_step(state, batch)
    lr, loss = jax.device_get((metrics['learning_rate'], metrics['loss']))
    lrs.append(float(lr))
    losses.append(float(loss))
    smoothed = smooth_losses(np.nan_to_num(losses, nan=np.inf), cfg.beta)[-1]
    if not np.isfinite(loss) or smoothed > 2 * cfg.diverge_factor * best:
      print(f'step {step}: the loss diverged at lr {lr:.3g}; stopping')
      break
    best = min(best, smoothed)
    if step % 20 == 0:
      print(f'step {step}/{cfg.steps} lr {lr:.3g} loss {loss:.4g}',
            flush=True)
  return lrs, losses


def write_csv(path: Path, lrs, losses, beta: float) -> None:
  smoothed = smooth_losses(np.nan_to_num(losses, nan=np.inf), beta)
  with open(path, 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(['step', 'lr', 'loss', 'smoothed_loss'])
    for i, row in enumerate(zip(lrs, losses, smoothed)):
      writer.writerow([i + 1, *row])


def plot(path: Path, lrs, losses, suggestion, rule: str, skip: int) -> None:
  """Loss and smoothed loss against the learning rate (log axis)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(7, 4.5))
  ax.plot(lrs, losses, color='0.75', lw=1, label='loss')
  used = slice(skip, skip + suggestion.num_used)
  ax.plot(lrs[used], suggestion.smoothed, color='C0', lw=2,
          label='smoothed loss')
  ax.axvline(suggestion.lr, color='C3', ls='--',
             label=f'suggested lr {suggestion.lr:.3g} ({rule})')
  ax.set_xscale('log')
  finite = np.asarray(losses)[np.isfinite(losses)]
  ax.set_ylim(min(finite) * 0.9, min(max(finite), 3 * finite[0]) * 1.05)
  ax.set_xlabel('learning rate')
  ax.set_ylabel('training loss')
  ax.set_title('Learning-rate range test')
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def run(config, workdir: str) -> float:
  """The ``lr_range`` job; returns the suggested learning rate."""
  loop.prepare_process(config)
  cfg = config.lr_range
  job = job_lib.setup(range_test_config(config), total_steps=cfg.steps)
  print(loop.describe(job), flush=True)
  lrs, losses = record(job, cfg)
  skip = min(cfg.skip_start, max(len(lrs) - 3, 0))
  suggestion = suggest_learning_rate(lrs[skip:], losses[skip:], rule=cfg.rule,
                                     beta=cfg.beta,
                                     diverge_factor=cfg.diverge_factor)
  out = Path(os.path.abspath(workdir))
  out.mkdir(parents=True, exist_ok=True)
  write_csv(out / 'lr_range.csv', lrs, losses, cfg.beta)
  plot(out / 'lr_range.png', lrs, losses, suggestion, cfg.rule, skip)
  (out / 'config.json').write_text(job.config.to_json_best_effort(indent=2))
  print(f'suggested learning rate: {suggestion.lr:.3g} (rule '
        f'{cfg.rule!r}, from steps {skip + 1} to '
        f'{skip + suggestion.num_used} of {len(lrs)}, before the loss '
        f'diverged); wrote {out / "lr_range.csv"} and '
        f'{out / "lr_range.png"}', flush=True)
  return suggestion.lr
