"""Optimizers, schedules, penalties and EMA against hand computations."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dvl import optim

STEPS_PER_EPOCH = 10


def small_params():
  """Flax-style names: a conv with bias, a BatchNorm, a dense head."""
  return {
      'stem': {'conv': {'kernel': jnp.array([[[[1.0, -2.0]]]]),   # 1x1x1x2
                        'bias': jnp.array([0.5, -0.5])},
               'bn': {'scale': jnp.array([2.0, 3.0]),
                      'bias': jnp.array([-1.0, 1.0])}},
      'head': {'kernel': jnp.array([[3.0], [-4.0]]),              # 2x1
               'bias': jnp.array([10.0])},
  }


def make(steps=100, batch_size=256, **overrides):
  cfg = optim.default_optim_config()
  cfg.update(overrides)
  return optim.make_optimizer(cfg, steps_per_epoch=STEPS_PER_EPOCH,
                              total_steps=steps, batch_size=batch_size)


def run_steps(tx, params, grads_seq):
  state = tx.init(params)
  for grads in grads_seq:
    updates, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, updates)
  return params


def ones_like(tree, value=1.0):
  return jax.tree.map(lambda x: jnp.full_like(x, value), tree)


def test_default_config_has_every_field_and_is_locked():
  cfg = optim.default_optim_config()
  expected = {
      'optimizer', 'learning_rate', 'lr_scale_by_batch', 'momentum',
      'nesterov', 'b1', 'b2', 'eps', 'rms_decay', 'rms_eps',
      'rms_initial_scale', 'weight_decay', 'l2', 'l1', 'exclude_bn_and_bias',
      'schedule', 'warmup_epochs', 'warmup_steps', 'decay_epochs',
      'decay_rate', 'boundaries', 'min_lr', 'grad_clip_norm', 'ema_decay',
      'ema_warmup', 'freeze', 'lr_multipliers'}
  assert set(cfg.keys()) == expected
  with pytest.raises(AttributeError):
    cfg.learning_rat = 0.1
  make()  # the defaults build


@pytest.mark.parametrize('field, name, valid', [
    ('optimizer', 'adamm', optim.OPTIMIZERS),
    ('schedule', 'cosin', optim.SCHEDULES),
])
def test_unknown_names_list_the_valid_ones(field, name, valid):
  with pytest.raises(ValueError) as info:
    make(**{field: name})
  message = str(info.value)
  assert f"'{name}'" in message
  assert all(v in message for v in valid)


@pytest.mark.parametrize('overrides, message', [
    (dict(learning_rate=-0.1), 'learning_rate must be positive'),
    (dict(warmup_epochs=11.0), 'longer than training'),
    (dict(warmup_steps=101), 'longer than training'),
    (dict(warmup_epochs=1.0, warmup_steps=5), 'not both'),
    (dict(momentum=1.0), 'momentum must be in'),
    (dict(weight_decay=-1e-4), 'weight_decay must be non-negative'),
    (dict(optimizer='adam', weight_decay=1e-4), "use 'adamw'"),
    (dict(min_lr=1.0), 'above the peak'),
    (dict(schedule='step', boundaries=[6.0, 3.0]), 'increasing'),
    (dict(schedule='exponential', decay_epochs=0.0), 'decay_epochs'),
    (dict(freeze='stage1.(*'), 'optim.freeze: invalid regular expression'),
    (dict(lr_multipliers=[('head', -1.0)]), 'non-negative'),
    (dict(schedule='lr_range', min_lr=0.0), 'must be positive'),
])
def test_invalid_values_raise(overrides, message):
  with pytest.raises(ValueError, match=message):
    make(**overrides)


def test_bad_run_lengths_raise():
  with pytest.raises(ValueError, match='total_steps must be a positive'):
    make(steps=0)
  with pytest.raises(ValueError, match='batch_size must be a positive'):
    make(batch_size=-8)


def test_decay_mask_keeps_only_kernels_of_a_real_flax_model():
  class Tiny(nn.Module):
    @nn.compact
    def __call__(self, x, *, train: bool):
      x = nn.Conv(4, (3, 3), name='stem_conv')(x)
      x = nn.BatchNorm(use_running_average=not train, name='stem_bn')(x)
      x = nn.Conv(4, (3, 3), feature_group_count=4, use_bias=False,
                  name='dw')(x)
      return nn.Dense(3, name='head')(x.mean(axis=(1, 2)))

  shapes = jax.eval_shape(
      lambda: Tiny().init(jax.random.key(0), jnp.ones((1, 8, 8, 3)),
                          train=False))['params']
  params = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
  flat = jax.tree_util.tree_flatten_with_path(optim.decay_mask(params))[0]
  kept = sorted(optim.path_name(path) for path, keep in flat if keep)
  assert kept == ['dw/kernel', 'head/kernel', 'stem_conv/kernel']
  everything = jax.tree.leaves(optim.decay_mask(params, False))
  assert all(everything) and len(everything) == 7
  # The rule is "a kernel with at least two dimensions", not the name alone.
  assert optim.decay_mask({'odd': {'kernel': jnp.ones(3)}}) == {
      'odd': {'kernel': False}}


def test_l2_l1_elastic_net_against_hand_sums():
  params = small_params()
  kernels_sq = 1 + 4 + 9 + 16                    # 30
  all_sq = kernels_sq + (0.25 + 0.25) + (4 + 9) + (1 + 1) + 100   # 145.5
  kernels_abs = 1 + 2 + 3 + 4                    # 10
  all_abs = kernels_abs + 1 + 5 + 2 + 10         # 28
  mask = optim.decay_mask(params)
  np.testing.assert_allclose(optim.l2_penalty(params, mask), kernels_sq / 2)
  np.testing.assert_allclose(optim.l2_penalty(params), all_sq / 2)
  np.testing.assert_allclose(optim.l1_penalty(params, mask), kernels_abs)
  np.testing.assert_allclose(optim.l1_penalty(params), all_abs)
  np.testing.assert_allclose(
      optim.elastic_net_penalty(params, l1=0.1, l2=0.01),
      0.1 * 10 + 0.01 * 15, rtol=1e-6)
  np.testing.assert_allclose(
      optim.elastic_net_penalty(params, l1=0.1, l2=0.01,
                                exclude_bn_and_bias=False),
      0.1 * 28 + 0.01 * 72.75, rtol=1e-6)


def test_regularization_reads_the_config():
  cfg = optim.default_optim_config()
  assert float(optim.regularization(small_params(), cfg)) == 0.0
  cfg.l2 = 1e-2
  np.testing.assert_allclose(optim.regularization(small_params(), cfg),
                             1e-2 * 15, rtol=1e-6)
  cfg.exclude_bn_and_bias = False
  np.testing.assert_allclose(optim.regularization(small_params(), cfg),
                             1e-2 * 72.75, rtol=1e-6)
  grads = jax.grad(optim.regularization)(small_params(), cfg)
  np.testing.assert_allclose(grads['head']['bias'], [1e-2 * 10.0], rtol=1e-6)


@pytest.mark.parametrize('optimizer', ['sgd', 'momentum', 'adamw', 'rmsprop'])
def test_decoupled_weight_decay_after_one_step(optimizer):
  # Zero gradients: every direction is 0, so only the decay moves weights,
  # by lr * weight_decay * p, and only the kernels.
  params = small_params()
  tx, _ = make(optimizer=optimizer, learning_rate=0.1, weight_decay=0.5,
               schedule='constant')
  new = run_steps(tx, params, [ones_like(params, 0.0)])
  np.testing.assert_allclose(new['head']['kernel'],
                             params['head']['kernel'] * (1 - 0.05), rtol=1e-6)
  np.testing.assert_allclose(new['stem']['conv']['kernel'],
                             params['stem']['conv']['kernel'] * 0.95, rtol=1e-6)
  untouched = (('head', 'bias'), ('stem', 'bn', 'scale'),
               ('stem', 'conv', 'bias'))
  for path in untouched:
    old_leaf, new_leaf = params, new
    for key in path:
      old_leaf, new_leaf = old_leaf[key], new_leaf[key]
    np.testing.assert_array_equal(new_leaf, old_leaf)


def test_adamw_matches_optax_adamw_with_the_same_mask():
  params = small_params()
  grads = jax.tree.map(lambda x: 0.3 * x + 0.1, params)
  tx, _ = make(optimizer='adamw', learning_rate=1e-2, weight_decay=0.1,
               schedule='constant')
  reference = optax.adamw(1e-2, weight_decay=0.1,
                          mask=optim.decay_mask(params))
  ours = run_steps(tx, params, [grads, grads])
  theirs = run_steps(reference, params, [grads, grads])
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6),
               ours, theirs)


def lr_at(schedule, steps):
  return np.asarray(schedule(jnp.asarray(steps)))


def test_warmup_then_cosine():
  _, schedule = make(steps=100, learning_rate=0.4, schedule='cosine',
                     warmup_epochs=2.0, min_lr=0.0)
  # 20 warm-up steps: 0.4 * t / 20; then cosine over the remaining 80.
  np.testing.assert_allclose(lr_at(schedule, [0, 5, 19]),
                             [0.0, 0.1, 0.4 * 19 / 20], rtol=1e-6)
  np.testing.assert_allclose(lr_at(schedule, [20, 60, 100]),
                             [0.4, 0.2, 0.0], atol=1e-7)
  np.testing.assert_allclose(lr_at(schedule, 40),
                             0.2 * (1 + np.cos(np.pi / 4)), rtol=1e-6)


def test_cosine_ends_at_min_lr():
  _, schedule = make(steps=50, learning_rate=0.1, min_lr=0.01,
                     warmup_steps=10)
  np.testing.assert_allclose(lr_at(schedule, [10, 30, 50, 80]),
                             [0.1, 0.055, 0.01, 0.01], rtol=1e-6)


def test_exponential_staircase_as_the_efficientnet_reference():
  # 0.016 * 512/256, 5 warm-up epochs, x0.97 every 2.4 epochs = 24 steps,
  # counted from step 0 (so warm-up ends at 0.97**2).
  _, schedule = make(steps=1000, batch_size=512, lr_scale_by_batch=True,
                     optimizer='rmsprop', learning_rate=0.016,
                     schedule='exponential', warmup_epochs=5.0,
                     decay_epochs=2.4, decay_rate=0.97)
  peak = 0.032
  np.testing.assert_allclose(lr_at(schedule, [25, 49]),
                             [peak * 25 / 50, peak * 49 / 50], rtol=1e-6)
  np.testing.assert_allclose(
      lr_at(schedule, [50, 71, 72, 95, 96, 240]),
      [peak * 0.97**2, peak * 0.97**2, peak * 0.97**3, peak * 0.97**3,
       peak * 0.97**4, peak * 0.97**10], rtol=1e-6)


def test_exponential_without_warmup_and_min_lr_floor():
  _, schedule = make(steps=1000, learning_rate=1.0, schedule='exponential',
                     decay_epochs=2.4, decay_rate=0.5, min_lr=0.2)
  np.testing.assert_allclose(lr_at(schedule, [0, 23, 24, 47, 48, 999]),
                             [1.0, 1.0, 0.5, 0.5, 0.25, 0.2], rtol=1e-6)


def test_step_schedule_multiplies_at_boundaries():
  _, schedule = make(steps=100, learning_rate=0.1, schedule='step',
                     boundaries=[3.0, 6.0, 8.0], decay_rate=0.1)
  np.testing.assert_allclose(
      lr_at(schedule, [0, 29, 30, 59, 60, 80, 99]),
      [0.1, 0.1, 0.01, 0.01, 1e-3, 1e-4, 1e-4], rtol=1e-5)


def test_constant_schedule_and_batch_scaling():
  _, schedule = make(learning_rate=0.1, schedule='constant',
                     lr_scale_by_batch=True, batch_size=1024)
  np.testing.assert_allclose(lr_at(schedule, [0, 50, 99]), [0.4] * 3,
                             rtol=1e-6)


def test_lr_range_schedule_endpoints():
  schedule = optim.lr_range_schedule(1e-6, 1.0, 7)
  np.testing.assert_allclose(lr_at(schedule, [0, 3, 6, 10]),
                             [1e-6, 1e-3, 1.0, 1.0], rtol=1e-5)
  _, from_config = make(steps=7, schedule='lr_range', min_lr=1e-6,
                        learning_rate=1.0)
  np.testing.assert_allclose(lr_at(from_config, [0, 6]), [1e-6, 1.0],
                             rtol=1e-5)
  with pytest.raises(ValueError, match='min_lr < max_lr'):
    optim.lr_range_schedule(1.0, 1e-3, 10)


def test_rmsprop_matches_the_tf_formula_for_two_steps():
  lr, rho, mu, eps = 0.05, 0.9, 0.9, 1e-3
  p0 = np.array([1.0, -2.0, 0.5])
  g1 = np.array([0.3, -4.0, 0.0])
  g2 = np.array([-1.0, 2.0, 0.1])
  # TF1 RMSPropOptimizer: ms starts at 1, eps inside the sqrt, lr inside mom.
  ms1 = rho * 1.0 + (1 - rho) * g1**2
  mom1 = lr * g1 / np.sqrt(ms1 + eps)
  p1 = p0 - mom1
  ms2 = rho * ms1 + (1 - rho) * g2**2
  mom2 = mu * mom1 + lr * g2 / np.sqrt(ms2 + eps)
  p2 = p1 - mom2
  tx, _ = make(optimizer='rmsprop', learning_rate=lr, schedule='constant',
               rms_decay=rho, momentum=mu, rms_eps=eps)
  params = {'w': jnp.asarray(p0, jnp.float32)}
  state = tx.init(params)
  for grad, expected in ((g1, p1), (g2, p2)):
    updates, state = tx.update({'w': jnp.asarray(grad, jnp.float32)}, state,
                               params)
    params = optax.apply_updates(params, updates)
    np.testing.assert_allclose(params['w'], expected, rtol=1e-6)


def test_nesterov_differs_from_heavy_ball():
  params = {'w': jnp.array([1.0])}
  grads = [{'w': jnp.array([1.0])}] * 2
  heavy = run_steps(make(optimizer='momentum', schedule='constant',
                         learning_rate=1.0, momentum=0.5)[0], params, grads)
  nesterov = run_steps(make(optimizer='nesterov', schedule='constant',
                            learning_rate=1.0, momentum=0.5)[0], params, grads)
  # Heavy ball: m = 1, 1.5 -> p = 1 - 2.5. Nesterov: g + mu*m = 1.5, 1.75.
  np.testing.assert_allclose(heavy['w'], [-1.5])
  np.testing.assert_allclose(nesterov['w'], [1 - 1.5 - 1.75])


def test_gradient_clipping_bounds_the_update_norm():
  params = small_params()
  tx, _ = make(optimizer='sgd', learning_rate=1.0, schedule='constant',
               grad_clip_norm=0.5)
  state = tx.init(params)
  big = ones_like(params, 100.0)
  updates, _ = tx.update(big, state, params)
  np.testing.assert_allclose(optax.global_norm(updates), 0.5, rtol=1e-5)
  small = ones_like(params, 0.01)
  updates, _ = tx.update(small, state, params)
  jax.tree.map(lambda u, g: np.testing.assert_allclose(u, -g), updates, small)


def test_freezing_leaves_frozen_params_bitwise_unchanged():
  params = small_params()
  tx, _ = make(optimizer='momentum', learning_rate=0.1, weight_decay=0.1,
               schedule='constant', freeze='stem/.*', grad_clip_norm=1.0)
  grads = jax.tree.map(lambda x: 0.7 * x + 0.2, params)
  new = run_steps(tx, params, [grads] * 3)
  for old, moved in zip(jax.tree.leaves(params['stem']),
                        jax.tree.leaves(new['stem'])):
    assert np.asarray(old).tobytes() == np.asarray(moved).tobytes()
  for old, moved in zip(jax.tree.leaves(params['head']),
                        jax.tree.leaves(new['head'])):
    assert not np.allclose(old, moved)


@pytest.mark.parametrize('optimizer', ['momentum', 'adam', 'rmsprop'])
def test_lr_multipliers_scale_the_update(optimizer):
  params = small_params()
  grads = jax.tree.map(lambda x: 0.7 * x + 0.2, params)
  common = dict(optimizer=optimizer, learning_rate=0.01, schedule='constant')
  base_tx, _ = make(**common)
  tx, _ = make(lr_multipliers=[('stem/.*', 0.1), ('.*', 2.0)], **common)
  base_updates, _ = base_tx.update(grads, base_tx.init(params), params)
  updates, _ = tx.update(grads, tx.init(params), params)
  jax.tree.map(lambda u, b: np.testing.assert_allclose(u, 0.1 * b, rtol=1e-6),
               updates['stem'], base_updates['stem'])
  jax.tree.map(lambda u, b: np.testing.assert_allclose(u, 2.0 * b, rtol=1e-6),
               updates['head'], base_updates['head'])


def test_optimizer_runs_under_jit_with_freeze_and_multipliers():
  params = small_params()
  tx, schedule = make(optimizer='adamw', weight_decay=1e-2, warmup_steps=5,
                      freeze='stem/bn/.*', lr_multipliers=[('head/.*', 10.0)])
  state = tx.init(params)
  updates, _ = jax.jit(tx.update)(ones_like(params), state, params)
  np.testing.assert_array_equal(updates['stem']['bn']['scale'], [0.0, 0.0])
  assert float(schedule(5)) == pytest.approx(0.1)


def test_ema_after_k_steps_equals_the_closed_form():
  decay = 0.9
  p0 = {'w': jnp.array([1.0, 2.0])}
  sequence = [{'w': jnp.array([float(i), -float(i)])} for i in range(1, 5)]
  state = optim.ema_init(p0)
  for params in sequence:
    state = optim.ema_update(state, params, decay=decay)
  k = len(sequence)
  # e_k = d^k p0 + (1 - d) sum_i d^(k - i) p_i
  expected = decay**k * np.array([1.0, 2.0]) + (1 - decay) * sum(
      decay**(k - i) * np.array([i, -i]) for i in range(1, k + 1))
  np.testing.assert_allclose(state.params['w'], expected, rtol=1e-6)
  assert int(state.count) == k


def test_ema_warmup_decay():
  # Update t uses min(decay, (1 + t) / (10 + t)): 2/11, then 3/12.
  state = optim.ema_init({'w': jnp.array(0.0)})
  state = optim.ema_update(state, {'w': jnp.array(1.0)}, decay=0.9999,
                           warmup=True)
  np.testing.assert_allclose(state.params['w'], 1 - 2 / 11, rtol=1e-6)
  state = optim.ema_update(state, {'w': jnp.array(1.0)}, decay=0.9999,
                           warmup=True)
  np.testing.assert_allclose(state.params['w'],
                             (3 / 12) * (1 - 2 / 11) + (1 - 3 / 12), rtol=1e-6)
  np.testing.assert_allclose(optim.ema_decay_at(10**6, 0.9999, True), 0.9999)
  with pytest.raises(ValueError, match='EMA decay'):
    optim.ema_update(state, state.params, decay=1.0)


def range_records(num=61):
  lrs = np.logspace(-6, 0, num)
  # Falls fastest per decade at lr = 1e-3, bottoms out near 1e-1, blows up.
  x = np.log10(lrs)
  losses = 2.0 - np.tanh(x + 3.0) + np.where(x > -1, 50.0 * (x + 1) ** 2, 0.0)
  return lrs, losses


def test_suggest_learning_rate_steepest_and_min_over_10():
  lrs, losses = range_records()
  steepest = optim.suggest_learning_rate(lrs, losses, beta=0.0)
  assert steepest.lr == pytest.approx(1e-3, rel=1e-9)
  by_min = optim.suggest_learning_rate(lrs, losses, rule='min_over_10',
                                       beta=0.0)
  assert by_min.lr == pytest.approx(lrs[np.argmin(losses)] / 10)
  assert steepest.num_used < len(lrs)     # the blow-up is cut off


def test_suggest_learning_rate_smooths_and_validates():
  lrs, losses = range_records()
  noisy = losses + 0.05 * np.random.default_rng(0).standard_normal(len(lrs))
  noisy[-3:] = np.nan
  suggestion = optim.suggest_learning_rate(lrs, noisy, beta=0.7)
  assert 1e-4 < suggestion.lr < 1e-2
  np.testing.assert_allclose(optim.smooth_losses([2.0, 4.0], 0.5),
                             [2.0, (0.25 * 2 + 0.5 * 4) / 0.75])
  with pytest.raises(ValueError, match="choose one of: steepest, min_over_10"):
    optim.suggest_learning_rate(lrs, losses, rule='valley')
  with pytest.raises(ValueError, match='strictly increasing'):
    optim.suggest_learning_rate(lrs[::-1], losses)
