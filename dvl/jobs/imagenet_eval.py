"""The ``imagenet_eval`` job: top-1 and top-5 accuracy of imported weights.

    python launch.py --config experiments/imagenet_eval.py:model=efficientnet_b0,checkpoint=runs/b0_imported --workdir runs/b0_eval

Reads ``imagenet2012`` (or another TFDS classification dataset) through
TFDS, prepared in the data dir from the archives in its manual dir, and
evaluates the weights that ``import_weights`` wrote in ``checkpoint`` the
way their source evaluated them:

* a centred square crop of ``side / (side + crop_padding)`` of the shorter
  side (the TF reference's ``crop_padding = 32``: 224 of 256 at 224), offset
  by ``(h - crop + 1) // 2`` as the reference rounds it;
* resized to the model's resolution (B0 224 ... B7 600) with the source's
  method: bicubic for EfficientNet, bilinear for the others;
* the imported preprocessing spec (``dvl.convert.preprocess``) on the 0-255
  pixels, then the model in evaluation mode.

Writes ``eval.json`` in the workdir and prints top-1 and top-5;
``save_predictions`` also writes every image's five best classes and its
label to ``predictions.npz``.
"""

import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from dvl import models
from dvl.convert import imported, preprocess
from dvl.data import datasets, default_input_config

# Evaluation resize method of each source family; crop padding is 32 for all.
CROP_PADDING = 32


def resize_method(model_name: str) -> str:
  """The reference's evaluation resize for a registry name (its spec's)."""
  return models.get_spec(model_name).resize


def centre_crop_resize(image, side: int, crop_padding: int, method: str):
  """One HWC uint8 image as the reference evaluates it, float32 in 0-255."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  shape = tf.shape(image)
  height, width = shape[0], shape[1]
  crop = tf.cast(side / (side + crop_padding) * tf.cast(
      tf.minimum(height, width), tf.float64), tf.int32)
  top = (height - crop + 1) // 2
  left = (width - crop + 1) // 2
  window = image[top:top + crop, left:left + crop]
  return tf.image.resize(tf.cast(window, tf.float32), [side, side],
                         method=method)


def _input_config(config) -> ml_collections.ConfigDict:
  cfg = default_input_config()
  cfg.update(dict(dataset=config.dataset, data_dir=config.data_dir,
                  manual_dir=config.manual_dir))
  return cfg


def load_split(config):
  """``(builder, split)`` of the dataset to evaluate, checked."""
  builder = datasets.load_builder(_input_config(config))
  splits = builder.info.splits  # empty under TFDS's mock data
  if splits and config.split not in splits:
    raise ValueError(f'{config.dataset} has no split {config.split!r}; its '
                     f'splits are {", ".join(splits)}')
  return builder, config.split


def eval_batches(config, builder, side: int, method: str):
  """Batches of ``{'image', 'label', 'valid'}`` numpy arrays, the last one
  padded to ``config.batch_size`` with invalid rows."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  ds = datasets.as_dataset(_input_config(config), builder, config.split,
                           shuffle_files=False)
  if config.max_examples:
    ds = ds.take(config.max_examples)
  ds = ds.map(lambda ex: {
      'image': centre_crop_resize(ex['image'], side, config.crop_padding,
                                  method),
      'label': tf.cast(ex['label'], tf.int32)},
              num_parallel_calls=tf.data.AUTOTUNE)
  size = config.batch_size
  for batch in ds.batch(size).prefetch(2).as_numpy_iterator():
    count = len(batch['label'])
    pad = size - count
    yield {'image': np.pad(batch['image'], ((0, pad), (0, 0), (0, 0),
                                            (0, 0))),
           'label': np.pad(batch['label'], (0, pad)),
           'valid': np.arange(size) < count}


def run(config, workdir: str) -> dict:
  """Evaluates ``config.checkpoint``; see the module docstring."""
  started = time.perf_counter()
  source = imported.load(config.checkpoint)
  name = source.info['model']
  if config.model and config.model != name:
    raise ValueError(f'{config.checkpoint} holds {name}, not {config.model}; '
                     'drop model= or point checkpoint= at its import')
  side = int(source.info['resolution'])
  method = config.resize or resize_method(name)
  spec = source.info['preprocessing']

  @jax.jit
  def top5(variables, images):
    logits, _ = source.model.apply(variables, preprocess.apply(spec, images),
                                   train=False)
    return jax.lax.top_k(logits.astype(jnp.float32), 5)[1]

  builder, _ = load_split(config)
  classes = builder.info.features['label'].num_classes
  if classes != source.model.num_classes:
    raise ValueError(f'{config.checkpoint} predicts '
                     f'{source.model.num_classes} classes but '
                     f'{config.dataset} has {classes}')
  counts = np.zeros(3)  # examples, top-1 hits, top-5 hits
  kept = []  # (top-5 classes, labels) per batch, for predictions.npz
  for batch in eval_batches(config, builder, side, method):
    predicted = np.asarray(top5(source.variables, batch['image']))
    hits = predicted == batch['label'][:, None]
    valid = batch['valid']
    counts += (valid.sum(), hits[valid, 0].sum(), hits[valid].any(1).sum())
    if config.save_predictions:
      kept.append((predicted[valid], batch['label'][valid]))
  if not counts[0]:
    raise ValueError(f'{config.dataset} split {config.split!r} has no '
                     'examples')
  results = dict(
      model=name, checkpoint=str(config.checkpoint), dataset=config.dataset,
      split=config.split, examples=int(counts[0]),
      top1=counts[1] / counts[0], top5=counts[2] / counts[0],
      resolution=side, crop_padding=config.crop_padding, resize=method,
      preprocessing=spec.get('name', 'custom'),
      wall_s=time.perf_counter() - started)
  Path(workdir).mkdir(parents=True, exist_ok=True)
  (Path(workdir) / 'eval.json').write_text(json.dumps(results, indent=2))
  if kept:
    np.savez(Path(workdir) / 'predictions.npz',
             top5=np.concatenate([k[0] for k in kept]),
             label=np.concatenate([k[1] for k in kept]))
  print(f"{name} on {config.dataset} {config.split}: top-1 "
        f"{results['top1']:.4f}, top-5 {results['top5']:.4f} over "
        f"{results['examples']} images ({side}px, {method}, crop padding "
        f'{config.crop_padding})', flush=True)
  return results
