"""A trial: one scaled network trained once, and the config that trains it.

A ``Trial`` names a point of the sweep (its kind, φ, coefficients, the
nominal multipliers ``d, w, r`` and the seed). ``Planner.plan`` turns it into
a ``Planned`` trial: the full train config derived from the sweep's own
``model``, ``input``, ``optim`` and ``train`` sections, with the model scaled
by ``dvl.scaling.scale`` and the input side ``base × r`` rounded to a
multiple of ``sweep.resolution_multiple``, plus its params and MACs, counted
before anything trains. A network that cannot be built at its side (a
feature map collapses to zero) is planned with an ``error`` instead, which
the sweep records as the trial's failure.

A trial's id is ``<kind><φ>-<hash>``, the hash being that of its point and
its train config, so the same sweep plans the same ids on every run.
"""

import copy
import dataclasses
import hashlib
import json
import math

import ml_collections

from dvl import flops, scaling
from dvl.data import make_pipeline
from dvl.train.state import model_from_config

# 'strategy': a scaling strategy of ``sweep.strategies`` (its spec in the
# trial's label); 'star': an arm of the star sweep (``sweep.search = 'star'``).
KINDS = ('baseline', 'grid', 'compound', 'depth', 'width', 'resolution',
         'strategy', 'star')
BUDGETS = ('epochs', 'steps', 'macs')


@dataclasses.dataclass(frozen=True)
class Trial:
  """A point of the sweep; ``alpha, beta, gamma`` are None off the grid."""
  kind: str
  phi: float
  d: float
  w: float
  r: float
  seed: int
  alpha: float | None = None
  beta: float | None = None
  gamma: float | None = None
  label: str = ''
  budget: float | None = None  # epochs or steps (sweep.budget); None: the config's


@dataclasses.dataclass
class Planned:
  """A trial with its id, train config and cost, or why it cannot run."""
  trial: Trial
  id: str
  config: ml_collections.ConfigDict | None
  content: str  # ``network_digest``: equal networks and budgets
  family: str  # ``content`` without the seed: the members of a population
  backbone: str
  side: int
  params: int | None = None
  macs: int | None = None
  activations: int | None = None
  error: str = ''
  # (cost, value): the cost a scale-up row was matched on and its value
  # (``dvl.sweep.scaleup``).
  match: tuple | None = None

  def row(self) -> dict:
    """The results row before training: the point and its cost."""
    t = self.trial
    return dict(trial=self.id, kind=t.kind, phi=t.phi, seed=t.seed,
                label=t.label, backbone=self.backbone, alpha=t.alpha,
                beta=t.beta, gamma=t.gamma, d=round(t.d, 4),
                w=round(t.w, 4), r=round(t.r, 4), resolution=self.side,
                params=self.params, macs=self.macs,
                activations=self.activations, budget=t.budget,
                steps=self.config.train.steps if self.config else None,
                **({'match_cost': self.match[0],
                    'match_value': self.match[1]} if self.match else {}))


def digest(value) -> str:
  """A stable hash of a JSON-able value (dict keys sorted)."""
  text = json.dumps(value, sort_keys=True, default=str)
  return hashlib.sha256(text.encode()).hexdigest()


def network_digest(config, cost) -> str:
  """What a trial trains: its config with the model's multipliers replaced
  by the network they build (every layer's path, MACs and output shape).

  Multipliers that round to the same network (depth 1.0 and 1.008 of a
  one-block stage) give the same digest, so the sweep trains it once.
  """
  tree = config.to_dict()
  if isinstance(cost, str):
    return digest(tree)
  for field in ('depth', 'width', 'resolution', 'resolution_multiplier'):
    tree['model'].pop(field, None)
  layers = [(l.path, l.macs, l.output_shape) for l in cost.layers]
  return digest({'config': tree, 'layers': layers, 'params': cost.params})


def base_side(config) -> int:
  """The baseline's input side: ``input.resolution``, else the model's."""
  if config.input.resolution:
    return int(config.input.resolution)
  return scaling.base_resolution(config.model.to_dict())


def scaled_model(model_cfg: dict, side: int, d: float, w: float,
                 multiple: int) -> dict:
  """``model_cfg`` scaled by depth and width, its reference side ``side``."""
  scaled, _ = scaling.scale(model_cfg, depth=d, width=w, multiple=multiple)
  if 'resolution' in scaled:
    scaled['resolution'] = side
  if 'resolution_multiplier' in scaled:
    scaled['resolution_multiplier'] = side / 224
  return scaled


class Planner:
  """Plans the trials of one sweep config (see the module docstring)."""

  def __init__(self, config):
    self.config = config
    self.sweep = config.sweep
    if self.sweep.budget not in BUDGETS:
      raise ValueError(f'sweep.budget must be one of {", ".join(BUDGETS)}; '
                       f'got {self.sweep.budget!r}')
    self.model = config.model.to_dict()
    scaling.family(self.model['name'])  # unsupported backbones raise here
    self.base_side = base_side(config)
    input_cfg = copy.deepcopy(config.input)
    input_cfg.resolution = self.base_side
    pipeline = make_pipeline(input_cfg, seed=0)
    self.num_classes = pipeline.num_classes
    self.channels = pipeline.image_shape[-1]
    self.steps_per_epoch = pipeline.steps_per_epoch
    self.base_steps = self.budget_steps(None)
    if self.sweep.budget == 'steps' and not config.train.steps:
      raise ValueError("sweep.budget = 'steps' trains every trial for "
                       'train.steps steps: set train.steps above 0, or use '
                       "sweep.budget = 'epochs'")
    self._costs, self._seconds = {}, {}
    base = self.cost(self.model, self.base_side)
    if isinstance(base, str):
      raise ValueError(f'the baseline {self.model["name"]} cannot run at '
                       f'{self.base_side}x{self.base_side}: {base}')
    self.base_macs = base.macs

  def budget_steps(self, budget: float | None) -> int:
    """The baseline's training steps at ``budget`` (epochs when
    ``sweep.budget = 'epochs'``, else steps; None: the train section's)."""
    train = self.config.train
    if budget is None:
      return train.steps or max(
          1, math.ceil(train.epochs * self.steps_per_epoch))
    if self.sweep.budget == 'epochs':
      return max(1, math.ceil(budget * self.steps_per_epoch))
    return max(1, int(budget))

  def cost(self, model_cfg: dict, side: int):
    """The network's ``flops.Cost``, or why it cannot be built (a str)."""
    key = digest([model_cfg, side])
    if key not in self._costs:
      self._costs[key] = self._count(model_cfg, side)
    return self._costs[key]

  def _count(self, model_cfg: dict, side: int):
    try:
      model = model_from_config(model_cfg, num_classes=self.num_classes)
      cost = flops.count(model, (side, side, self.channels))
    except ValueError as error:
      return str(error)
    collapsed = [layer.path for layer in cost.layers
                 if 0 in layer.output_shape]
    if collapsed:
      return (f'at {side}x{side} the output of {collapsed[0]} is empty (a '
              'feature map collapsed to zero); use a larger input.resolution')
    return cost

  def seconds_per_image(self, planned: Planned) -> float:
    """``planned``'s network's measured train-step seconds per image
    (``dvl.sweep.timing``), once per network."""
    if planned.family not in self._seconds:
      from dvl.sweep import timing
      config = planned.config
      self._seconds[planned.family] = timing.seconds_per_image(
          config.model.to_dict(), planned.side, channels=self.channels,
          num_classes=self.num_classes, batch=config.input.batch_size)
    return self._seconds[planned.family]

  def plan(self, trial: Trial) -> Planned:
    """The train config, id and cost of ``trial``."""
    if trial.kind not in KINDS:
      raise ValueError(f'unknown trial kind {trial.kind!r}; one of {KINDS}')
    multiple = self.sweep.resolution_multiple
    side = scaling.round_resolution(self.base_side * trial.r, multiple)
    model_cfg = scaled_model(self.model, side, trial.d, trial.w, multiple)
    cost = self.cost(model_cfg, side)
    steps = None
    if trial.budget is not None:
      steps = self.budget_steps(trial.budget)
    if self.sweep.budget == 'macs' and not isinstance(cost, str):
      steps = max(1, round(self.budget_steps(trial.budget) * self.base_macs
                           / cost.macs))
    config = self.train_config(model_cfg, side, trial.seed, steps)
    content = network_digest(config, cost)
    unseeded = copy.deepcopy(config)
    unseeded.train.seed = 0
    point = dataclasses.asdict(trial)
    if trial.budget is None:
      point.pop('budget')  # ids of sweeps without budgets stay as they were
    planned = Planned(
        trial=trial, config=config, content=content,
        family=network_digest(unseeded, cost),
        id=f'{trial.kind}{trial.phi:g}-{digest([point, content])[:8]}',
        backbone=self.model['name'], side=side)
    if isinstance(cost, str):
      planned.error = cost
    else:
      planned.params, planned.macs = cost.params, cost.macs
      planned.activations = cost.activations
    return planned

  def train_config(self, model_cfg: dict, side: int, seed: int,
                   steps: int | None) -> ml_collections.ConfigDict:
    """The sweep's config as a ``train`` job for one scaled network."""
    config = copy.deepcopy(self.config)
    with config.unlocked():
      del config['sweep']
      config.job = 'train'
      config.model = ml_collections.ConfigDict(model_cfg)
    config.input.resolution = side
    config.train.seed = seed
    if steps is not None:
      config.train.steps = steps
    return config
