"""YOLO v1 boxes (``config.model`` a detector; ``dvl.detection``)."""

import dataclasses
from pathlib import Path
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from dvl import detection, draw, models
from dvl.tasks.base import Array, Task, real_rows


def model_field(config, field: str):
  """A field of ``config.model``, else the registered model's default."""
  defaults = models.model_fields(config.model.name)
  return config.model.get(field, defaults[field])


@dataclasses.dataclass(frozen=True)
class Detection(Task):
  """YOLO v1 boxes: the paper's loss on assigned targets, decoding and
  class-wise NMS, VOC mAP at ``map_iou`` (``dvl.detection``)."""
  num_classes: int
  class_names: tuple
  image_hw: tuple
  grid: int
  boxes_per_cell: int
  score_threshold: float = 0.01
  nms_iou: float = 0.5
  map_iou: float = 0.5
  draw_threshold: float = 0.3
  kind: ClassVar[str] = 'detection'
  score: ClassVar[str] = 'map'
  needs_labels: ClassVar[bool] = True
  input_fields: ClassVar[dict] = {'with_boxes': True}
  checks_annotations: ClassVar[bool] = True

  @classmethod
  def build(cls, config, cfg, pipeline) -> 'Detection':
    return cls(
        num_classes=pipeline.num_classes, class_names=pipeline.class_names,
        image_hw=tuple(pipeline.image_shape[:2]),
        grid=model_field(config, 'grid'),
        boxes_per_cell=model_field(config, 'boxes_per_cell'),
        score_threshold=cfg.score_threshold, nms_iou=cfg.nms_iou,
        map_iou=cfg.map_iou, draw_threshold=cfg.draw_threshold)

  def check_split(self, arrays: dict, where: str) -> None:
    try:
      detection.validate_boxes(arrays['boxes'], arrays['box_label'],
                               image_hw=arrays['image'].shape[1:3],
                               num_classes=self.num_classes)
    except ValueError as err:
      raise ValueError(f'{where}: {err}') from None

  def inputs(self, batch: dict, rng, *, train: bool) -> Array:
    del rng, train
    return batch['image']

  def _shape(self) -> dict:
    return dict(boxes_per_cell=self.boxes_per_cell,
                num_classes=self.num_classes)

  def loss(self, outputs, batch) -> tuple[Array, dict]:
    target = detection.assign_targets(
        batch['boxes'], batch['box_label'], image_hw=self.image_hw,
        grid=self.grid, num_classes=self.num_classes)
    terms = detection.yolo_loss_terms(outputs.astype(jnp.float32), target,
                                      **self._shape())
    return sum(terms.values()), {f'loss_{k}': v for k, v in terms.items()}

  def eval_outputs(self, outputs, batch, inputs) -> dict:
    del inputs
    outputs = outputs.astype(jnp.float32)
    boxes, scores = detection.decode_predictions(
        outputs, image_hw=self.image_hw, **self._shape())
    target = detection.assign_targets(
        batch['boxes'], batch['box_label'], image_hw=self.image_hw,
        grid=self.grid, num_classes=self.num_classes)
    per_image = jax.vmap(lambda p, t: detection.yolo_loss(
        p[None], t[None], **self._shape()))(outputs, target)
    valid = batch['valid'].astype(jnp.float32)
    return {'boxes': boxes, 'scores': scores,
            'loss': jnp.sum(per_image * valid), 'count': jnp.sum(valid)}

  def detections(self, out, batch) -> list:
    """The host-side ``Detections`` of the valid rows of a batch."""
    out = jax.device_get(out)
    return [detection.detect(out['boxes'][i], out['scores'][i],
                             score_threshold=self.score_threshold,
                             iou_threshold=self.nms_iou)
            for i in np.flatnonzero(batch['valid'])]

  def start(self):
    return {'detections': [], 'truths': [], 'loss': 0.0, 'count': 0.0}

  def update(self, acc, out, batch):
    valid = np.flatnonzero(batch['valid'])
    acc['detections'] += self.detections(out, batch)
    acc['truths'] += [(batch['boxes'][i], batch['box_label'][i])
                      for i in valid]
    acc['loss'] += float(out['loss'])
    acc['count'] += float(out['count'])
    return acc

  def finish(self, acc) -> dict:
    mean_ap, ap = detection.mean_average_precision(
        acc['detections'], acc['truths'], num_classes=self.num_classes,
        iou_threshold=self.map_iou)
    results = {'loss': acc['loss'] / max(acc['count'], 1.0), 'map': mean_ap}
    results.update({f'ap_{name}': float(v)
                    for name, v in zip(self.class_names, ap)})
    return results

  def picture_outputs(self, outputs, inputs) -> dict:
    del inputs
    boxes, scores = detection.decode_predictions(
        outputs, image_hw=self.image_hw, **self._shape())
    return {'boxes': boxes, 'scores': scores}

  def draw(self, path, batch, out, class_names) -> Path:
    batch, out = real_rows(batch, out)
    shown = []
    for found in self.detections(out, batch):
      keep = found.scores >= self.draw_threshold
      shown.append(detection.Detections(found.boxes[keep], found.scores[keep],
                                        found.labels[keep]))
    truths = [(b, l) for b, l in zip(batch['boxes'], batch['box_label'])]
    return draw.save_detections(path, batch['image'], shown, truths,
                                class_names=class_names)
