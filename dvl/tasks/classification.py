"""Image labels (``config.model`` a classifier)."""

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp

from dvl import losses
from dvl.tasks.base import Array, Task, _Summed


@dataclasses.dataclass(frozen=True)
class Classification(_Summed, Task):
  """Image labels: softmax cross-entropy (label smoothing, soft labels of
  mixup and CutMix), top-1 accuracy, test-time views."""
  label_smoothing: float = 0.0
  kind: ClassVar[str] = 'classification'
  score: ClassVar[str] = 'accuracy'
  needs_labels: ClassVar[bool] = True
  pictures: ClassVar[bool] = False
  test_views: ClassVar[bool] = True

  @classmethod
  def build(cls, config, cfg, pipeline) -> 'Classification':
    del cfg, pipeline
    return cls(label_smoothing=config.train.label_smoothing)

  def inputs(self, batch: dict, rng, *, train: bool) -> Array:
    del rng, train
    return batch['image']

  def loss(self, outputs, batch) -> tuple[Array, dict]:
    if 'soft_label' in batch:
      targets = losses.smooth_labels(batch['soft_label'], self.label_smoothing)
      loss = losses.soft_target_cross_entropy(outputs, targets)
    else:
      loss = losses.softmax_cross_entropy(
          outputs, batch['label'], label_smoothing=self.label_smoothing)
    return loss, {'accuracy': losses.accuracy(outputs, batch['label'])}

  def eval_outputs(self, outputs, batch, inputs) -> dict:
    del inputs
    valid = batch['valid'].astype(jnp.float32)
    nll = losses.soft_cross_entropy_per_example(
        outputs, jax.nn.one_hot(batch['label'], outputs.shape[-1]))
    correct = losses.top_k_correct(outputs, batch['label'], 1)
    return {'loss': jnp.sum(nll * valid), 'correct': jnp.sum(correct * valid),
            'count': jnp.sum(valid)}

  def finish(self, acc) -> dict:
    means = self.means(acc)
    return {'loss': means['loss'], 'accuracy': means['correct']}
