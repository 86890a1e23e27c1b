"""What dvl knows about a model, declared once in the model's own file.

Every family file ends with ``SPECS``, a tuple of ``ModelSpec``: the module
and the fields of each registered variant, its task, its input (channels,
default side, the resize of ImageNet evaluation), what depth and width mean
when it is scaled, its published cost, and its Keras peer and weight layout.
``dvl.models.MODELS`` is ``register(lenet.SPECS, vgg.SPECS, ...)``: one line
per family. ``register`` checks the contract below for every spec and raises
``SpecError`` naming the model and what it lacks, so a broken model fails
when ``dvl.models`` is imported, not late in a run.

The contract of a registered module (``check``):

* a Flax linen module whose ``__call__(x, *, train)`` takes NHWC images and
  returns ``(output, features)``;
* ``default_resolution`` (an int, class variable or property of the fields)
  equal to the spec's ``resolution``;
* classifiers: ``min_resolution`` (the smallest side the scaling search may
  give them) and ``num_classes``, where 0 builds the model headless (dense
  models check their own input sides);
* float ``depth`` and ``width`` fields when the spec can scale;
* a ``remat`` field exactly when the spec says it supports remat;
* every field of the spec is a field of the module.
"""

import dataclasses
import inspect
from typing import Callable, Iterable, Mapping

import flax.linen as nn

TASKS = ('classification', 'detection', 'segmentation', 'reconstruction')
RESIZES = ('bilinear', 'bicubic')
# Presets of dvl.convert.preprocess, or the Keras model normalising its own
# input ('in_model').
PREPROCESSING = ('tf', 'caffe', 'torch', 'in_model')


class SpecError(TypeError):
  """A model spec that breaks the contract; says which model and what."""


@dataclasses.dataclass(frozen=True)
class Rule:
  """One Keras layer and where its weights go in dvl.

  Attributes:
    kind: 'conv', 'depthwise' (Keras kernel (kh, kw, C, 1), dvl's
      (kh, kw, 1, C)), 'dense', 'conv_dense' (a 1×1 convolution classifier
      read as a dense layer), 'bn', 'layer_norm' (gamma, beta to a Flax
      LayerNorm's scale, bias), 'layer_scale' (a per-channel factor, gamma,
      to the ``scale`` param of the module at ``dvl``), or 'normalization'
      (Keras's input normalisation, which becomes the preprocessing spec).
    keras: the Keras layer name.
    dvl: the dvl module path holding the weights, e.g.
      'stage2_block1/expand/conv' ('' for 'normalization').
    fold: for a convolution whose Keras bias has no place in dvl, the path
      of the dvl BatchNorm whose moving mean absorbs it.
    auto_named: Keras named the layer itself, so the file may carry a
      numeric suffix ('normalization_1').
  """
  kind: str
  keras: str
  dvl: str
  fold: str | None = None
  auto_named: bool = False


def conv_bn(conv: str, bn: str, dvl: str, kind: str = 'conv',
            fold: bool = False) -> list[Rule]:
  """A Keras convolution and its BatchNorm onto one dvl ``ConvBN``."""
  norm = f'{dvl}/norm/bn'
  return [Rule(kind, conv, f'{dvl}/conv', fold=norm if fold else None),
          Rule('bn', bn, norm)]


@dataclasses.dataclass(frozen=True)
class Scaling:
  """How the compound-scaling functions scale a family.

  Attributes:
    family: the name models sharing these rules are listed under.
    semantics: what the ``depth`` and ``width`` multipliers do to it.
    proxy: the fields of a small variant for 32×32 images, the baseline
      that a CPU-sized scaling search scales (``experiments/
      scaling_search.py``).
  """
  family: str
  semantics: str
  proxy: Mapping = dataclasses.field(
      default_factory=lambda: dict(width=0.25))


@dataclasses.dataclass(frozen=True)
class Reference:
  """A variant's published cost.

  Attributes:
    params: exact trainable parameters of the reference (None: unpublished).
    macs_m: multiply-adds in millions at the default resolution.
    source: where the figures come from.
    tolerance: allowed relative deviation of the counted MACs.
    params_tolerance: allowed relative deviation of the params (0: exact).
    activations_m: activations in millions at the default resolution, where
      there is a figure: the output elements of every convolution and dense
      layer for one image (Dollár et al. 2021, pycls's MODEL_ZOO), exact as
      fvcore's ``ActivationCountAnalysis`` counts them on timm's definition
      of the same architecture (``../shared/REFERENCE.md``).
    activations_tolerance: allowed relative deviation of the counted
      activations.
  """
  params: int | None
  macs_m: float
  source: str
  tolerance: float = 0.02
  params_tolerance: float = 0.0
  activations_m: float | None = None
  activations_tolerance: float = 0.02


@dataclasses.dataclass(frozen=True)
class Keras:
  """A variant's ``keras.applications`` counterpart.

  Attributes:
    application: the ``keras.applications`` name (e.g. 'EfficientNetB0'):
      the throughput peer and the weight file's model.
    rules: model -> its weight layout (a list of ``Rule``); None when the
      weights cannot be imported, and ``no_import`` says why.
    preprocessing: the input preprocessing the Keras weights expect (a
      preset of ``dvl.convert.preprocess``, a spec dict of it for a fixed
      preprocessing no preset names, or 'in_model').
    fields: fields the import sets on the dvl model so that it computes
      what Keras computes (BatchNorm epsilon, TensorFlow SAME padding).
    alpha: the Keras model has a width multiplier ``alpha``.
    peer: the application can stand as a throughput peer (built with
      ``weights=None`` at any side).
    no_import: why the weights cannot be imported (when ``rules`` is None).
  """
  application: str
  rules: Callable | None = None
  preprocessing: str | Mapping = 'tf'
  fields: Mapping = dataclasses.field(default_factory=dict)
  alpha: bool = False
  peer: bool = True
  no_import: str = ''


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """Everything dvl knows about one registered model.

  Attributes:
    name: the registry name.
    module: the Flax module class.
    fields: the fields that make this variant (the module's defaults fill
      the rest).
    task: one of ``TASKS``.
    channels: input channels of the default data.
    resolution: the default input side (the module's
      ``default_resolution`` for these fields).
    resize: the reference's resize in ImageNet evaluation.
    scaling: how it scales, or None when the scaling functions refuse it.
    reference: the published cost, or None.
    keras: the Keras counterpart, or None.
    remat: the module recomputes each block's activations when asked
      (``remat`` field).
  """
  name: str
  module: type
  fields: Mapping = dataclasses.field(default_factory=dict)
  task: str = 'classification'
  channels: int = 3
  resolution: int = 224
  resize: str = 'bilinear'
  scaling: Scaling | None = None
  reference: Reference | None = None
  keras: Keras | None = None
  remat: bool = False

  def defaults(self) -> dict:
    """Every field of the module with a default, the variant's applied."""
    out = {f.name: f.default for f in dataclasses.fields(self.module)
           if f.name not in ('parent', 'name') and f.init
           and f.default is not dataclasses.MISSING}
    out.update(self.fields)
    return out

  def build(self, **overrides) -> nn.Module:
    """The module with the variant's fields and ``overrides``."""
    return self.module(**{**self.fields, **overrides})


def _fail(spec, message: str):
  name = getattr(spec, 'name', spec)
  raise SpecError(f'model {name!r}: {message}')


def check(spec: ModelSpec) -> None:
  """Raises SpecError when ``spec`` breaks the contract (module doc)."""
  if not isinstance(spec, ModelSpec):
    raise SpecError(f'a registry entry must be a ModelSpec; got {spec!r}')
  if not spec.name or not isinstance(spec.name, str):
    _fail(spec, 'the spec has no name')
  module = spec.module
  if not (inspect.isclass(module) and issubclass(module, nn.Module)):
    _fail(spec, f'module must be a flax.linen.Module class; got {module!r}')
  if spec.task not in TASKS:
    _fail(spec, f'task {spec.task!r} is not one of {TASKS}')
  if spec.resize not in RESIZES:
    _fail(spec, f'resize {spec.resize!r} is not one of {RESIZES}')
  if not (isinstance(spec.channels, int) and spec.channels > 0):
    _fail(spec, f'channels must be a positive int; got {spec.channels!r}')
  fields = {f.name: f for f in dataclasses.fields(module)
            if f.init and f.name not in ('parent', 'name')}
  unknown = sorted(set(spec.fields) - set(fields))
  if unknown:
    _fail(spec, f'fields {unknown} are not fields of {module.__name__}')
  missing = [n for n, f in fields.items() if n not in spec.fields and
             f.default is dataclasses.MISSING and
             f.default_factory is dataclasses.MISSING]
  if missing:
    _fail(spec, f'{module.__name__} fields {missing} have no default and the '
          'spec sets none')
  if spec.task == 'classification':
    if 'min_resolution' not in dir(module):
      _fail(spec, f'{module.__name__} has no min_resolution (the smallest '
            'input side it takes)')
    if 'num_classes' not in fields:
      _fail(spec, f'{module.__name__} has no num_classes field (0 builds a '
            'classifier headless)')
  if spec.scaling is not None:
    for axis in ('depth', 'width'):
      default = spec.defaults().get(axis)
      if not isinstance(default, float):
        _fail(spec, f'its spec can scale, but {module.__name__} has no float '
              f'{axis!r} field (set scaling=None, or add the field)')
  if spec.remat != ('remat' in fields):
    _fail(spec, 'spec.remat must be True exactly when the module has a '
          f'remat field ({module.__name__} has {"one" if "remat" in fields else "none"})')
  if spec.reference is not None:
    ref = spec.reference
    if ref.params is not None and not (isinstance(ref.params, int)
                                       and ref.params > 0):
      _fail(spec, f'reference params must be a positive int; got {ref.params!r}')
    if not ref.macs_m > 0 or not ref.source:
      _fail(spec, 'a reference needs positive macs_m and its source')
  if spec.keras is not None:
    keras = spec.keras
    if not keras.application:
      _fail(spec, 'keras.application is empty')
    if keras.rules is None and keras.peer and not keras.no_import:
      _fail(spec, 'a Keras peer without weight rules must say why '
            '(keras.no_import)')
    if (keras.rules is not None and isinstance(keras.preprocessing, str)
        and keras.preprocessing not in PREPROCESSING):
      _fail(spec, f'keras.preprocessing {keras.preprocessing!r} is not one of '
            f'{PREPROCESSING}')
  model = spec.build()
  side = model.default_resolution
  if side != spec.resolution:
    _fail(spec, f'the module builds for {side}x{side} inputs but the spec says '
          f'resolution={spec.resolution}')


def register(*families: Iterable[ModelSpec]) -> dict[str, ModelSpec]:
  """The registry of the given families' specs, each checked; raises
  SpecError for a broken spec or a name registered twice."""
  out = {}
  for specs in families:
    for spec in specs:
      check(spec)
      if spec.name in out:
        raise SpecError(
            f'two models register the name {spec.name!r}: '
            f'{out[spec.name].module.__name__} and {spec.module.__name__}')
      out[spec.name] = spec
  return out
