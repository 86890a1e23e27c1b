"""Parameter groups by path: names, freezing and learning-rate multipliers.

A parameter's name is its pytree path joined by '/', e.g.
``stage1_block0/conv1/kernel`` for ``params['stage1_block0']['conv1']
['kernel']``. Groups are chosen with ``re.fullmatch`` on that name, so
``stage1.*`` is everything under ``stage1``, and ``.*bias`` every bias.
"""

from typing import Any, Callable, Sequence, Tuple

import jax
import jax.numpy as jnp
import optax

from dvl.optim.config import compile_regex

FROZEN, TRAINABLE = 'frozen', 'trainable'


def _key_name(key) -> str:
  for attr in ('key', 'name', 'idx'):
    if hasattr(key, attr):
      return str(getattr(key, attr))
  return str(key)


def path_name(path) -> str:
  """'/'-joined name of a ``jax.tree_util`` key path."""
  return '/'.join(_key_name(key) for key in path)


def map_with_names(fn: Callable[[str, Any], Any], tree: Any) -> Any:
  """``jax.tree.map`` where ``fn`` receives each leaf's name and value."""
  return jax.tree_util.tree_map_with_path(
      lambda path, leaf: fn(path_name(path), leaf), tree)


def freeze_labels(regex: str) -> Callable[[Any], Any]:
  """Labels for ``optax.multi_transform``: FROZEN where the name matches."""
  pattern = compile_regex(regex, 'freeze')
  return lambda params: map_with_names(
      lambda name, _: FROZEN if pattern.fullmatch(name) else TRAINABLE, params)


def freeze(inner: optax.GradientTransformation,
           regex: str) -> optax.GradientTransformation:
  """``inner`` for the trainable parameters; zero updates for frozen ones.

  Frozen parameters get exact zero updates and no optimizer state, and their
  gradients do not count towards a global-norm clip inside ``inner``.
  """
  return optax.multi_transform({FROZEN: optax.set_to_zero(),
                                TRAINABLE: inner}, freeze_labels(regex))


def scale_by_lr_multipliers(
    rules: Sequence[Tuple[str, float]]) -> optax.GradientTransformation:
  """Multiplies each update by the multiplier of the first matching rule.

  Placed last in the chain, after the learning rate, a multiplier ``m`` is the
  same as training that group with ``m`` times the learning rate (and ``m``
  times the decoupled weight decay): every transform after the adaptive
  scaling is linear. Names no rule matches keep multiplier 1.
  """
  compiled = [(compile_regex(regex, 'lr_multipliers'), float(m))
              for regex, m in rules]

  def multiplier(name: str) -> float:
    return next((m for pattern, m in compiled if pattern.fullmatch(name)), 1.0)

  def update_fn(updates, state, params=None):
    del params
    scaled = map_with_names(
        lambda name, u: u * jnp.asarray(multiplier(name), u.dtype), updates)
    return scaled, state

  return optax.GradientTransformation(lambda _: optax.EmptyState(), update_fn)
