"""YOLO v1 (Redmon et al. 2016, "You only look once: unified, real-time
object detection", Fig. 3): a convolutional network and two fully connected
layers that predict an ``S×S×(5B + C)`` grid (7×7×30 for Pascal VOC at
448×448).

The paper's network is 24 convolutions (Fig. 3) written below as stage
strings: ``'3x192'`` is a 3×3 convolution with 192 filters, ``'3x1024s2'``
one with stride 2, ``'M'`` a 2×2 max pooling (the ``stages`` field replaces
them, e.g. with a shallower network for small images). Every convolution uses a
leaky ReLU (slope 0.1); ``width`` multiplies the filter counts (rounded to a
multiple of 8) to shrink it. ``batch_norm`` defaults to on: the paper (before
BatchNorm was common) pretrained 20 of the layers on ImageNet for a week;
from scratch the plain 24-layer stack trains poorly, and YOLOv2 reports
+2 mAP from adding BatchNorm. Set it off for the paper's exact layers.

Any registered backbone may replace it (``backbone='resnet18'``): its
deepest ``stageN`` feature map, or the one named by ``feature``, feeds the
head. The head average-pools that map to ``S×S`` when it is larger (ResNet at
448 gives 14×14), flattens it, then ``fc_width`` hidden units (leaky ReLU,
dropout 0.5) and the linear output layer, reshaped to the grid; the output
layout is described in ``dvl.detection``. ``head='conv'`` predicts each cell
from its 3×3 neighbourhood of the grid with shared weights instead; trained
from scratch it learns far sooner (the ``yolo_shapes`` experiment).
"""

import re
from typing import ClassVar, Mapping, Optional, Sequence

import flax.linen as nn
import jax.numpy as jnp

from dvl import layers
from dvl.models import spec
from dvl.models.common import check_input, positive

STAGES = (
    '7x64s2',
    'M 3x192',
    'M 1x128 3x256 1x256 3x512',
    'M ' + '1x256 3x512 ' * 4 + '1x512 3x1024',
    'M ' + '1x512 3x1024 ' * 2 + '3x1024 3x1024s2 3x1024 3x1024',
)
_LAYER = re.compile(r'^(\d+)x(\d+)(?:s(\d+))?$')


def parse_layer(token: str) -> Optional[tuple[int, int, int]]:
  """``'3x1024s2'`` -> ``(3, 1024, 2)``; ``'M'`` (max pooling) -> None."""
  if token == 'M':
    return None
  match = _LAYER.match(token)
  if not match:
    raise ValueError(f"layer {token!r}: write 'KxC' or 'KxCsS' (kernel, "
                     "filters, stride) or 'M' for 2x2 max pooling")
  kernel, filters, stride = match.groups()
  return int(kernel), int(filters), int(stride or 1)


def backbone_stride(stages: Sequence[str]) -> int:
  """The total stride of stage strings: 2 per pooling and per stride."""
  stride = 1
  for token in ' '.join(stages).split():
    layer = parse_layer(token)
    stride *= 2 if layer is None else layer[2]
  return stride


def registered_backbone(parent: nn.Module, name: str,
                        fields: Optional[Mapping]) -> nn.Module:
  """The registered model ``name`` as a headless submodule ``backbone``.

  Imported here, not at the top: ``dvl.models`` imports this module.
  """
  from dvl import models  # pylint: disable=import-outside-toplevel
  model = models.build_model(name, num_classes=0, **dict(fields or {}))
  return model.clone(parent=parent, name='backbone')


class YoloBackbone(nn.Module):
  """The paper's 24 convolutions (Fig. 3); features ``stage1``…``stage5``
  end before each max pooling, ``stage5`` at 1/64 of the input."""
  stages: Sequence[str] = STAGES
  width: float = 1.0
  batch_norm: bool = True
  dtype: object = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    positive(self.width, 'width', 'yolo')
    features = {}
    for i, stage in enumerate(self.stages):
      conv_index = 0
      for token in stage.split():
        layer = parse_layer(token)
        if layer is None:
          x = layers.max_pool(x, 2, 2, padding='valid')
          continue
        kernel, filters, stride = layer
        conv_index += 1
        x = layers.ConvBN(layers.round_filters(filters * self.width), kernel,
                          stride, act='leaky_relu', padding='symmetric',
                          batch_norm=self.batch_norm, dtype=self.dtype,
                          name=f'stage{i + 1}_conv{conv_index}')(x, train=train)
      features[f'stage{i + 1}'] = x
    return x, features


class YOLO(nn.Module):
  """YOLO v1: backbone, ``S×S`` grid, two dense layers, ``S×S×(5B + C)``.

  ``backbone=None`` is the paper's network; a registry name uses that model
  (``backbone_fields`` overrides its fields, e.g. ``{'width': 0.25}``).
  ``head='conv'`` replaces the two dense layers by convolutions over the
  grid (``_conv_head``).
  """
  num_classes: int = 20
  grid: int = 7
  boxes_per_cell: int = 2
  stages: Sequence[str] = STAGES
  backbone: Optional[str] = None
  backbone_fields: Optional[Mapping] = None
  feature: Optional[str] = None
  width: float = 1.0
  batch_norm: bool = True
  fc_width: int = 4096
  dropout: float = 0.5
  head: str = 'dense'
  dtype: object = jnp.float32

  default_resolution: ClassVar[int] = 448

  @nn.compact
  def __call__(self, x, *, train: bool):
    if self.num_classes < 1 or self.grid < 1 or self.boxes_per_cell < 1:
      raise ValueError(
          f'yolo needs num_classes, grid and boxes_per_cell >= 1; got '
          f'{self.num_classes}, {self.grid}, {self.boxes_per_cell}')
    x = x.astype(self.dtype)
    if self.backbone is None:
      stride = backbone_stride(self.stages)
      check_input(x, model='yolo', min_resolution=stride, stride=stride)
      _, features = YoloBackbone(
          stages=self.stages, width=self.width, batch_norm=self.batch_norm,
          dtype=self.dtype, name='backbone')(x, train=train)
    else:
      _, features = registered_backbone(self, self.backbone,
                                        self.backbone_fields)(x, train=train)
    y = layers.adaptive_avg_pool(self._pick(features), self.grid)
    features = {**features, 'grid': y}
    if self.head == 'dense':
      y = self._dense_head(y, features, train=train)
    elif self.head == 'conv':
      y = self._conv_head(y, features, train=train)
    else:
      raise ValueError(f"yolo: head must be 'dense' (the paper's) or 'conv'; "
                       f'got {self.head!r}')
    return y, features

  def _depth(self) -> int:
    return 5 * self.boxes_per_cell + self.num_classes

  def _dense_head(self, y, features, *, train):
    """The paper's head: the grid flattened, ``fc_width`` hidden units,
    then every cell's numbers from one dense layer."""
    y = nn.Dense(self.fc_width, dtype=self.dtype, name='fc1')(
        y.reshape(y.shape[0], -1))
    y = nn.Dropout(self.dropout, deterministic=not train)(
        layers.get_activation('leaky_relu')(y))
    features['pre_logits'] = y
    y = nn.Dense(self.grid * self.grid * self._depth(), dtype=self.dtype,
                 name='fc2')(y)
    return y.reshape(y.shape[0], self.grid, self.grid, self._depth())

  def _conv_head(self, y, features, *, train):
    """A convolutional head: a 3×3 convolution of ``fc_width`` filters
    (BatchNorm, leaky ReLU) over the grid, then a 1×1 convolution to each
    cell's numbers, so a cell is predicted from its neighbourhood with
    shared weights (as YOLOv2 does) instead of from the whole image."""
    y = layers.ConvBN(self.fc_width, 3, 1, act='leaky_relu',
                      batch_norm=self.batch_norm, dtype=self.dtype,
                      name='head_conv')(y, train=train)
    y = nn.Dropout(self.dropout, deterministic=not train)(y)
    features['pre_logits'] = y
    return nn.Conv(self._depth(), (1, 1), dtype=self.dtype, name='head_out')(y)

  def _pick(self, features):
    if self.feature is not None:
      if self.feature not in features:
        raise ValueError(f'yolo: backbone has no feature {self.feature!r}; '
                         f'it has: {", ".join(features)}')
      return features[self.feature]
    stages = sorted((k for k in features if re.fullmatch(r'stage\d+', k)),
                    key=lambda k: int(k[5:]))
    if not stages:
      raise ValueError(f'yolo: backbone returns no stageN features (it has: '
                       f'{", ".join(features)}); name one with feature=')
    return features[stages[-1]]


SPECS = (spec.ModelSpec('yolo_v1', YOLO, task='detection', resolution=448),)
