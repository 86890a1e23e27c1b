"""Train-step throughput of dvl models on whatever backend JAX finds.

    python benchmarks/train_step.py --models efficientnet_b0,resnet50 \
        --batch 256 --resolution 224 --dtype bfloat16

A plain momentum-SGD step (softmax cross-entropy, BatchNorm statistics
updated, parameters donated) in the chosen compute dtype with float32
parameters. Prints images/s, compile time and the achieved FLOP/s, taking
a training step as 3× the forward MACs × 2 flops.
"""

import argparse
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import optax

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dvl import flops, models  # noqa: E402


def make_step(model, tx):
  def loss_fn(params, batch_stats, x, y, key):
    (logits, _), updates = model.apply(
        {'params': params, 'batch_stats': batch_stats}, x, train=True,
        mutable=['batch_stats'], rngs={'dropout': key})
    loss = optax.softmax_cross_entropy_with_integer_labels(
        logits.astype(jnp.float32), y).mean()
    return loss, updates['batch_stats']

  def step(params, batch_stats, opt_state, x, y, key):
    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        params, batch_stats, x, y, key)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), batch_stats, opt_state, loss

  return jax.jit(step, donate_argnums=(0, 1, 2))


def bench(name, batch, side, dtype, steps, **fields):
  model = models.build_model(name, dtype=dtype, **fields)
  macs = flops.count(model, (side, side, 3)).macs
  x = jax.random.normal(jax.random.key(0), (batch, side, side, 3))
  y = jax.random.randint(jax.random.key(1), (batch,), 0, 1000)
  variables = jax.jit(lambda: model.init(jax.random.key(2), x[:1],
                                         train=False))()
  tx = optax.sgd(0.01, momentum=0.9)
  params, stats = variables['params'], variables['batch_stats']
  opt_state = tx.init(params)
  step = make_step(model, tx)
  key = jax.random.key(3)
  start = time.perf_counter()
  params, stats, opt_state, loss = step(params, stats, opt_state, x, y, key)
  loss.block_until_ready()
  compile_s = time.perf_counter() - start
  for _ in range(3):
    params, stats, opt_state, loss = step(params, stats, opt_state, x, y, key)
  loss.block_until_ready()
  start = time.perf_counter()
  for _ in range(steps):
    params, stats, opt_state, loss = step(params, stats, opt_state, x, y, key)
  loss.block_until_ready()
  seconds = (time.perf_counter() - start) / steps
  tflops = 3 * 2 * macs * batch / seconds / 1e12
  print(f'{name:18s} {str(fields):28s} batch {batch:4d} res {side} '
        f'{jnp.dtype(dtype).name:8s} {batch / seconds:9.1f} img/s  '
        f'compile {compile_s:5.1f}s  {tflops:7.2f} TFLOP/s  loss {float(loss):.3f}',
        flush=True)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--models', default='efficientnet_b0,resnet50')
  parser.add_argument('--batch', type=int, default=16)
  parser.add_argument('--resolution', type=int, default=224)
  parser.add_argument('--dtype', default='float32')
  parser.add_argument('--steps', type=int, default=10)
  parser.add_argument('--depthwise', default='',
                      help="compare depthwise impls, e.g. 'xla,shifted'")
  args = parser.parse_args()
  print('backend', jax.default_backend(), jax.devices()[0].device_kind)
  for name in args.models.split(','):
    impls = [i for i in args.depthwise.split(',') if i]
    variants = [dict(depthwise_impl=i) for i in impls] if (
        impls and 'depthwise_impl' in models.model_fields(name)) else [{}]
    for fields in variants:
      bench(name, args.batch, args.resolution, jnp.dtype(args.dtype),
            args.steps, **fields)


if __name__ == '__main__':
  main()
