"""Reading the weight files Keras writes, into ``{layer name: [arrays]}``.

Three formats, told apart by their content, not their suffix:

- **Keras 3 weights** (``model.save_weights('m.weights.h5')``): one group
  per layer, addressed by class and creation order
  (``layers/conv2d_3/vars/0``, ``/1`` …); recent Keras records the layer's
  own name in the ``name`` attribute of each ``vars`` group.
- **Keras 3 archive** (``model.save('m.keras')``): a zip holding
  ``config.json`` and ``model.weights.h5``; the config's layer list gives
  each group its layer name when the ``name`` attributes are absent.
- **Legacy HDF5** (Keras 2 / tf.keras, the format of the published ImageNet
  weights): groups named by layer, at the root (``save_weights``) or under
  ``model_weights`` (whole-model ``save``), each listing its tensors in a
  ``weight_names`` attribute, e.g. ``stem_conv/kernel:0``.

Within a layer the arrays keep Keras's order: kernel then bias; gamma, beta,
moving mean, moving variance; mean, variance, count.
"""

import dataclasses
import io
import json
import re
import zipfile
import zlib
from pathlib import Path

import h5py
import numpy as np


@dataclasses.dataclass
class KerasWeights:
  """The layers with weights in a Keras file.

  Attributes:
    layers: layer name -> its arrays, in the model's layer order where the
      file records it (legacy HDF5, ``.keras``), else by name, numbers
      compared as numbers ('block2a' < 'block10a').
    format: 'keras3_weights', 'keras_archive' or 'legacy_h5'.
    config: the model config of a ``.keras`` archive, else None.
  """
  layers: dict[str, list[np.ndarray]]
  format: str
  config: dict | None = None

  def tensor_name(self, layer: str, index: int) -> str:
    """'conv1/kernel' for a layer's array. Keras 3 files only number the
    arrays of a layer; in these applications their count tells the roles."""
    count = len(self.layers[layer])
    roles = {4: ('gamma', 'beta', 'moving_mean', 'moving_variance'),
             3: ('mean', 'variance', 'count')}.get(count, ('kernel', 'bias'))
    return f'{layer}/{roles[index] if index < len(roles) else index}'

  def layer_configs(self) -> list[dict]:
    """The archive's layer configs in model order ([] without a config)."""
    return _config_layers(self.config)


def _config_layers(config: dict | None) -> list[dict]:
  return (config or {}).get('config', {}).get('layers', [])


def read(path: str | Path) -> KerasWeights:
  """Reads every layer's weights from a Keras file; raises
  FileNotFoundError for a missing file and ValueError for one in none of the
  three formats."""
  path = Path(path).expanduser()
  if not path.is_file():
    raise FileNotFoundError(
        f'no Keras weight file at {path}; give the path of a .weights.h5, '
        '.keras or legacy .h5 file')
  if zipfile.is_zipfile(path):
    return _damaged_if_unreadable(path, _read_archive)
  if not h5py.is_hdf5(path):
    raise ValueError(f'{path} is neither an HDF5 file (.weights.h5, .h5) nor '
                     'a .keras archive; a truncated .keras download looks like '
                     'this too: download or save it again')
  found = _damaged_if_unreadable(path, _read_h5)
  if found is not None:
    return found
  raise ValueError(f'{path} is an HDF5 file but not one Keras wrote: it has '
                   "neither a 'layers' group (Keras 3) nor 'layer_names' "
                   '(legacy Keras)')


def _read_h5(path: Path) -> KerasWeights | None:
  with h5py.File(path, 'r') as f:
    if _is_legacy(f):
      return KerasWeights(_read_legacy(f), 'legacy_h5')
    if 'layers' in f:
      return KerasWeights(_read_keras3(f, path, None), 'keras3_weights')
  return None


def _damaged_if_unreadable(path: Path, read):
  """``read(path)``; a file that breaks while being read (truncated, bytes
  overwritten) is a ValueError naming it."""
  try:
    return read(path)
  except (OSError, KeyError, EOFError, zipfile.BadZipFile, zlib.error,
          json.JSONDecodeError) as error:
    raise ValueError(
        f'{path} cannot be read as a Keras weight file ({type(error).__name__}'
        f': {error}); it is probably truncated or corrupt. Download or save it '
        'again.') from None


def _read_archive(path: Path) -> KerasWeights:
  with zipfile.ZipFile(path) as archive:
    names = archive.namelist()
    if 'config.json' not in names or 'model.weights.h5' not in names:
      raise ValueError(f'{path} is a zip but not a .keras archive: it lacks '
                       'config.json or model.weights.h5')
    config = json.loads(archive.read('config.json'))
    data = archive.read('model.weights.h5')
  with h5py.File(io.BytesIO(data), 'r') as f:
    layers = _read_keras3(f, path, config)
  return KerasWeights(layers, 'keras_archive', config)


def _is_legacy(f: h5py.File) -> bool:
  return 'layer_names' in f.attrs or (
      'model_weights' in f and 'layer_names' in f['model_weights'].attrs)


def _text(value) -> str:
  return value.decode('utf8') if isinstance(value, bytes) else str(value)


def _read_legacy(f: h5py.File) -> dict[str, list[np.ndarray]]:
  root = f['model_weights'] if 'model_weights' in f else f
  layers = {}
  for layer in map(_text, root.attrs['layer_names']):
    group = root[layer]
    names = [_text(n) for n in group.attrs.get('weight_names', [])]
    if names:
      layers[layer] = [np.asarray(group[n]) for n in names]
  return layers


def _vars_groups(group: h5py.Group, prefix: str = ''):
  """(path, vars group) of every layer under ``group``, depth first."""
  for key in group:
    item = group[key]
    if not isinstance(item, h5py.Group):
      continue
    path = f'{prefix}{key}'
    if key == 'vars':
      yield prefix.rstrip('/'), item
    else:
      yield from _vars_groups(item, path + '/')


def _arrays(vars_group: h5py.Group) -> list[np.ndarray]:
  keys = sorted((k for k in vars_group if re.fullmatch(r'\d+', k)), key=int)
  return [np.asarray(vars_group[k]) for k in keys]


def _read_keras3(f: h5py.File, path: Path, config: dict | None):
  by_path = {p: g for p, g in _vars_groups(f['layers'], 'layers/')}
  named = config_names(config) if config else {}
  layers = {}
  for group_path, group in by_path.items():
    arrays = _arrays(group)
    if not arrays:
      continue
    name = group.attrs.get('name')
    name = _text(name) if name is not None else named.get(group_path)
    if name is None:
      raise ValueError(
          f'{path}: the weights at {group_path!r} do not record their layer '
          "name (Keras versions before names were saved). Load the model in "
          "Keras and save it again, as .keras (model.save('m.keras')) or "
          "with this Keras's model.save_weights('m.weights.h5')")
    if name in layers:
      raise ValueError(f'{path}: two layers are named {name!r}; the file '
                       'holds more than one model')
    layers[name] = arrays
  order = [layer['config']['name'] for layer in _config_layers(config)]
  rank = {name: i for i, name in enumerate(order)}
  keys = sorted(layers, key=lambda n: (rank.get(n, len(rank)), _natural(n)))
  return {name: layers[name] for name in keys}


def _natural(name: str) -> list:
  return [(0, int(t), '') if t.isdigit() else (1, 0, t)
          for t in re.findall(r'\d+|\D+', name)]


def snake_case(class_name: str) -> str:
  """Keras's group name for a layer class: 'DepthwiseConv2D' ->
  'depthwise_conv2d', 'BatchNormalization' -> 'batch_normalization'."""
  name = re.sub(r'\W+', '', class_name)
  name = re.sub(r'(.)([A-Z][a-z]+)', r'\1_\2', name)
  return re.sub(r'([a-z])([A-Z])', r'\1_\2', name).lower()


def config_names(config: dict) -> dict[str, str]:
  """``{'layers/conv2d_3': 'block1a_se_reduce', ...}`` from a model config:
  Keras numbers each layer class in the order of the model's layers."""
  counts, out = {}, {}
  for layer in _config_layers(config):
    base = snake_case(layer['class_name'])
    n = counts.get(base, 0)
    counts[base] = n + 1
    out[f'layers/{base}' + (f'_{n}' if n else '')] = layer['config']['name']
  return out
