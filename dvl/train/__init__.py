"""Training: the train state, the pure steps, data parallelism and the loop.

``config.train`` is described by ``default_train_config``; the ``train`` job
is ``run(config, workdir)``. Modules:

* ``state``: ``TrainState`` and building the model from ``config.model``;
* ``steps``: the pure ``train_step`` and ``eval_step``;
* ``parallel``: the device mesh, batch sharding, multi-host start-up;
* ``transfer``: initialising from another run (``train.init_from``);
* ``job``: resolving the config and building a ``Job``;
* ``loop``: the loop, checkpoints, NaN checks, evaluation and the summary.
"""

from dvl.train.config import default_train_config, validate_train_config
from dvl.train.loop import NonFiniteLossError, evaluate, run
from dvl.train.job import Job, setup, state_template
from dvl.train.state import TrainState, model_from_config
from dvl.train.steps import StepConfig, eval_step, train_step

__all__ = [
    'Job', 'NonFiniteLossError', 'StepConfig', 'TrainState',
    'default_train_config', 'eval_step', 'evaluate', 'model_from_config',
    'run', 'setup',
    'state_template', 'train_step', 'validate_train_config',
]
