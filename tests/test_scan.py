"""Scanned stages (dvl.models.scan): the same network as the unrolled one,
in another parameter layout that converts losslessly both ways."""

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dvl import flops, layers, models
from dvl.checkpoint import Checkpointer, IncompatibleCheckpointError
from dvl.models import scan
from dvl.train import transfer

# Small members of each family with at least three blocks in some stage, so
# that blocks 2…n scan.
SMALL = {
    'efficientnet': dict(
        blocks=('ir_r3_k3_s1_e2_c8_se0.25', 'ir_r4_k3_s2_e2_c16_se0.25'),
        stem_width=8, head_width=32, resolution=32, num_classes=5,
        drop_connect=0.0),
    'efficientnetv2_b0': dict(
        blocks=('fr_r3_k3_s1_e1_c8', 'fr_r3_k3_s2_e2_c16',
                'ir_r3_k3_s2_e2_c16_se0.25'),
        stem_width=8, head_width=32, resolution=32, num_classes=5,
        drop_connect=0.0),
    'resnet18': dict(stem_width=8, widths=(8, 8, 16, 16), depth=1.5,
                     num_classes=5),
    'resnet50': dict(stage_sizes=(3, 1, 1, 1), stem_width=8,
                     widths=(4, 4, 4, 4), num_classes=5),
    'regnetx_002': dict(width=0.25, num_classes=5),
    'convnext_tiny': dict(stage_sizes=(3, 1, 3, 1), widths=(8, 8, 16, 16),
                          patch_size=2, num_classes=5, drop_path=0.0),
    'mobilenet_v1': dict(width=0.25, num_classes=5),
}


def _pair(name):
  scanned = models.build_model(name, scan=True, **SMALL[name])
  return scanned, scan.unrolled(scanned)


def test_scan_is_off_by_default():
  model = models.build_model('resnet18', **SMALL['resnet18'])
  assert model.scan is False and scan.unrolled(model) is model
  params = _init(model, jnp.ones((1, 32, 32, 3)))['params']
  assert 'stage1_block3' in params and not _scanned_names(params)


def _init(model, x):
  return jax.jit(lambda x: model.init(jax.random.key(0), x, train=False))(x)


def _scanned_names(params) -> list[str]:
  return [k for k in params if scan._SCANNED.match(k)]


# One family in the default suite, the rest with the slow tests.
FAST = ('efficientnet',)


@pytest.mark.parametrize('name', [
    n if n in FAST else pytest.param(n, marks=pytest.mark.slow)
    for n in sorted(SMALL)])
def test_scanned_and_unrolled_give_the_same_outputs_and_gradients(name):
  scanned, unrolled = _pair(name)
  assert scanned.scan and not unrolled.scan
  x = jax.random.normal(jax.random.key(1), (2, 32, 32, 3))
  v_scan, v_unroll = _init(scanned, x), _init(unrolled, x)
  assert _scanned_names(v_scan['params']), 'nothing was scanned'
  assert not _scanned_names(v_unroll['params'])
  # The same parameter count, and each layout converts into the other.
  sizes = lambda v: sum(a.size for a in jax.tree.leaves(v['params']))
  assert sizes(v_scan) == sizes(v_unroll)
  as_scan = scan.relayout(v_unroll, v_scan)
  assert jax.tree.structure(as_scan) == jax.tree.structure(v_scan)
  back = scan.relayout(as_scan, v_unroll)
  for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(v_unroll)):
    np.testing.assert_array_equal(a, b)

  def loss(params, model, variables):
    (logits, _), new = model.apply(
        {**variables, 'params': params}, x, train=True,
        mutable=['batch_stats'], rngs={'dropout': jax.random.key(2)})
    return jnp.mean(jnp.square(logits)), new

  def grads(model, variables):
    return jax.jit(jax.grad(loss, has_aux=True), static_argnums=1)(
        variables['params'], model, variables)

  g_scan, stats_scan = grads(scanned, as_scan)
  g_unroll, stats_unroll = grads(unrolled, v_unroll)
  for a, b in zip(jax.tree.leaves(scan.unstack(g_scan)),
                  jax.tree.leaves(g_unroll)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
  for a, b in zip(jax.tree.leaves(scan.unstack(stats_scan)),
                  jax.tree.leaves(stats_unroll)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  out = jax.jit(lambda v: scanned.apply(v, x, train=False)[0])(as_scan)
  ref = jax.jit(lambda v: unrolled.apply(v, x, train=False)[0])(v_unroll)
  np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('name', ['efficientnet', 'convnext_tiny'])
def test_cost_counts_do_not_depend_on_the_layout(name):
  scanned, unrolled = _pair(name)
  a, b = flops.count(scanned, (32, 32, 3)), flops.count(unrolled, (32, 32, 3))
  assert a.params == b.params and a.macs == b.macs > 0
  assert a.activations == b.activations > 0
  assert [l.path for l in a.layers] == [l.path for l in b.layers]


class _Residual(nn.Module):
  """A residual dense block with drop-path: x + DropPath(dense(x))."""
  features: int
  drop_path: float = 0.0

  @nn.compact
  def __call__(self, x, *, train: bool):
    y = nn.Dense(self.features)(x)
    return x + layers.DropPath(self.drop_path)(y, train=train)


class _Stage(nn.Module):
  rates: tuple
  scan: bool = True

  @nn.compact
  def __call__(self, x, *, train: bool):
    return scan.stage(_Residual, dict(features=4), len(self.rates), x,
                      train=train, name='stage1', scan=self.scan,
                      rates=self.rates)


def test_each_scanned_block_gets_its_own_drop_path_rate():
  # Rate 1 drops a block's branch for every example, rate 0 for none: with
  # rates (0, 0, 1) the stage is blocks 1 and 2 alone.
  x = jax.random.normal(jax.random.key(0), (8, 4))
  three = _Stage((0.0, 0.0, 1.0))
  variables = three.init(jax.random.key(1), x, train=False)
  assert 'stage1_block2to3' in variables['params']
  two = _Stage((0.0, 0.0), scan=False)
  first_two = {'params': {
      k: v for k, v in scan.unstack(variables)['params'].items()
      if k != 'stage1_block3'}}
  out = three.apply(variables, x, train=True,
                    rngs={'dropout': jax.random.key(2)})
  np.testing.assert_allclose(out, two.apply(first_two, x, train=True),
                             rtol=1e-6)
  # In evaluation every branch counts.
  assert not np.allclose(three.apply(variables, x, train=False), out)


class _AnyStage(nn.Module):
  """Four ``block``s of ``_Residual``'s fields, scanned or not."""
  block: type
  scan: bool = True

  @nn.compact
  def __call__(self, x, *, train: bool):
    return scan.stage(self.block, dict(features=4), 4, x, train=train,
                      name='stage1', scan=self.scan, rates=(0.0,) * 4)


def _remats(stage, x) -> int:
  """How many rematerialised calls the training forward pass traces."""
  variables = stage.init(jax.random.key(0), x, train=False)
  text = str(jax.make_jaxpr(lambda v: stage.apply(
      v, x, train=True, rngs={'dropout': jax.random.key(1)}))(variables))
  return len(re.findall(r'\b(?:remat2|checkpoint)\[', text))


@pytest.mark.skipif(jax.default_backend() != 'cpu',
                    reason='scanned stages recompute activations on the CPU')
def test_a_scanned_stage_recomputes_its_blocks_on_the_cpu_once():
  x = jnp.ones((2, 4))
  assert _remats(_AnyStage(_Residual, scan=False), x) == 0
  assert _remats(_AnyStage(_Residual), x) == 1  # the scanned body
  # A block that already recomputes (layers.remat) gets no second remat:
  # one per unrolled block, and one for the first block and the body.
  rematted = layers.remat(_Residual)
  assert _remats(_AnyStage(rematted, scan=False), x) == 4
  assert _remats(_AnyStage(rematted), x) == 2
  # And the gradients are the unrolled stage's.
  stage = _AnyStage(_Residual)
  variables = stage.init(jax.random.key(0), x, train=False)
  flat = scan.unstack(variables)
  loss = lambda model: lambda v: jnp.sum(jnp.sin(model.apply(
      v, x, train=True, rngs={'dropout': jax.random.key(1)})))
  g_scan = scan.unstack(jax.grad(loss(stage))(variables))
  g_flat = jax.grad(loss(_AnyStage(_Residual, scan=False)))(flat)
  for a, b in zip(jax.tree.leaves(g_scan), jax.tree.leaves(g_flat)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


class _HalfResidual(nn.Module):
  """``_Residual`` computing in bfloat16."""
  features: int
  drop_path: float = 0.0

  @nn.compact
  def __call__(self, x, *, train: bool):
    y = nn.Dense(self.features, dtype=jnp.bfloat16)(x)
    return x + layers.DropPath(self.drop_path)(y, train=train)


def test_a_bfloat16_stage_with_drop_path_scans_in_bfloat16():
  # The scanned rates are float32 arrays: they must not promote the carry.
  x = jax.random.normal(jax.random.key(0), (8, 4)).astype(jnp.bfloat16)
  rates = (0.0, 0.1, 0.2, 0.3)

  class Stage(nn.Module):
    scan: bool

    @nn.compact
    def __call__(self, x, *, train: bool):
      return scan.stage(_HalfResidual, dict(features=4), 4, x, train=train,
                        name='stage1', scan=self.scan, rates=rates)

  scanned = Stage(scan=True)
  variables = scanned.init(jax.random.key(1), x, train=False)
  assert 'stage1_block2to4' in variables['params']
  rngs = {'dropout': jax.random.key(2)}
  out = scanned.apply(variables, x, train=True, rngs=rngs)
  assert out.dtype == jnp.bfloat16
  ref = Stage(scan=False).apply(scan.unstack(variables), x, train=True,
                                rngs=rngs)
  assert ref.dtype == jnp.bfloat16


class _Widening(nn.Module):
  features: int

  @nn.compact
  def __call__(self, x, *, train: bool):
    del train
    return nn.Dense(x.shape[-1] * 2)(x)


def test_blocks_that_change_shape_are_unrolled_with_a_warning():
  class Stage(nn.Module):
    @nn.compact
    def __call__(self, x):
      return scan.stage(_Widening, dict(features=1), 4, x, train=False,
                        name='widening', scan=True)

  scan._warned.discard('widening')
  x = jnp.ones((1, 2))
  with pytest.warns(UserWarning, match='widening: its blocks 2-4 change the '
                    'shape of their input, so they cannot run as one scanned '
                    'layer; they are unrolled'):
    variables = Stage().init(jax.random.key(0), x)
  assert sorted(variables['params']) == [f'widening_block{j}'
                                         for j in range(1, 5)]
  assert Stage().apply(variables, x).shape == (1, 32)


@pytest.mark.parametrize('saved_scanned', [
    False, pytest.param(True, marks=pytest.mark.slow)])
def test_a_checkpoint_restores_across_layouts(tmp_path, saved_scanned):
  scanned, unrolled = _pair('resnet18')
  x = jnp.ones((1, 32, 32, 3))
  v_scan, v_unroll = _init(scanned, x), _init(unrolled, x)
  v_scan = scan.relayout(v_unroll, v_scan)  # the same numbers
  saved, template = (v_scan, v_unroll) if saved_scanned else (v_unroll,
                                                              v_scan)
  # A state as training keeps it: variables beside optimizer moments.
  state = {'variables': saved, 'moments': saved['params'], 'step': 7}
  with Checkpointer(tmp_path) as ckpt:
    ckpt.save(7, state, force=True)
    ckpt.wait_until_finished()
  like = {'variables': template, 'moments': template['params'], 'step': 0}
  with Checkpointer(tmp_path) as ckpt:
    restored = ckpt.restore(jax.eval_shape(lambda: like))
  assert restored.step == 7 and int(restored.state['step']) == 7
  assert (jax.tree.structure(restored.state['variables'])
          == jax.tree.structure(template))
  for a, b in zip(jax.tree.leaves(restored.state['variables']),
                  jax.tree.leaves(template)):
    np.testing.assert_array_equal(a, b)
  for a, b in zip(jax.tree.leaves(restored.state['moments']),
                  jax.tree.leaves(template['params'])):
    np.testing.assert_array_equal(a, b)


def test_a_checkpoint_of_another_model_is_still_refused(tmp_path):
  scanned, _ = _pair('resnet18')
  other = scanned.clone(widths=(8, 8, 16, 32))
  x = jnp.ones((1, 32, 32, 3))
  with Checkpointer(tmp_path) as ckpt:
    ckpt.save(1, _init(scanned, x), force=True)
    ckpt.wait_until_finished()
  with Checkpointer(tmp_path) as ckpt:
    with pytest.raises(IncompatibleCheckpointError, match='template expects '
                       'shape'):
      ckpt.restore(jax.eval_shape(lambda: _init(other, x)))


@pytest.mark.slow
def test_pretrained_variables_merge_across_layouts():
  scanned, unrolled = _pair('mobilenet_v1')
  x = jnp.ones((1, 32, 32, 3))
  fresh = _init(scanned, x)
  source = jax.tree.map(lambda a: a + 1, _init(unrolled, x))
  merged, kept = transfer.merge_pretrained(fresh, source, 'head/.*')
  assert sorted(kept) == ['params/head/dense/bias',
                          'params/head/dense/kernel']
  expected = scan.relayout(source, fresh)
  for path in ('stage4_block2to6', 'stage2_block1'):
    for a, b in zip(jax.tree.leaves(merged['params'][path]),
                    jax.tree.leaves(expected['params'][path])):
      np.testing.assert_array_equal(a, b)
