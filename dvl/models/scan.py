"""Stages of repeated blocks, unrolled or as one scanned layer.

A stage of ``n`` blocks whose first block changes the shape (stride,
channels) and whose other ``n - 1`` blocks keep it can run those ``n - 1``
as one ``nn.scan`` over stacked parameters: the train step then traces and
compiles one block per stage instead of every block, so a deep network
compiles about as fast as a shallow one. Outputs and gradients are those of
the unrolled stage; only the parameter layout differs.

Layouts. Unrolled, block ``j`` of stage ``stage3`` is the subtree
``stage3_block{j}``. Scanned, blocks 2…n are one subtree
``stage3_block2to{n}/block`` whose leaves carry a leading axis of ``n - 1``.
``unstack`` turns any tree (variables, optimizer state, a whole train state)
into the unrolled layout, ``relayout(tree, like)`` into the layout of
``like``; the conversion only moves and stacks arrays, so a round trip gives
back the same arrays. Checkpoints, imported weights and the Keras rules
(which name blocks one by one) go through these.

Drop-path rates differ from block to block; in a scanned stage each block's
rate is a scanned input of the step.

On the CPU a scanned stage recomputes its blocks' activations in the
backward pass (``nn.remat`` around the scanned block; ``remat_scanned``):
XLA's CPU backend would otherwise stack every block's residuals in buffers
it fills with zeros each step and read them back through slices it fuses
into the depthwise tap loops, which costs more than the recomputation.

The families with repeated blocks (EfficientNet, EfficientNetV2,
MobileNetV1/V2, ResNet, RegNet, ConvNeXt) have a ``scan`` field, False by
default: on the CPU the scanned step compiles faster only for deep
networks and runs slower at small batches (docs/speed.md), and on
accelerators that is not measured yet.
"""

from collections.abc import Mapping, Sequence
import dataclasses
import re
import warnings
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

# Fewest repeated blocks worth a scan: one block gains nothing from it.
MIN_SCANNED = 2
_SCANNED = re.compile(r'^(?P<prefix>.+)_block(?P<first>\d+)to(?P<last>\d+)$')
_warned: set = set()


def scanned_name(name: str, first: int, last: int) -> str:
  """The subtree name of blocks ``first…last`` of stage ``name``."""
  return f'{name}_block{first}to{last}'


class _Step(nn.Module):
  """One block of a scanned stage: the carry is the activation, the scanned
  input the block's drop-path rate (ignored by blocks without one)."""
  block: Any
  fields: Mapping
  train: bool
  with_rate: bool

  @nn.compact
  def __call__(self, x, rate):
    fields = dict(self.fields)
    if self.with_rate:
      fields['drop_path'] = rate
    return self.block(**fields, name='block')(x, train=self.train), None


def remat_scanned(block) -> bool:
  """Whether a scanned stage of ``block`` recomputes its activations in
  the backward pass: on the CPU backend, unless ``block`` already does
  (``layers.remat``)."""
  return (jax.default_backend() == 'cpu'
          and not getattr(block, 'rematerialised', False))


def _keeps_shape(block, fields: dict, x) -> bool:
  """Whether ``block(**fields)`` maps an input shaped like ``x`` to the same
  shape (traced abstractly, nothing computed)."""
  module = block(**fields, parent=None)
  keys = {'params': jax.random.key(0), 'dropout': jax.random.key(0)}
  try:
    out = jax.eval_shape(
        lambda v: module.init_with_output(keys, v, train=False)[0],
        jax.ShapeDtypeStruct(x.shape, x.dtype))
  except Exception:  # pylint: disable=broad-except
    return False
  out = out[0] if isinstance(out, tuple) else out
  return tuple(out.shape) == tuple(x.shape) and out.dtype == x.dtype


def stage(block, fields: Mapping, count: int, x, *, train: bool, name: str,
          scan: bool, first: Mapping | None = None,
          rates: Sequence[float] | None = None):
  """Runs the ``count`` blocks of stage ``name`` on ``x`` and returns the
  output. Call it inside the parent's ``nn.compact`` method.

  Every block is ``block(**fields, [drop_path=rate])`` called as
  ``(x, train=train)``; for the first, the fields in ``first`` (its stride,
  say) replace or add to ``fields``. ``rates`` gives each block's ``drop_path`` (None: the field
  is not passed). With ``scan``, blocks 2…count run as one scanned layer
  when there are at least ``MIN_SCANNED`` of them and they keep their input
  shape; a stage whose repeated blocks change the shape is unrolled, with a
  warning naming it once.
  """
  if rates is not None and len(rates) != count:
    raise ValueError(f'{name}: {len(rates)} drop-path rates for {count} '
                     'blocks')
  fields = dict(fields)

  def one(j: int, extra: Mapping):
    rate = {} if rates is None else {'drop_path': float(rates[j - 1])}
    return block(**{**fields, **extra, **rate}, name=f'{name}_block{j}')

  if count < 1:
    return x
  x = one(1, first or {})(x, train=train)
  repeated = count - 1
  if scan and repeated >= MIN_SCANNED:
    probe = dict(fields, **({} if rates is None else {'drop_path': 0.0}))
    if _keeps_shape(block, probe, x):
      body = nn.remat(_Step) if remat_scanned(block) else _Step
      steps = nn.scan(body, variable_axes={True: 0},
                      split_rngs={True: True}, in_axes=0, length=repeated)
      rate = jnp.asarray(np.zeros(repeated) if rates is None
                         else np.asarray(rates[1:]), jnp.float32)
      x, _ = steps(block, fields, train, rates is not None,
                   name=scanned_name(name, 2, count))(x, rate)
      return x
    if name not in _warned:
      _warned.add(name)
      warnings.warn(f'{name}: its blocks 2-{count} change the shape of their '
                    'input, so they cannot run as one scanned layer; they are '
                    'unrolled', stacklevel=3)
  for j in range(2, count + 1):
    x = one(j, {})(x, train=train)
  return x


def unrolled(model):
  """``model`` with its stages unrolled (itself when it has no ``scan``
  field): the layout the Keras rules name, and what cost counting traces."""
  if 'scan' in {f.name for f in dataclasses.fields(model)} and model.scan:
    return model.clone(scan=False)
  return model


# -- Layout conversion ---------------------------------------------------------


def is_mapping(x) -> bool:
  return isinstance(x, Mapping)


def _slice(leaf, index: int):
  if isinstance(leaf, jax.ShapeDtypeStruct):
    return jax.ShapeDtypeStruct(leaf.shape[1:], leaf.dtype)
  return leaf[index]


def _stack(leaves: list):
  if isinstance(leaves[0], jax.ShapeDtypeStruct):
    return jax.ShapeDtypeStruct((len(leaves), *leaves[0].shape),
                                leaves[0].dtype)
  if isinstance(leaves[0], np.ndarray):
    return np.stack(leaves)
  return jnp.stack(leaves)


def unstack_mapping(tree: Mapping) -> dict:
  """One mapping (variables, say) in the unrolled layout."""
  out = {}
  for key, value in tree.items():
    match = _SCANNED.match(str(key))
    if match and is_mapping(value) and set(value) == {'block'}:
      first, last = int(match['first']), int(match['last'])
      inner = unstack_mapping(value['block'])
      for index, j in enumerate(range(first, last + 1)):
        out[f"{match['prefix']}_block{j}"] = jax.tree.map(
            lambda leaf, i=index: _slice(leaf, i), inner)
    else:
      out[key] = unstack_mapping(value) if is_mapping(value) else value
  return out


def stack_like(tree: Mapping, like: Mapping) -> dict:
  """An unrolled mapping with the blocks stacked where ``like`` (a mapping
  of arrays or shapes) has a scanned stage."""
  out = {}
  for key, value in tree.items():
    out[key] = (stack_like(value, like[key])
                if is_mapping(value) and is_mapping(like.get(key)) else value)
  for key in like:
    match = _SCANNED.match(str(key))
    if key in tree or not match:
      continue
    names = [f"{match['prefix']}_block{j}"
             for j in range(int(match['first']), int(match['last']) + 1)]
    if not all(n in out for n in names):
      continue  # left as it is: the caller's check names what is missing
    blocks = [out.pop(n) for n in names]
    out[key] = {'block': stack_like(
        jax.tree.map(lambda *leaves: _stack(list(leaves)), *blocks),
        like[key]['block'])}
  return out


def unstack(tree):
  """``tree`` (variables, optimizer state, any pytree of mappings) with
  every scanned stage split into its blocks: the unrolled layout."""
  return jax.tree.map(
      lambda x: unstack_mapping(x) if is_mapping(x) else x, tree,
      is_leaf=is_mapping)


def relayout(tree, like):
  """``tree`` in the layout of ``like`` (a tree of the same model, concrete
  or abstract, scanned or not): stages are stacked where ``like`` scans
  them and split where it does not. Anything else is left as it is."""
  flat, treedef = jax.tree_util.tree_flatten(unstack(tree), is_leaf=is_mapping)
  like_flat, like_def = jax.tree_util.tree_flatten(like, is_leaf=is_mapping)
  if treedef != like_def:
    return tree
  return treedef.unflatten(
      stack_like(t, l) if is_mapping(t) and is_mapping(l) else t
      for t, l in zip(flat, like_flat))
