"""Data parallelism: four devices compute what one device computes.

Runs in a subprocess with ``--xla_force_host_platform_device_count=4``, so
the four devices are CPU devices; the steps are the jitted ones the train
job uses (``parallel.compile_steps``), on the same global batch.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from train_runs import REPO

SCRIPT = textwrap.dedent('''
    import json
    import jax
    import ml_collections
    import numpy as np
    from dvl.optim import default_optim_config, make_optimizer
    from dvl.train import parallel, state as state_lib, steps

    assert jax.device_count() == 4, jax.devices()
    model_cfg = ml_collections.ConfigDict(dict(
        name='efficientnet', blocks=('ir_r1_k3_s1_e1_c16_se0.25',
                                     'ir_r1_k3_s2_e6_c24_se0.25'),
        head_width=32, dropout=0.3, drop_connect=0.2))
    model = state_lib.model_from_config(model_cfg, num_classes=6)
    optim = default_optim_config()
    optim.ema_decay = 0.9
    tx, schedule = make_optimizer(optim, steps_per_epoch=10, total_steps=10,
                                  batch_size=16)
    hparams = steps.StepConfig(optim=optim, label_smoothing=0.1)
    rng = np.random.default_rng(0)
    batches = [dict(image=rng.normal(size=(16, 32, 32, 3)).astype(np.float32),
                    label=rng.integers(0, 6, 16).astype(np.int32))
               for _ in range(3)]
    evals = dict(batches[0], valid=np.arange(16) < 11)
    init = lambda: state_lib.init_variables(model, (32, 32, 3),
                                            jax.random.key(0))

    def run(devices):  # the state is donated: each run builds its own
      mesh = parallel.make_mesh(devices)
      train, evaluate = parallel.compile_steps(
          mesh, model=model, tx=tx, schedule=schedule, hparams=hparams)
      state = parallel.replicate(state_lib.create_train_state(
          init(), tx, rng=jax.random.key(1), ema=True), mesh)
      losses = []
      for batch in batches:
        sharded = parallel.put_batch(batch, mesh)
        assert len(sharded['image'].sharding.device_set) == len(devices)
        state, metrics = train(state, sharded)
        losses.append(float(metrics['loss']))
      sums = evaluate(state.eval_variables(), parallel.put_batch(evals, mesh))
      params, stats, ema = jax.device_get(
          (state.params, state.batch_stats, state.ema.params))
      return dict(losses=losses, eval=jax.tree.map(float, sums),
                  params=params, stats=stats, ema=ema)

    one, four = run(jax.devices()[:1]), run(jax.devices())
    diff = lambda a, b: max(jax.tree.leaves(jax.tree.map(
        lambda x, y: float(np.max(np.abs(x - y))), a, b)))
    scale = lambda a: max(float(np.max(np.abs(x))) for x in jax.tree.leaves(a))
    print(json.dumps(dict(
        losses=[one['losses'], four['losses']],
        eval=[one['eval'], four['eval']],
        params=diff(one['params'], four['params']),
        stats=diff(one['stats'], four['stats']),
        ema=diff(one['ema'], four['ema']),
        params_moved=diff(one['params'], jax.device_get(init()['params'])),
        stats_scale=scale(one['stats']))))
''')


@pytest.mark.slow
def test_four_devices_match_one_device_on_the_same_global_batch():
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=4',
             JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='2')
  result = subprocess.run([sys.executable, '-c', SCRIPT], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  out = json.loads(result.stdout.strip().splitlines()[-1])
  one, four = out['losses']
  assert len(set(one)) == 3  # the steps did something
  for a, b in zip(one, four):
    assert abs(a - b) <= 1e-5 * max(1.0, abs(a))
  for key in ('loss', 'correct', 'count'):
    assert abs(out['eval'][0][key] - out['eval'][1][key]) <= 1e-4
  assert out['eval'][0]['count'] == 11  # the padding rows are left out
  assert out['params_moved'] > 1e-3 and out['stats_scale'] > 0.1
  # The model normalises with BatchNorm batch statistics in training: had
  # each device normalised its own 4 examples, the losses above and the
  # running statistics here would differ far beyond float tolerance.
  assert out['params'] <= 1e-5 and out['stats'] <= 1e-5
  assert out['ema'] <= 1e-5
