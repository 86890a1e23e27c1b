"""Importing ``keras.applications`` weights into dvl models.

    python launch.py --config experiments/import_weights.py:source=keras,model=efficientnet_b0,path=B0.weights.h5 --workdir runs/b0_imported

``convert`` reads a Keras file (``dvl.convert.keras_files``: ``.weights.h5``,
``.keras`` or legacy ``.h5``), places every tensor by the model's layout
(``dvl.convert.keras_layouts``) and returns dvl variables that compute what
Keras computes, given raw RGB images and the preprocessing spec it returns
(``dvl.convert.preprocess``). On the way:

- DepthwiseConv2D kernels (kh, kw, C, 1) become dvl's (kh, kw, 1, C);
  MobileNet's 1×1 convolution classifier becomes a dense layer.
- BatchNorm and LayerNorm gamma/beta go to ``params`` scale/bias (a
  layer scale's gamma to ``scale``), BatchNorm moving mean/variance to
  ``batch_stats`` mean/var; a convolution bias that dvl's model does not
  have (ResNet v1) is folded into the next BatchNorm's moving mean:
  ``BN(conv(x) + b)`` with mean ``m`` is ``BN(conv(x))`` with mean ``m - b``.
- The model is built with Keras's BatchNorm epsilon and TensorFlow SAME
  padding (Keras's ``correct_pad`` + valid convolution is SAME for odd
  kernels, odd or even inputs).

Every tensor is checked before anything is written: a file of another model
or variant, a missing or extra tensor, or a shape mismatch raises
``WeightMismatchError`` naming the first offending tensor, with the shape the
model expects and the shape found.
"""

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from dvl import models
from dvl.models import scan
from dvl.convert import imported, keras_files, keras_layouts, preprocess
from dvl.convert.keras_layouts import ROLES, Rule

RESCALE_MODES = ('auto', 'on', 'off')


class WeightMismatchError(ValueError):
  """A Keras file does not fit the dvl model it is imported into."""


@dataclasses.dataclass(frozen=True)
class _Tensor:
  """One array the model expects from the file."""
  name: str            # Keras name, 'block1a_dwconv/kernel'
  shape: tuple | None  # shape in the file (None: not checked)
  target: str          # 'params/…', 'batch_stats/…', 'fold:…', 'norm:…'
  depthwise: bool = False
  to_dense: bool = False

  def convert(self, array: np.ndarray) -> np.ndarray:
    array = np.asarray(array, np.float32)
    if self.depthwise:
      return np.ascontiguousarray(array.transpose(0, 1, 3, 2))
    if self.to_dense:
      return array.reshape(array.shape[2:])
    return array


def _conv_tensors(rule: Rule, shapes: dict) -> list[_Tensor]:
  kernel_key = f'params/{rule.dvl}/kernel'
  s = _shape(shapes, kernel_key, rule)
  file_shape = {'depthwise': (*s[:2], *s[:1:-1]),  # (kh, kw, C, 1)
                'conv_dense': (1, 1, *s)}.get(rule.kind, s)
  out = [_Tensor(f'{rule.keras}/kernel', file_shape, kernel_key,
                 depthwise=rule.kind == 'depthwise',
                 to_dense=rule.kind == 'conv_dense')]
  bias_key = f'params/{rule.dvl}/bias'
  if bias_key in shapes:
    out.append(_Tensor(f'{rule.keras}/bias', shapes[bias_key], bias_key))
  elif rule.fold:
    out.append(_Tensor(f'{rule.keras}/bias', (s[-1],), f'fold:{rule.fold}'))
  return out


# The dvl params that take the arrays of a layer kind holding params only.
_PARAMS = {'layer_norm': ('scale', 'bias'), 'layer_scale': ('scale',)}


def _expected(rule: Rule, shapes: dict) -> list[_Tensor]:
  """The tensors of ``rule``'s layer, in Keras's order, and their targets."""
  if rule.kind in _PARAMS:
    keys = [f'params/{rule.dvl}/{name}' for name in _PARAMS[rule.kind]]
    return [_Tensor(f'{rule.keras}/{role}', _shape(shapes, key, rule), key)
            for role, key in zip(ROLES[rule.kind], keys)]
  if rule.kind == 'bn':
    keys = [f'params/{rule.dvl}/scale', f'params/{rule.dvl}/bias',
            f'batch_stats/{rule.dvl}/mean', f'batch_stats/{rule.dvl}/var']
    return [_Tensor(f'{rule.keras}/{role}', _shape(shapes, key, rule), key)
            for role, key in zip(ROLES['bn'], keys)]
  if rule.kind == 'normalization':
    return [_Tensor(f'{rule.keras}/{role}', shape, f'norm:{role}')
            for role, shape in zip(ROLES['normalization'], [(3,), (3,), None])]
  return _conv_tensors(rule, shapes)


def _shape(shapes: dict, key: str, rule: Rule) -> tuple:
  if key not in shapes:
    raise ValueError(f'the Keras layout maps {rule.keras!r} to {key!r}, which '
                     'this dvl model does not have: the model is a variant '
                     'the importer does not cover')
  return shapes[key]


def _abstract_variables(model):
  """The model's variables as shapes, without computing anything."""
  side = model.default_resolution
  x = jax.ShapeDtypeStruct((1, side, side, 3), jnp.float32)
  return jax.eval_shape(
      lambda x: model.init(jax.random.key(0), x, train=False), x)


def _dvl_shapes(model) -> dict[str, tuple]:
  """``{'params/stem/conv/kernel': shape, ...}`` of the model unrolled, the
  layout that the rules name block by block."""
  flat = traverse_util.flatten_dict(
      _abstract_variables(scan.unrolled(model)), sep='/')
  return {k: tuple(v.shape) for k, v in flat.items()}


def _layer_name(rule: Rule, layers: dict) -> str | None:
  """The file's name for ``rule``'s layer; Keras may have numbered it."""
  if rule.keras in layers:
    return rule.keras
  if rule.auto_named:
    found = [n for n in layers if n.startswith(rule.keras + '_')
             and n[len(rule.keras) + 1:].isdigit()]
    if len(found) == 1:
      return found[0]
  return None


def _collect(rules, weights, shapes, fail) -> tuple[dict, set]:
  """Every expected array, converted, by target; and the layers used."""
  out, used = {}, set()
  for rule in rules:
    expected = _expected(rule, shapes)
    name = _layer_name(rule, weights.layers)
    arrays = weights.layers.get(name, []) if name else []
    for i, tensor in enumerate(expected):
      if i >= len(arrays):
        fail(f'tensor {tensor.name!r} is missing from the file (the model '
             f'expects shape {tensor.shape})')
      if tensor.shape is not None and tuple(arrays[i].shape) != tensor.shape:
        fail(f'tensor {tensor.name!r}: the model expects shape {tensor.shape}, '
             f'the file has {tuple(arrays[i].shape)}')
      out[tensor.target] = tensor.convert(arrays[i])
    if len(arrays) > len(expected):
      extra = len(expected)
      fail(f'tensor {weights.tensor_name(name, extra)!r} (shape '
           f'{tuple(arrays[extra].shape)}) is in the file but has no place in '
           'the model')
    used.add(name)
  return out, used


def _check_extra(weights, used: set, fail) -> None:
  extra = [n for n in weights.layers if n not in used]
  if extra:
    first = weights.layers[extra[0]][0]
    fail(f'{len(extra)} layer(s) of the file have no place in the model; the '
         f'first, tensor {weights.tensor_name(extra[0], 0)!r}, has shape '
         f'{tuple(first.shape)}')


def _assemble(flat: dict, shapes: dict) -> dict:
  """The dvl variables, with folded biases subtracted from moving means."""
  values = {k: v for k, v in flat.items()
            if not k.startswith(('fold:', 'norm:'))}
  for key, bias in flat.items():
    if key.startswith('fold:'):
      mean = f'batch_stats/{key[len("fold:"):]}/mean'
      values[mean] = values[mean] - bias
  missing = [k for k in shapes if k not in values]
  if missing:
    raise ValueError(f'the Keras layout leaves {missing[0]!r} (and '
                     f'{len(missing) - 1} more) without a value: the model is '
                     'a variant the importer does not cover')
  return traverse_util.unflatten_dict(values, sep='/')


def _rescalings(weights) -> tuple[float, float, list | None] | None:
  """(scale, offset) of the Rescaling before a ``.keras`` model's
  Normalization and the per-channel scale of one after it; None without a
  config."""
  if not weights.config:
    return None
  before, after, normalized = (1.0, 0.0), None, False
  for layer in weights.layer_configs():
    kind, cfg = layer['class_name'], layer['config']
    if kind == 'Normalization':
      normalized = True
    elif kind == 'Rescaling' and not normalized:
      if np.ndim(cfg['scale']) or np.ndim(cfg.get('offset', 0.0)):
        raise ValueError('the .keras model rescales its input per channel '
                         'before normalising it; the importer reads only a '
                         "single scale there, as in Keras's EfficientNet")
      before = (float(cfg['scale']), float(cfg.get('offset', 0.0)))
    elif kind == 'Rescaling':
      after = [float(v) for v in np.broadcast_to(cfg['scale'], (3,))]
    elif kind != 'InputLayer':
      break
  return (*before, after)


def _published_imagenet(variance) -> bool:
  """Keras's published EfficientNet ImageNet weights store the ImageNet
  standard deviations as the Normalization variance; Keras then rescales by
  1/sqrt(std) per channel (tensorflow/tensorflow#49930)."""
  return bool(np.allclose(variance, preprocess.IMAGENET_STD_RGB, atol=1e-6))


def _preprocessing(family, flat: dict, weights, imagenet_rescale: str) -> dict:
  """The spec that makes dvl's input what the Keras model's first layer
  sees."""
  if family.preprocessing != 'in_model':
    return preprocess.spec(family.preprocessing)
  mean, variance = flat['norm:mean'], flat['norm:variance']
  scale, offset, channel = _rescalings(weights) or (1 / 255, 0.0, None)
  imagenet = [1 / np.sqrt(s) for s in preprocess.IMAGENET_STD_RGB]
  if imagenet_rescale == 'on' or (imagenet_rescale == 'auto' and not
                                  weights.config and
                                  _published_imagenet(variance)):
    channel = imagenet
  elif imagenet_rescale == 'off':
    channel = None
  return preprocess.keras_layers(scale, offset, mean, variance, channel)


def _fields(family, name: str, alpha: float) -> dict:
  fields = dict(family.fields)
  if family.alpha:
    if not alpha > 0:
      raise ValueError(f'alpha must be > 0; got {alpha}')
    fields['width'] = float(alpha)
  elif alpha != 1.0:
    raise ValueError(f'alpha={alpha}: only MobileNet and MobileNetV2 have a '
                     f'width multiplier alpha; {name} does not')
  return fields


def convert(name: str, path, *, alpha: float = 1.0,
            imagenet_rescale: str = 'auto') -> imported.Imported:
  """Converts the Keras file ``path`` into variables of the dvl model
  ``name``; raises WeightMismatchError (nothing written) when it does not fit.

  ``alpha`` is MobileNet's width multiplier. ``imagenet_rescale`` says
  whether an EfficientNet file was used with Keras's extra per-channel
  rescaling for its ImageNet weights: 'auto' reads it from a ``.keras``
  config, else assumes it for the published ImageNet statistics.
  """
  family = keras_layouts.family(name)
  if imagenet_rescale not in RESCALE_MODES:
    raise ValueError(f'imagenet_rescale={imagenet_rescale!r}; choose one of: '
                     f'{", ".join(RESCALE_MODES)}')
  if imagenet_rescale != 'auto' and family.preprocessing != 'in_model':
    raise ValueError(f'imagenet_rescale={imagenet_rescale!r} applies to '
                     f'EfficientNet only; {name} preprocesses as '
                     f'{family.preprocessing!r}')
  fields = _fields(family, name, alpha)
  model = models.build_model(name, **fields)
  weights = keras_files.read(path)
  variant = f' alpha={alpha:g}' if family.alpha else ''

  def fail(problem: str):
    raise WeightMismatchError(
        f'{path} does not fit dvl {name} (Keras '
        f'{family.application}{variant}): {problem}. Is the file for another model or variant (say '
        'EfficientNetB1 weights for B0, or another MobileNet alpha)? '
        'Nothing was written.')

  shapes = _dvl_shapes(model)
  flat, used = _collect(family.rules(model), weights, shapes, fail)
  _check_extra(weights, used, fail)
  variables = scan.relayout(_assemble(flat, shapes),
                            _abstract_variables(model))
  info = {
      'model': name, 'fields': fields,
      'source': {'framework': 'keras', 'application': family.application,
                 'file': str(Path(path).expanduser().resolve()),
                 'format': weights.format,
                 'folded_biases': sum(k.startswith('fold:') for k in flat)},
      'preprocessing': _preprocessing(family, flat, weights, imagenet_rescale),
      'resolution': model.default_resolution,
  }
  return imported.Imported(model, variables, info)


def run(config, workdir: str) -> imported.Imported:
  """The ``import_weights`` job for ``config.source == 'keras'``."""
  result = convert(config.model, config.path, alpha=config.alpha,
                   imagenet_rescale=config.imagenet_rescale)
  imported.save(workdir, result)
  params = sum(int(np.prod(v.shape)) for v in
               jax.tree_util.tree_leaves(result.variables['params']))
  print(f"imported {result.info['source']['application']} "
        f"({result.info['source']['format']}) into {config.model}: "
        f'{params:,} params; preprocessing '
        f"{result.info['preprocessing']['name']}; written to {workdir}")
  return result
