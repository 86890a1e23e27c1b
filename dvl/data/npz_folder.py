"""A TFDS builder that imports a folder of numpy archives, without download.

The folder holds ``<split>.npz`` or ``<split>-NN.npz`` files; the pieces of a
split are concatenated in file-name order (``train-00.npz`` then
``train-01.npz``). Every archive has:

  * ``image``: uint8 (N, H, W, C) with C of 1 or 3 (required);
  * ``label``: integer (N,) class index (optional: datasets of images and
    masks, or of images alone for the autoencoders, have none);
  * ``mask``: uint8 (N, H, W) or (N, H, W, 1) per-pixel classes (optional);
  * ``boxes``: float (N, K, 4) ``[xmin, ymin, xmax, ymax]`` in pixels, NaN rows
    for unused slots (optional). Rows with a NaN are dropped, so an example
    stores only its real boxes;
  * ``box_label``: integer (N, K) class per box (optional; defaults to the
    image label for every real box);
  * any other array (e.g. ``name``), stored as text or as a tensor.

The configuration name holds the folder's name and a fingerprint of its path
and files (names, sizes, modification times): two folders never share a
prepared directory, and editing a folder prepares it anew (what was prepared
before stays where it was).

Every archive is checked before anything is prepared: a file that is not a
readable numpy archive, an image that is not uint8, arrays of one archive
with different lengths, or an archive whose arrays differ from the first
one's (names, dtypes, per-example shapes) is a ValueError naming the file.
"""

import dataclasses
import hashlib
import re
import zipfile
import zlib
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
    found = sorted(f.name for f in folder.iterdir())
    what = (f'only {", ".join(found[:5])}{" ..." if len(found) > 5 else ""}'
            if found else 'nothing')
    raise FileNotFoundError(
        f'no <split>.npz or <split>-NN.npz files in {str(folder)!r} (it holds '
        f'{what}); put the archives there, e.g. train.npz and test.npz with '
        'arrays image and label, written by numpy.savez')
  return splits


def fingerprint(path):
  """Hash of the resolved folder path and of its archives' names, sizes, times."""
  digest = hashlib.sha1(str(Path(path).resolve()).encode())
  for files in split_files(path).values():
    for file in files:
      stat = file.stat()
      digest.update(f'{file.name}:{stat.st_size}:{stat.st_mtime_ns}'.encode())
  return digest.hexdigest()[:12]


def _unreadable(file, error) -> ValueError:
  return ValueError(
      f'{file} is not a readable numpy archive ({type(error).__name__}: '
      f'{error}); it may be truncated or corrupt. Write it again with '
      'numpy.savez, or move it out of the folder.')


def _array_headers(file):
  """Shape and dtype of every array in an archive, read without loading it."""
  headers = {}
  try:
    with zipfile.ZipFile(file) as archive:
      for member in archive.namelist():
        with archive.open(member) as stream:
          version = np.lib.format.read_magic(stream)
          read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                  else np.lib.format.read_array_header_2_0)
          shape, _, dtype = read(stream)
        headers[member.removesuffix('.npy')] = (shape, dtype)
  except (zipfile.BadZipFile, ValueError, EOFError, OSError, zlib.error) as e:
    raise _unreadable(file, e) from None
  return headers


def _load(file) -> dict:
  """Every array of an archive; a damaged one is an error naming the file."""
  try:
    with np.load(file) as archive:
      return {k: archive[k] for k in archive.files}
  except (zipfile.BadZipFile, ValueError, EOFError, OSError, zlib.error) as e:
    raise _unreadable(file, e) from None


def _check_image(shape, dtype, file) -> None:
  if dtype != np.uint8 or len(shape) != 4 or shape[-1] not in (1, 3):
    raise ValueError(
        f'{file}: image must be uint8 (N, H, W, 1 or 3); got {dtype} {shape}.'
        ' Convert it, e.g. (x * 255).round().astype(np.uint8) for floats in '
        '[0, 1], and add a channel axis to greyscale images')


def check_archives(splits: dict) -> dict:
  """Checks every archive against the first; returns the first's headers.

  Raises a ValueError naming the file when an archive cannot be read, lacks
  an image, holds arrays of different lengths, or differs from the first
  archive in its arrays' names, dtypes or per-example shapes.
  """
  files = [f for fs in splits.values() for f in fs]
  first, reference = files[0], _array_headers(files[0])
  for file in files:
    headers = reference if file == first else _array_headers(file)
    if 'image' not in headers:
      raise ValueError(f'{file} lacks the array image (it has '
                       f'{sorted(headers)}); every archive needs one')
    _check_image(*headers['image'], file)
    lengths = {k: s[0] if s else None for k, (s, _) in headers.items()}
    if len(set(lengths.values())) > 1:
      raise ValueError(f'{file}: its arrays have different lengths '
                       f'{lengths}; each needs one entry per image')
    if set(headers) != set(reference):
      raise ValueError(f'{file} has arrays {sorted(headers)} but {first} has '
                       f'{sorted(reference)}; every archive of the folder '
                       'needs the same arrays')
    for key, (shape, dtype) in headers.items():
      want_shape, want_dtype = reference[key]
      fixed = key not in ('boxes', 'box_label')  # one box row per object
      if dtype != want_dtype or (fixed and shape[1:] != want_shape[1:]):
        raise ValueError(
            f'{file}: array {key} is {dtype} with examples of shape '
            f'{shape[1:]}, but in {first} it is {want_dtype} with examples of '
            f'shape {want_shape[1:]}; write every archive alike')
  return reference


def _feature(key, shape, dtype, file):
  """The TFDS feature storing one example's slice of an array."""
  if key == 'image':
    _check_image(shape, dtype, file)
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
    top = max(int(_load(f)['label'].max(initial=0)) for fs in splits.values()
              for f in fs)
    return dict(num_classes=top + 1)

  def _info(self):
    splits = split_files(self.builder_config.path)
    first = next(iter(splits.values()))[0]
    headers = check_archives(splits)
    features = {k: _feature(k, s, d, first) for k, (s, d) in headers.items()}
    if 'label' in headers:
      features['label'] = tfds.features.ClassLabel(**self._num_classes(splits))
    if 'boxes' in headers:
      if 'label' not in headers and 'box_label' not in headers:
        raise ValueError(f'{first} has boxes but neither box_label nor label '
                         'to give them classes; add one of them')
      features['box_label'] = _feature('box_label', None, None, first)
    return tfds.core.DatasetInfo(
        builder=self, description=__doc__,
        features=tfds.features.FeaturesDict(features),
        supervised_keys=('image', 'label') if 'label' in headers else None)

  def _split_generators(self, dl_manager):
    del dl_manager  # The archives are already local.
    splits = split_files(self.builder_config.path)
    return {name: self._generate_examples(files)
            for name, files in splits.items()}

  def _generate_examples(self, files):
    keys = set(self.info.features.keys())
    label = self.info.features['label'] if 'label' in keys else None
    num_classes = label.num_classes if label else None
    for file in files:
      arrays = _load(file)
      if set(arrays) | {'box_label'} != keys | {'box_label'}:
        raise ValueError(f'{file} has arrays {sorted(arrays)}; the folder\'s '
                         f'first archive has {sorted(keys)}')
      for i in range(len(arrays['image'])):
        example = _example(arrays, i)
        try:
          check_annotations(example, num_classes)
        except ValueError as err:
          raise ValueError(f'{file}, example {i}: {err}') from None
        yield f'{file.name}:{i}', example


def check_annotations(example: dict, num_classes: int | None) -> None:
  """Raises a ValueError when an example's label or boxes have an unknown
  class, its boxes leave its image or have no area, or its mask is not the
  image's size. ``num_classes`` None: the dataset has no labels."""
  image = example['image']
  if num_classes is not None and 'label' in example and not (
      0 <= int(example['label']) < num_classes):
    raise ValueError(
        f'label {int(example["label"])} is not a class index in [0, '
        f'{num_classes}); give config.input.class_names one name per class')
  if 'boxes' in example and len(example['boxes']):
    try:
      detection.validate_boxes(
          example['boxes'][None], example['box_label'][None],
          image_hw=image.shape[:2],
          num_classes=np.iinfo(np.int32).max if num_classes is None
          else num_classes)
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
