"""Optimizers, schedules, weight penalties and weight EMA for dvl.

Everything is built from the ``config.optim`` section
(``default_optim_config`` lists its fields): ``make_optimizer`` gives the
optax transformation and its learning-rate schedule, ``regularization`` the
penalty to add to the loss, and ``ema_init`` / ``ema_update`` the averaged
weights used for evaluation when ``ema_decay > 0``.
"""

from dvl.optim.config import (OPTIMIZERS, REFERENCE_BATCH_SIZE, SCHEDULES,
                              default_optim_config, validate_optim_config)
from dvl.optim.ema import EmaState, ema_decay_at, ema_init, ema_update
from dvl.optim.lr_range import (LrSuggestion, smooth_losses,
                                suggest_learning_rate)
from dvl.optim.optimizers import make_optimizer, peak_learning_rate
from dvl.optim.param_groups import (freeze, freeze_labels, map_with_names,
                                    path_name, scale_by_lr_multipliers)
from dvl.optim.regularizers import (decay_mask, elastic_net_penalty,
                                    l1_penalty, l2_penalty, regularization)
from dvl.optim.schedules import lr_range_schedule, make_schedule

__all__ = [
    'OPTIMIZERS', 'REFERENCE_BATCH_SIZE', 'SCHEDULES', 'EmaState',
    'LrSuggestion', 'decay_mask', 'default_optim_config', 'ema_decay_at',
    'ema_init', 'ema_update', 'elastic_net_penalty', 'freeze',
    'freeze_labels', 'l1_penalty', 'l2_penalty', 'lr_range_schedule',
    'make_optimizer', 'make_schedule', 'map_with_names', 'path_name',
    'peak_learning_rate', 'regularization', 'scale_by_lr_multipliers',
    'smooth_losses', 'suggest_learning_rate', 'validate_optim_config',
]
