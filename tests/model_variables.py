"""Model variables for tests, without compiling ``init``."""

import jax
import numpy as np


def random_variables(model, x, seed=0):
  """Variables with init's structure, filled by numpy (no init compile):
  kernels ~ N(0, 1/fan_in), BatchNorm at identity, biases zero."""
  rng = np.random.default_rng(seed)
  abstract = jax.eval_shape(
      lambda: model.init(jax.random.key(0), x, train=False))

  def fill(path, leaf):
    name = jax.tree_util.keystr(path[-1:])
    if 'kernel' in name:
      fan_in = max(1, int(np.prod(leaf.shape[:-1])))
      return rng.normal(0, fan_in ** -0.5, leaf.shape).astype(np.float32)
    if 'scale' in name or 'var' in name:
      return np.ones(leaf.shape, np.float32)
    return np.zeros(leaf.shape, np.float32)

  return jax.tree_util.tree_map_with_path(fill, abstract)
