"""A TFDS builder that imports a folder of numpy archives, without download.

The folder holds ``<split>.npz`` or ``<split>-NN.npz`` files; the pieces of a
split are concatenated in file-name order (``train-00.npz`` then
``train-01.npz``). Every archive has:

  * ``image``: uint8 (N, H, W, C) with C of 1 or 3 (required);
  * ``label``: integer (N,) class index (required);
  * ``mask``: uint8 (N, H, W) or (N, H, W, 1) per-pixel classes (optional);
  * ``boxes``: float (N, K, 4) ``[xmin, ymin, xmax, ymax]`` in pixels, NaN rows
    for unused slots (optional). Rows with a NaN are dropped, so an example
    stores only its real boxes;
  * ``box_label``: integer (N, K) class per box (optional; defaults to the
    image label for every real box);
  * any other array (e.g. ``name``), stored as text or as a tensor.

The configuration name holds the folder's name and a fingerprint of its path
and files (names, sizes, modification times): two folders never share a
prepared directory, and editing a folder prepares it anew.
"""

import dataclasses
import hashlib
import re
import zipfile
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from dvl import detection

_FILE_PATTERN = re.compile(r'^(?P<split>[A-Za-z_]+)(-\d+)?\.npz$')
_ANNOTATIONS = ('image', 'label', 'mask', 'boxes', 'box_label')


def split_files(path):
  """Maps each split name to its archives in order; raises if there are none."""
  folder = Path(path)
  if not folder.is_dir():
    raise FileNotFoundError(
        f'numpy archive folder {str(folder)!r} does not exist; pass the folder'
        ' holding <split>.npz files as config.input.path')
  splits = {}
  for file in sorted(folder.iterdir()):
    match = _FILE_PATTERN.match(file.name)
    if match:
      splits.setdefault(match['split'], []).append(file)
  if not splits:
    raise FileNotFoundError(
        f'no <split>.npz or <split>-NN.npz files in {str(folder)!r}')
  return splits


def fingerprint(path):
  """Hash of the resolved folder path and of its archives' names, sizes, times."""
  digest = hashlib.sha1(str(Path(path).resolve()).encode())
  for files in split_files(path).values():
    for file in files:
      stat = file.stat()
      digest.update(f'{file.name}:{stat.st_size}:{stat.st_mtime_ns}'.encode())
  return digest.hexdigest()[:12]


def _array_headers(file):
  """Shape and dtype of every array in an archive, read without loading it."""
  headers = {}
  with zipfile.ZipFile(file) as archive:
    for member in archive.namelist():
      with archive.open(member) as stream:
        version = np.lib.format.read_magic(stream)
        read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                else np.lib.format.read_array_header_2_0)
        shape, _, dtype = read(stream)
      headers[member.removesuffix('.npy')] = (shape, dtype)
  return headers


def _feature(key, shape, dtype, file):
  """The TFDS feature storing one example's slice of an array."""
  if key == 'image':
    if dtype != np.uint8 or len(shape) != 4 or shape[-1] not in (1, 3):
      raise ValueError(f'{file}: image must be uint8 (N, H, W, 1 or 3); got '
                       f'{dtype} {shape}')
    return tfds.features.Tensor(shape=shape[1:], dtype=np.uint8,
                                encoding='zlib')
  if key == 'mask':
    return tfds.features.Tensor(shape=shape[1:3] + (1,), dtype=np.uint8,
                                encoding='zlib')
  if key == 'boxes':
    return tfds.features.Tensor(shape=(None, 4), dtype=np.float32)
  if key == 'box_label':
    return tfds.features.Tensor(shape=(None,), dtype=np.int64)
  if dtype.kind in 'US':
    return tfds.features.Text()
  return tfds.features.Tensor(shape=shape[1:], dtype=dtype)


@dataclasses.dataclass(eq=False)
class NpzFolderConfig(tfds.core.BuilderConfig):
  """The source folder and, optionally, the names of the classes."""
  path: str = ''
  class_names: tuple = ()

  @classmethod
  def make(cls, path, class_names=()):
    path = str(Path(path).expanduser().resolve())
    name = f'{Path(path).name}_{fingerprint(path)}'
    return cls(name=name, path=path, class_names=tuple(class_names),
               description=f'numpy archives from {path}')


class NpzFolder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """TFDS builder for a folder of numpy archives (see the module docstring).

  Build it with ``NpzFolder(config=NpzFolderConfig.make(path), data_dir=...)``.
  """
  name = 'dvl_npz_folder'
  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Images, labels, masks, boxes and extra arrays.'}
  # Nothing is downloaded, so there are no URL checksums to look up.
  url_infos = None

  def _num_classes(self, splits):
    names = self.builder_config.class_names
    if names:
      return dict(names=names)
    top = max(int(np.load(f)['label'].max()) for fs in splits.values()
              for f in fs)
    return dict(num_classes=top + 1)

  def _info(self):
    splits = split_files(self.builder_config.path)
    first = next(iter(splits.values()))[0]
    headers = _array_headers(first)
    missing = {'image', 'label'} - set(headers)
    if missing:
      raise ValueError(f'{first} lacks the arrays {sorted(missing)}')
    features = {k: _feature(k, s, d, first) for k, (s, d) in headers.items()}
    features['label'] = tfds.features.ClassLabel(**self._num_classes(splits))
    if 'boxes' in headers:
      features['box_label'] = _feature('box_label', None, None, first)
    return tfds.core.DatasetInfo(
        builder=self, description=__doc__,
        features=tfds.features.FeaturesDict(features),
        supervised_keys=('image', 'label'))

  def _split_generators(self, dl_manager):
    del dl_manager  # The archives are already local.
    splits = split_files(self.builder_config.path)
    return {name: self._generate_examples(files)
            for name, files in splits.items()}

  def _generate_examples(self, files):
    keys = set(self.info.features.keys())
    for file in files:
      with np.load(file) as archive:
        arrays = {k: archive[k] for k in archive.files}
      if set(arrays) | {'box_label'} != keys | {'box_label'}:
        raise ValueError(f'{file} has arrays {sorted(arrays)}; the folder\'s '
                         f'first archive has {sorted(keys)}')
      num_classes = self.info.features['label'].num_classes
      for i in range(len(arrays['label'])):
        example = _example(arrays, i)
        try:
          check_annotations(example, num_classes)
        except ValueError as err:
          raise ValueError(f'{file}, example {i}: {err}') from None
        yield f'{file.name}:{i}', example


def check_annotations(example: dict, num_classes: int) -> None:
  """Raises a ValueError when an example's boxes leave its image, have no
  area or an unknown class, or its mask is not the image's size."""
  image = example['image']
  if 'boxes' in example and len(example['boxes']):
    try:
      detection.validate_boxes(example['boxes'][None],
                               example['box_label'][None],
                               image_hw=image.shape[:2],
                               num_classes=num_classes)
    except ValueError as err:
      raise ValueError(str(err).removeprefix('example 0, ')) from None
  if 'mask' in example and example['mask'].shape[:2] != image.shape[:2]:
    raise ValueError(
        f'mask of shape {example["mask"].shape[:2]} does not match its image '
        f'of shape {image.shape[:2]}; resize the mask with the image '
        '(nearest neighbour) so every pixel has one label')


def _example(arrays, i):
  """One example's features; drops NaN boxes and fills in box labels."""
  example = {k: v[i] for k, v in arrays.items() if k != 'box_label'}
  if 'mask' in arrays:
    example['mask'] = example['mask'].reshape(example['mask'].shape[:2] + (1,))
  if 'boxes' in arrays:
    boxes = arrays['boxes'][i].astype(np.float32)
    real = ~np.isnan(boxes).any(axis=1)
    labels = (arrays['box_label'][i] if 'box_label' in arrays
              else np.full(len(boxes), arrays['label'][i]))
    example['boxes'] = boxes[real]
    example['box_label'] = labels[real].astype(np.int64)
  for key, value in example.items():
    if isinstance(value, np.str_):
      example[key] = str(value)
  return example
