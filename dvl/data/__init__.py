"""dvl's input pipeline: every dataset is read through TFDS.

``make_pipeline(config.input, seed=...)`` returns a ``Pipeline`` with
``train_iter(start_step)``, ``eval_iter(split)`` and the dataset's facts;
``default_input_config()`` lists every field of ``config.input``.
"""

from dvl.data.datasets import DVL_DATASETS
from dvl.data.pipeline import Pipeline
from dvl.data.pipeline import default_input_config
from dvl.data.pipeline import make_pipeline

__all__ = ['DVL_DATASETS', 'Pipeline', 'default_input_config', 'make_pipeline']
