"""PNG grids for looking at predictions and inside networks, drawn with
matplotlib's object API (no pyplot state, no display needed).

* ``save_detections``: per image, predicted boxes labelled ``class score``
  beside the ground-truth boxes.
* ``save_segmentations``: per image, the image, the predicted mask and the
  true mask, each overlaid on the image.
* ``save_triples``: per example, input, output and target images (denoising,
  colourisation, super-resolution).
* ``save_filters`` and ``save_activations``: a layer's filters, and the
  activation maps of chosen channels for a few images (the ``visualize``
  job).

Images are NHWC (or lists of HWC) arrays; values outside [0, 1] (normalised
inputs) are rescaled per image to [0, 1] for display only.
"""

from pathlib import Path
from typing import Optional, Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

PANEL_INCHES = 2.5


def displayable(image) -> np.ndarray:
  """``image`` as float HWC (or HW for one channel) in [0, 1]."""
  image = np.asarray(image, np.float32)
  if image.ndim == 3 and image.shape[-1] == 1:
    image = image[..., 0]
  lo, hi = float(image.min()), float(image.max())
  if lo < 0 or hi > 1:
    image = (image - lo) / max(hi - lo, 1e-12)
  return image


def class_colors(num_classes: int) -> np.ndarray:
  """``[num_classes, 3]`` distinct RGB colours in [0, 1]."""
  cmap = matplotlib.colormaps['tab20' if num_classes > 10 else 'tab10']
  return np.array([cmap(i % cmap.N)[:3] for i in range(num_classes)])


def _grid(rows: int, cols: int):
  fig = Figure(figsize=(cols * PANEL_INCHES, rows * PANEL_INCHES))
  axes = fig.subplots(rows, cols, squeeze=False)
  for ax in axes.flat:
    ax.set_axis_off()
  return fig, axes


def _save(fig, path) -> Path:
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.tight_layout()
  fig.savefig(path, format='png', dpi=80)
  return path


def _show(ax, image, title=None):
  image = displayable(image)
  ax.imshow(image, cmap='gray' if image.ndim == 2 else None, vmin=0, vmax=1)
  if title:
    ax.set_title(title, fontsize=9)


def _draw_boxes(ax, boxes, labels, scores, names, colors):
  for k, (box, label) in enumerate(zip(boxes, labels)):
    if label < 0:
      continue
    x0, y0, x1, y1 = box
    color = colors[int(label) % len(colors)]
    ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False,
                           edgecolor=color, linewidth=1.5))
    text = names[int(label)] if int(label) < len(names) else str(label)
    if scores is not None:
      text += f' {scores[k]:.2f}'
    ax.text(x0, y0, text, fontsize=7, color='white', va='bottom',
            bbox=dict(facecolor=color, alpha=0.8, pad=1, edgecolor='none'))


def save_detections(path, images, detections, ground_truths, *,
                    class_names: Sequence[str], max_images: int = 8) -> Path:
  """Predicted boxes with ``class score`` (left) beside the ground truth.

  ``detections``: one ``dvl.detection.Detections`` per image;
  ``ground_truths``: one ``(boxes, box_label)`` per image (-1 = empty).
  """
  n = min(len(images), max_images)
  colors = class_colors(len(class_names))
  fig, axes = _grid(n, 2)
  for i in range(n):
    det = detections[i]
    _show(axes[i, 0], images[i], 'predicted')
    _draw_boxes(axes[i, 0], det.boxes, det.labels, det.scores, class_names,
                colors)
    _show(axes[i, 1], images[i], 'ground truth')
    boxes, labels = ground_truths[i]
    _draw_boxes(axes[i, 1], np.asarray(boxes), np.asarray(labels), None,
                class_names, colors)
  return _save(fig, path)


def overlay(image, mask, *, num_classes: int, ignore_label: int = 255,
            background: Optional[int] = 0, alpha: float = 0.5) -> np.ndarray:
  """``image`` with each pixel of ``mask`` tinted by its class colour; the
  ``background`` class is left clear, ignored pixels are tinted white."""
  image = displayable(image)
  if image.ndim == 2:
    image = np.repeat(image[..., None], 3, axis=-1)
  mask = np.asarray(mask)
  if mask.ndim == 3:
    mask = mask[..., 0]
  colors = np.concatenate([class_colors(num_classes), [[1.0, 1.0, 1.0]]])
  index = np.where(mask == ignore_label, num_classes,
                   np.clip(mask, 0, num_classes - 1))
  tint = (mask != background)[..., None] * alpha
  return image * (1 - tint) + colors[index] * tint


def save_segmentations(path, images, predictions, labels, *,
                       num_classes: int, ignore_label: int = 255,
                       max_images: int = 8,
                       class_names: Sequence[str] = ()) -> Path:
  """Image, predicted mask and true mask per row, masks over the image,
  and a legend of ``class_names`` in their colours (class 0 untinted).

  ``predictions`` are class ids ``[N, H, W]`` or logits ``[N, H, W, C]``.
  """
  n = min(len(images), max_images)
  fig, axes = _grid(n, 3)
  if class_names:
    colors = class_colors(num_classes)
    handles = [Rectangle((0, 0), 1, 1, facecolor='none' if k == 0 else
                         colors[k], edgecolor='black', label=str(name))
               for k, name in enumerate(class_names)]
    fig.legend(handles=handles, loc='lower center', ncol=min(len(handles), 6),
               fontsize=8, frameon=False)
  for i in range(n):
    pred = np.asarray(predictions[i])
    if pred.ndim == 3 and pred.shape[-1] == num_classes:
      pred = pred.argmax(-1)
    kw = dict(num_classes=num_classes, ignore_label=ignore_label)
    _show(axes[i, 0], images[i], 'image')
    _show(axes[i, 1], overlay(images[i], pred, **kw), 'predicted')
    _show(axes[i, 2], overlay(images[i], labels[i], **kw), 'true')
  return _save(fig, path)


def save_triples(path, inputs, outputs, targets, *,
                 titles: Sequence[str] = ('input', 'output', 'target'),
                 max_images: int = 8) -> Path:
  """Input, output and target per row; they may differ in size (super-
  resolution) or channels (colourisation)."""
  n = min(len(inputs), max_images)
  fig, axes = _grid(n, 3)
  for i in range(n):
    for j, image in enumerate((inputs[i], outputs[i], targets[i])):
      _show(axes[i, j], image, titles[j])
  return _save(fig, path)


def _unit(array) -> np.ndarray:
  """``array`` shifted and scaled to span [0, 1] (constant: all 0.5)."""
  array = np.asarray(array, np.float32)
  lo, hi = float(array.min()), float(array.max())
  if hi - lo < 1e-12:
    return np.full_like(array, 0.5)
  return (array - lo) / (hi - lo)


def save_filters(path, kernel, *, title: str = '', max_filters: int = 64
                 ) -> Path:
  """A convolution's filters ``[kh, kw, in, out]`` as small images, each
  scaled to its own range: colour when ``in`` is 3, grey otherwise (the
  mean over the input channels). The first layer's are what Zeiler and
  Fergus (2014, Fig. 2) and Krizhevsky et al. (2012, Fig. 3) show."""
  kernel = np.asarray(kernel, np.float32)
  if kernel.ndim != 4:
    raise ValueError(f'save_filters takes a [kh, kw, in, out] kernel; got '
                     f'shape {kernel.shape}')
  count = min(kernel.shape[-1], max_filters)
  cols = min(count, 8)
  rows = -(-count // cols)
  fig = Figure(figsize=(cols * 0.9, rows * 0.9 + 0.4))
  axes = fig.subplots(rows, cols, squeeze=False)
  for k, ax in enumerate(axes.flat):
    ax.set_axis_off()
    if k < count:
      image = kernel[..., k]
      image = image if image.shape[-1] == 3 else image.mean(-1)
      ax.imshow(_unit(image), cmap=None if image.ndim == 3 else 'gray',
                vmin=0, vmax=1, interpolation='nearest')
  if title:
    fig.suptitle(title, fontsize=9)
  return _save(fig, path)


def save_activations(path, images, maps, *, layer: str, channels) -> Path:
  """Per image (row): the image, then the chosen ``channels`` of the
  ``[N, h, w, C]`` activation ``maps`` of ``layer``, each on one colour
  scale per channel shared by all images, so rows compare."""
  maps = np.asarray(maps, np.float32)
  fig, axes = _grid(len(images), len(channels) + 1)
  for i, image in enumerate(images):
    _show(axes[i, 0], image, 'image' if i == 0 else None)
    for j, c in enumerate(channels):
      lo, hi = float(maps[..., c].min()), float(maps[..., c].max())
      axes[i, j + 1].imshow(maps[i, ..., c], cmap='viridis', vmin=lo,
                            vmax=max(hi, lo + 1e-12))
      if i == 0:
        axes[i, j + 1].set_title(f'{layer} #{c}', fontsize=9)
  return _save(fig, path)
