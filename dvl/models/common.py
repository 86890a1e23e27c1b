"""What every dvl model shares: the input check and the classifier head."""

import flax.linen as nn
import jax.numpy as jnp


def check_input(x, *, model: str, min_resolution: int, stride: int):
  """Raises a ValueError when ``x`` is not an NHWC batch the model can take.

  ``stride`` is the model's total downsampling; an input smaller than
  ``min_resolution`` would collapse a feature map to nothing.
  """
  if x.ndim != 4:
    raise ValueError(f'{model} takes NHWC batches (4 axes); got shape '
                     f'{tuple(x.shape)}. Add a batch axis with x[None].')
  h, w = x.shape[1:3]
  if min(h, w) < min_resolution:
    raise ValueError(
        f'{model} cannot take a {h}x{w} input: it downsamples by {stride} and '
        f'its layers need at least {min_resolution}x{min_resolution}, or a '
        'feature map collapses to zero. Resize the input (config.input.'
        'resolution) or pick a model with less downsampling.')


class Classifier(nn.Module):
  """Dropout, then a dense layer to ``num_classes`` logits.

  With ``num_classes == 0`` the model is a headless backbone and the
  pre-logits features are returned in place of logits.
  """
  num_classes: int
  dropout: float = 0.0
  dtype: object = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    if self.num_classes == 0:
      return x
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return nn.Dense(self.num_classes, dtype=self.dtype, name='dense')(x)


def positive(value: float, what: str, model: str) -> float:
  """Validates a scaling multiplier (width, depth, resolution)."""
  if not value > 0:
    raise ValueError(f'{model}: {what} multiplier must be > 0; got {value}. '
                     'Use 1.0 for the baseline.')
  return value

