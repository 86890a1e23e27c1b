"""Exact cost accounting: trainable parameters, multiply-accumulates and
activations.

Conventions (``../shared/REFERENCE.md``):

- **params**: trainable parameters, the ``params`` collection (weights,
  biases, BatchNorm scale and offset); BatchNorm running statistics, which
  live in ``batch_stats``, are not counted.
- **MACs**: multiply-accumulates of convolutions and dense layers for one
  image, every kernel tap counted (also the taps that fall on SAME padding),
  as the papers and reference implementations count them. Pooling,
  normalisation, activations and additions are not counted.
- **activations**: elements of the output of every convolution and dense
  layer for one image, the convention of Dollár, Singh and Girshick 2021
  ("Fast and Accurate Model Scaling", Sec. 3; pycls and fvcore's
  ``ActivationCountAnalysis``): exactly the layers whose MACs are counted,
  squeeze-and-excitation convolutions and the classifier included.
  BatchNorm, activation functions, pooling and additions are not counted.

``count`` gets all three by tracing the model's own ``init`` under
``jax.eval_shape`` with an interceptor on every convolution and dense layer:
nothing is compiled or allocated, so EfficientNet-B7 at 600×600 counts in
seconds. ``xla_macs`` asks XLA instead (``cost_analysis()['flops'] / 2`` of
the lowered evaluation step), which differs by convention: XLA leaves out the
taps on SAME padding and adds the elementwise work (BatchNorm, activations,
pooling, residual additions, squeeze-and-excitation gating) at one flop per
element, i.e. half a MAC.
"""

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from dvl import layers
from dvl.models import scan


@dataclasses.dataclass(frozen=True)
class LayerCost:
  """The MACs and output of one convolution or dense layer, for one example.

  ``output_shape`` is one example's output shape (no batch axis).
  """
  path: str
  kind: str
  macs: int
  output_shape: tuple

  @property
  def activations(self) -> int:
    """Elements of the layer's output for one example."""
    return math.prod(self.output_shape)


@dataclasses.dataclass(frozen=True)
class Cost:
  """Trainable parameters, per-example MACs and activations of a model at
  one input."""
  params: int
  macs: int
  layers: tuple[LayerCost, ...]

  @property
  def activations(self) -> int:
    """Per-example output elements of the counted layers, summed."""
    return sum(layer.activations for layer in self.layers)


def _layer_macs(module, x, y) -> tuple[str, int] | None:
  """(kind, MACs per example) of one call, or None when it is not counted."""
  if not isinstance(module, (layers.DepthwiseConv, nn.Conv, nn.ConvTranspose,
                             layers.UpConv, nn.Dense)):
    return None
  out_per_example = math.prod(y.shape[1:])
  if isinstance(module, layers.DepthwiseConv):
    kh, kw = layers._pair(module.kernel_size)
    return 'depthwise', out_per_example * kh * kw
  if isinstance(module, nn.Conv):
    taps = math.prod(module.kernel_size)
    return 'conv', out_per_example * taps * x.shape[-1] // module.feature_group_count
  if isinstance(module, nn.ConvTranspose):
    taps = math.prod(module.kernel_size)
    return 'conv_transpose', math.prod(x.shape[1:]) * taps * y.shape[-1]
  if isinstance(module, layers.UpConv):
    taps = module.stride ** 2
    return 'conv_transpose', math.prod(x.shape[1:]) * taps * y.shape[-1]
  return 'dense', out_per_example * x.shape[-1]


def count(model: nn.Module, input_shape) -> Cost:
  """Counts ``model``'s trainable parameters, MACs and activations for one
  example.

  ``input_shape`` is one NHWC example's (H, W, C) or a batch's
  (N, H, W, C); MACs and activations are per example either way.
  """
  if len(input_shape) == 3:
    input_shape = (1, *input_shape)
  # A scanned stage traces its block once: count the unrolled network.
  model = scan.unrolled(model)
  records = []

  def interceptor(next_fun, args, kwargs, context):
    y = next_fun(*args, **kwargs)
    if context.method_name == '__call__' and args:
      found = _layer_macs(context.module, args[0], y)
      if found is not None:
        path = '/'.join(context.module.scope.path)
        records.append(LayerCost(path, found[0], int(found[1]),
                                 tuple(y.shape[1:])))
    return y

  x = jax.ShapeDtypeStruct(input_shape, jnp.float32)
  with nn.intercept_methods(interceptor):
    variables = jax.eval_shape(
        lambda x: model.init({'params': jax.random.key(0),
                              'dropout': jax.random.key(1)}, x, train=False), x)
  params = sum(math.prod(v.shape)
               for v in jax.tree_util.tree_leaves(variables.get('params', {})))
  return Cost(params=int(params), macs=sum(r.macs for r in records),
              layers=tuple(records))


def xla_macs(model: nn.Module, input_shape) -> float:
  """XLA's count for one example: ``flops / 2`` of the lowered eval step.

  The step is lowered, not compiled. See the module docstring for how its
  convention differs from ``count``. Scanned stages are lowered unrolled
  (XLA counts a loop's body once).
  """
  if len(input_shape) == 3:
    input_shape = (1, *input_shape)
  model = scan.unrolled(model)
  x = jax.ShapeDtypeStruct(input_shape, jnp.float32)
  variables = jax.eval_shape(
      lambda x: model.init({'params': jax.random.key(0)}, x, train=False), x)
  lowered = jax.jit(lambda v, x: model.apply(v, x, train=False)).lower(
      variables, x)
  analysis = lowered.cost_analysis()
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0]
  return float(analysis['flops']) / 2 / input_shape[0]
