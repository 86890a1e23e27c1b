"""Images from corrupted images (``config.model`` an autoencoder;
``dvl.image_metrics``)."""

import dataclasses
from pathlib import Path
from typing import ClassVar

import jax
import jax.numpy as jnp

from dvl import draw, errors, image_metrics
from dvl.tasks.base import Array, Task, _Summed, real_rows


def grey(images) -> Array:
  """ITU-R BT.601 luma of RGB images, one channel."""
  weights = jnp.asarray([0.299, 0.587, 0.114], images.dtype)
  return jnp.sum(images * weights, axis=-1, keepdims=True)


def downsample(images, factor: int) -> Array:
  """Average pooling by ``factor`` (the low-resolution input)."""
  n, h, w, c = images.shape
  return images.reshape(n, h // factor, factor, w // factor, factor,
                        c).mean(axis=(2, 4))


@dataclasses.dataclass(frozen=True)
class Reconstruction(_Summed, Task):
  """Images from corrupted images, trained with the mean squared error:
  denoising (Gaussian noise added on the fly), colourisation (grey in) or
  super-resolution (average-pooled in). Metrics: PSNR and SSIM of the
  output and, as the baseline to beat, of the input itself (the noisy image,
  the grey image, the nearest-neighbour enlargement)."""
  mode: str = 'denoise'
  noise_std: float = 0.5
  clip_noise: bool = True
  upscale: int = 2
  kind: ClassVar[str] = 'reconstruction'
  score: ClassVar[str] = 'psnr'
  has_classes: ClassVar[bool] = False
  input_fields: ClassVar[dict] = {'normalize': 'none'}  # targets in [0, 1]

  @classmethod
  def build(cls, config, cfg, pipeline) -> 'Reconstruction':
    del config, pipeline
    return cls(mode=cfg.mode, noise_std=cfg.noise_std,
               clip_noise=cfg.clip_noise, upscale=cfg.upscale)

  @classmethod
  def model_input_shape(cls, cfg, image_shape) -> tuple:
    h, w, c = image_shape
    if cfg.mode == 'colorize':
      return (h, w, 1)
    if cfg.mode == 'super_resolution':
      errors.require(h % cfg.upscale == 0 and w % cfg.upscale == 0,
                     f'super-resolution: the {h}x{w} target does not divide '
                     f'by upscale {cfg.upscale}; set config.input.resolution '
                     'to a multiple of it')
      return (h // cfg.upscale, w // cfg.upscale, c)
    return (h, w, c)

  def check_model(self, model, input_shape, image_shape, name: str) -> None:
    """Raises when the model's output is not the target's shape (e.g. a
    denoising model asked to colourise)."""
    key = jax.random.key(0)
    out = jax.eval_shape(lambda x: model.init_with_output(
        {'params': key, 'dropout': key}, x, train=False)[0][0],
        jax.ShapeDtypeStruct((1, *input_shape), jnp.float32))
    if tuple(out.shape[1:]) != tuple(image_shape):
      raise ValueError(
          f'model {name} turns a {tuple(input_shape)} input into '
          f'{tuple(out.shape[1:])}, but the {self.mode} task wants '
          f'{tuple(image_shape)}: use model autoencoder_{self.mode}, or set '
          'its out_channels and upscale to match config.task')

  def picture_outputs(self, outputs, inputs) -> dict:
    return {'inputs': inputs, 'outputs': outputs}

  def inputs(self, batch: dict, rng, *, train: bool) -> Array:
    del train
    images = batch['image']
    if self.mode == 'colorize':
      return grey(images)
    if self.mode == 'super_resolution':
      return downsample(images, self.upscale)
    noisy = images + self.noise_std * jax.random.normal(
        rng, images.shape, images.dtype)
    return jnp.clip(noisy, 0.0, 1.0) if self.clip_noise else noisy

  def baseline(self, inputs, target_shape) -> Array:
    """The input as a guess of the target (same shape)."""
    if self.mode == 'colorize':
      return jnp.broadcast_to(inputs, target_shape)
    if self.mode == 'super_resolution':
      return jnp.repeat(jnp.repeat(inputs, self.upscale, 1), self.upscale, 2)
    return inputs

  def loss(self, outputs, batch) -> tuple[Array, dict]:
    outputs = outputs.astype(jnp.float32)
    mse = jnp.mean(jnp.square(outputs - batch['image']))
    return mse, {'psnr': jnp.mean(image_metrics.psnr(outputs,
                                                     batch['image']))}

  def eval_outputs(self, outputs, batch, inputs) -> dict:
    outputs, target = outputs.astype(jnp.float32), batch['image']
    valid = batch['valid'].astype(jnp.float32)
    base = jnp.clip(self.baseline(inputs, target.shape), 0.0, 1.0)
    per_image = {
        'loss': image_metrics.mse(outputs, target),
        'psnr': image_metrics.psnr(outputs, target),
        'ssim': image_metrics.ssim(outputs, target),
        'input_psnr': image_metrics.psnr(base, target),
        'input_ssim': image_metrics.ssim(base, target)}
    sums = {k: jnp.sum(v * valid) for k, v in per_image.items()}
    return {**sums, 'count': jnp.sum(valid)}

  def finish(self, acc) -> dict:
    results = self.means(acc)
    results['psnr_gain'] = results['psnr'] - results['input_psnr']
    return results

  def draw(self, path, batch, out, class_names) -> Path:
    del class_names
    batch, out = real_rows(batch, out)
    return draw.save_triples(path, out['inputs'], out['outputs'],
                             batch['image'])
