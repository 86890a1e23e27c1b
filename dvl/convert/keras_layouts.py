"""Keras weight layouts, read from the model specs (``dvl.models.spec``).

A model's spec says, where it has a ``keras.applications`` counterpart,
which layout its weights follow (``Keras.rules``: the model -> a list of
``Rule``, one per Keras layer, naming the dvl module that takes its
weights), which preprocessing the Keras weights expect and which fields the
import sets so that dvl computes what Keras computes (BatchNorm epsilon,
TensorFlow SAME padding). ``family(name)`` returns it, or refuses with the
spec's reason and the importable models.
"""

from dvl import models
from dvl.models.spec import Keras, Rule, conv_bn  # noqa: F401 (re-exported)

# The names Keras gives the arrays of each kind of layer, in its order.
ROLES = {
    'conv': ('kernel', 'bias'),
    'depthwise': ('kernel', 'bias'),
    'dense': ('kernel', 'bias'),
    'conv_dense': ('kernel', 'bias'),
    'bn': ('gamma', 'beta', 'moving_mean', 'moving_variance'),
    'layer_norm': ('gamma', 'beta'),
    'layer_scale': ('gamma',),
    'normalization': ('mean', 'variance', 'count'),
}


def importable() -> list[str]:
  """The registered models whose Keras weights import."""
  return [n for n, s in models.MODELS.items()
          if s.keras is not None and s.keras.rules is not None]


def family(name: str) -> Keras:
  """The Keras counterpart of a dvl model; raises with the choices."""
  keras = models.get_spec(name).keras
  if keras is not None and keras.rules is None:
    raise ValueError(f'cannot import Keras weights into {name!r}: '
                     + keras.no_import)
  if keras is None:
    raise ValueError(f'no Keras application matches the dvl model {name!r}; '
                     f'importable models: {", ".join(importable())}')
  return keras
