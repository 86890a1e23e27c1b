"""Images per second delivered by the input pipeline.

Usage (from the repository root):
  python -m benchmarks.input_pipeline --dataset shapes --size 64 --augment
  python -m benchmarks.input_pipeline --dataset cifar10_local --augment

``--augment`` turns on the standard augmentation of the dataset kind: flips and
pad-and-random-crop at native resolution, or random-resized crops when
``--resolution`` differs; ``--randaugment`` and ``--mix`` add RandAugment and
mixup/CutMix. The first ``--warmup`` batches (tracing, prefetch fill) are not
timed.
"""

import argparse
import time

from dvl.data import default_input_config
from dvl.data import make_pipeline


def _config(args):
  cfg = default_input_config()
  cfg.dataset, cfg.batch_size = args.dataset, args.batch_size
  cfg.data_dir, cfg.resolution = args.data_dir, args.resolution
  cfg.shapes.update(dict(image_size=args.size, num_train=args.num_train))
  if args.augment:
    cfg.augment.hflip = True
    cfg.augment.crop = 'inception' if args.resolution else 'pad_crop'
  if args.randaugment:
    cfg.augment.randaugment_layers = 2
  if args.mix:
    cfg.augment.update(dict(mixup_alpha=0.2, cutmix_alpha=1.0))
  return cfg


def images_per_second(pipeline, steps, warmup):
  """Times ``steps`` training batches after ``warmup`` untimed ones."""
  batches = pipeline.train_iter(0)
  for _ in range(warmup):
    next(batches)
  start = time.perf_counter()
  for _ in range(steps):
    next(batches)
  return steps * pipeline.batch_size / (time.perf_counter() - start)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--dataset', default='shapes')
  parser.add_argument('--data_dir', default=None)
  parser.add_argument('--size', type=int, default=64, help='shapes side')
  parser.add_argument('--num_train', type=int, default=10_000,
                      help='shapes training images')
  parser.add_argument('--resolution', type=int, default=None)
  parser.add_argument('--batch_size', type=int, default=128)
  parser.add_argument('--steps', type=int, default=100)
  parser.add_argument('--warmup', type=int, default=10)
  parser.add_argument('--augment', action='store_true')
  parser.add_argument('--randaugment', action='store_true')
  parser.add_argument('--mix', action='store_true')
  args = parser.parse_args()
  start = time.perf_counter()
  pipeline = make_pipeline(_config(args), seed=0)
  ready = time.perf_counter() - start
  rate = images_per_second(pipeline, args.steps, args.warmup)
  print(f'{args.dataset} {pipeline.image_shape} batch {args.batch_size} '
        f'augment={args.augment} randaugment={args.randaugment} '
        f'mix={args.mix}: {rate:,.0f} images/s (pipeline ready in {ready:.1f}s)')


if __name__ == '__main__':
  main()
