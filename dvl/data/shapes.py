"""Procedural shapes: dvl's embedded default dataset, as a TFDS builder.

Every image shows one large *main* object on a cluttered background, plus up
to ``max_distractors`` small distractor objects drawn on top of it (they may
occlude part of the main object). The image label is the class of the main
object, which is always the object with the largest extent: its circumscribed
radius is 22-42% of the image side, a distractor's 6-14%.

Six classes: circle, square, triangle, star, cross, ellipse. Each object has a
random colour, position, size and rotation; the background is a linear
gradient between two random colours in a random direction, plus Gaussian pixel
noise of random strength. Object colours keep a minimum distance from the
background colour under them, but noise, small objects and occlusion still
make the task imperfectly solvable at a glance.

Per-object annotations, for detection and segmentation:
  * ``boxes``: float32 (K, 4) ``[xmin, ymin, xmax, ymax]`` in pixels, pixel-edge
    coordinates (a box covering pixel columns 3..7 has xmin=3, xmax=8). Each box
    is the tight box of the object's full rasterised shape, before occlusion.
    The main object comes first.
  * ``box_label``: int64 (K,), the class of each box.
  * ``mask``: uint8 (H, W, 1), 0 for background and ``class + 1`` for the
    visible (topmost) object at that pixel.

Rendering is vectorised with numpy over chunks of images and depends only on
``(seed, split, chunk index)``, so a configuration always yields the same
images: 10,000 images of 64x64 render in a few seconds.
"""

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

CLASS_NAMES = ('circle', 'square', 'triangle', 'star', 'cross', 'ellipse')
_CHUNK = 500
_SPLIT_IDS = {'train': 0, 'test': 1}
_MAIN_RADIUS = (0.22, 0.42)
_DISTRACTOR_RADIUS = (0.06, 0.14)
_MIN_CONTRAST = 0.35


def _inside_star(u, v):
  """Inside test for a pentagram with tips on the unit circle.

  The five lines joining every second tip lie at distance cos(72 deg) from the
  centre; a point is inside the star when it is on the inner side of at least
  four of them (all five: the central pentagon; four: a tip).
  """
  count = np.zeros(u.shape, np.int8)
  for k in range(5):
    normal = np.pi / 2 + 2 * np.pi * k / 5 + np.pi
    count += u * np.cos(normal) + v * np.sin(normal) <= np.cos(2 * np.pi / 5)
  return count >= 4


def _inside(cls, u, v, aspect):
  """Whether local coordinates (u, v), in units of the radius, are inside."""
  if cls == 0:  # circle
    return u * u + v * v <= 1
  if cls == 1:  # square with circumradius 1
    return np.maximum(np.abs(u), np.abs(v)) <= np.sqrt(0.5)
  if cls == 2:  # equilateral triangle inscribed in the unit circle
    inside = np.ones(u.shape, bool)
    for k in range(3):
      angle = np.pi / 2 + k * 2 * np.pi / 3
      inside &= u * np.cos(angle) + v * np.sin(angle) <= 0.5
    return inside
  if cls == 3:
    return _inside_star(u, v)
  if cls == 4:  # plus sign
    arm = 0.3
    return ((np.abs(u) <= arm) & (np.abs(v) <= 1)) | (
        (np.abs(v) <= arm) & (np.abs(u) <= 1))
  return u * u + (v / aspect[:, None, None]) ** 2 <= 1  # ellipse


def _background(rng, n, size):
  """Noisy linear gradients between two random colours, float in [0, 1]."""
  start, end = rng.uniform(0, 1, (2, n, 1, 1, 3)).astype(np.float32)
  theta = rng.uniform(0, 2 * np.pi, (n, 1, 1)).astype(np.float32)
  grid = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5
  t = grid[None, None, :] * np.cos(theta) + grid[None, :, None] * np.sin(theta)
  t = np.clip(t + 0.5, 0, 1)[..., None]
  return start + t * (end - start)


def _object_params(rng, n, size, radius_range):
  """Random class, centre, radius, rotation, aspect and colour per image."""
  radius = rng.uniform(*radius_range, n) * size
  margin = 0.6 * radius
  return dict(
      cls=rng.integers(0, len(CLASS_NAMES), n),
      cx=rng.uniform(margin, size - margin),
      cy=rng.uniform(margin, size - margin),
      radius=radius,
      rotation=rng.uniform(0, 2 * np.pi, n),
      aspect=rng.uniform(0.4, 0.65, n),
      colour=rng.uniform(0, 1, (n, 3)).astype(np.float32),
  )


def _rasterise(params, size):
  """Boolean (n, size, size) coverage of one object per image."""
  centres = np.arange(size, dtype=np.float32) + 0.5
  column = lambda x: x.astype(np.float32)[:, None, None]
  dx = centres[None, None, :] - column(params['cx'])
  dy = centres[None, :, None] - column(params['cy'])
  cos = column(np.cos(params['rotation']))
  sin = column(np.sin(params['rotation']))
  r = column(params['radius'])
  u, v = (dx * cos + dy * sin) / r, (-dx * sin + dy * cos) / r
  covered = np.zeros(u.shape, bool)
  for c in range(len(CLASS_NAMES)):
    idx = np.flatnonzero(params['cls'] == c)
    if idx.size:
      covered[idx] = _inside(c, u[idx], v[idx], params['aspect'][idx])
  return covered


def _tight_boxes(covered):
  """Pixel-edge ``[xmin, ymin, xmax, ymax]`` of each mask; NaN when empty."""
  size = covered.shape[-1]
  cols, rows = covered.any(axis=1), covered.any(axis=2)
  boxes = np.stack([
      cols.argmax(1), rows.argmax(1),
      size - cols[:, ::-1].argmax(1), size - rows[:, ::-1].argmax(1)
  ], axis=1).astype(np.float32)
  boxes[~cols.any(1)] = np.nan
  return boxes


def _contrasting(colour, background, params):
  """Shifts object colours that are too close to the background under them."""
  n, size = len(colour), background.shape[1]
  iy = np.clip(params['cy'].astype(int), 0, size - 1)
  ix = np.clip(params['cx'].astype(int), 0, size - 1)
  under = background[np.arange(n), iy, ix]
  close = np.linalg.norm(colour - under, axis=1) < _MIN_CONTRAST
  colour[close] = np.mod(under[close] + 0.5, 1.0)
  return colour


def render(rng, num, size, max_distractors=3):
  """Renders ``num`` images; returns numpy arrays (see the module docstring).

  Returns a dict with ``image`` uint8 (num, size, size, 3), ``label`` int64
  (num,), ``mask`` uint8 (num, size, size, 1), ``boxes`` float32
  (num, 1 + max_distractors, 4) and ``box_label`` int64 (num, 1 +
  max_distractors); slots of absent objects have NaN boxes and label -1.
  """
  image = _background(rng, num, size)
  mask = np.zeros((num, size, size), np.uint8)
  slots = 1 + max_distractors
  boxes = np.full((num, slots, 4), np.nan, np.float32)
  box_label = np.full((num, slots), -1, np.int64)
  count = rng.integers(0, max_distractors + 1, num)
  for slot in range(slots):
    radius = _MAIN_RADIUS if slot == 0 else _DISTRACTOR_RADIUS
    params = _object_params(rng, num, size, radius)
    covered = _rasterise(params, size) & (slot <= count)[:, None, None]
    colour = _contrasting(params['colour'], image, params)
    pixels = covered.sum(axis=(1, 2))
    image[covered] = np.repeat(colour, pixels, axis=0)
    mask[covered] = np.repeat(params['cls'] + 1, pixels)
    boxes[:, slot] = _tight_boxes(covered)
    box_label[:, slot] = np.where(covered.any((1, 2)), params['cls'], -1)
    if slot == 0:
      label = params['cls']
  noise = rng.uniform(0, 0.08, (num, 1, 1, 1)).astype(np.float32)
  image += noise * rng.standard_normal((num, size, size, 1), np.float32)
  image = np.clip(image * 255 + 0.5, 0, 255).astype(np.uint8)
  return dict(image=image, label=label.astype(np.int64),
              mask=mask[..., None].astype(np.uint8), boxes=boxes,
              box_label=box_label)


@dataclasses.dataclass(eq=False)
class ShapesConfig(tfds.core.BuilderConfig):
  """Size, counts and seed of a shapes dataset; all are part of its name."""
  image_size: int = 32
  num_train: int = 10_000
  num_test: int = 2_000
  seed: int = 0
  max_distractors: int = 3

  @classmethod
  def make(cls, image_size=32, num_train=10_000, num_test=2_000, seed=0,
           max_distractors=3):
    for field, value in dict(image_size=image_size, num_train=num_train,
                             num_test=num_test).items():
      if int(value) < 1 or (field == 'image_size' and value < 8):
        raise ValueError(f'shapes {field} must be positive (image_size >= 8);'
                         f' got {value}')
    name = (f'{image_size}px_{num_train}train_{num_test}test_'
            f'{max_distractors}distractors_seed{seed}')
    return cls(name=name, image_size=int(image_size), num_train=int(num_train),
               num_test=int(num_test), seed=int(seed),
               max_distractors=int(max_distractors))


class Shapes(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """TFDS builder for the procedural shapes dataset; nothing is downloaded.

  Build it with ``Shapes(config=ShapesConfig.make(image_size=64, ...),
  data_dir=...)``: every distinct configuration gets its own directory.
  """
  name = 'dvl_shapes'
  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Six classes, clutter, boxes and masks.'}
  # Nothing is downloaded, so there are no URL checksums to look up.
  url_infos = None

  def __init__(self, *, config=None, **kwargs):
    super().__init__(config=config or ShapesConfig.make(), **kwargs)

  def _info(self):
    size, slots = self.builder_config.image_size, None
    image = tfds.features.Tensor(shape=(size, size, 3), dtype=np.uint8,
                                 encoding='zlib')
    mask = tfds.features.Tensor(shape=(size, size, 1), dtype=np.uint8,
                                encoding='zlib')
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict({
            'image': image,
            'label': tfds.features.ClassLabel(names=CLASS_NAMES),
            'mask': mask,
            'boxes': tfds.features.Tensor(shape=(slots, 4), dtype=np.float32),
            'box_label': tfds.features.Tensor(shape=(slots,), dtype=np.int64),
        }),
        supervised_keys=('image', 'label'),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Everything is generated locally.
    config = self.builder_config
    return {
        'train': self._generate_examples('train', config.num_train),
        'test': self._generate_examples('test', config.num_test),
    }

  def _generate_examples(self, split, count):
    config = self.builder_config
    for start in range(0, count, _CHUNK):
      chunk = start // _CHUNK
      rng = np.random.default_rng([config.seed, _SPLIT_IDS[split], chunk])
      arrays = render(rng, min(_CHUNK, count - start), config.image_size,
                      config.max_distractors)
      for i in range(len(arrays['label'])):
        valid = arrays['box_label'][i] >= 0
        yield start + i, {
            'image': arrays['image'][i],
            'label': arrays['label'][i],
            'mask': arrays['mask'][i],
            'boxes': arrays['boxes'][i][valid],
            'box_label': arrays['box_label'][i][valid],
        }
