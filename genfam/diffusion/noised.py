"""Noised images for the models that guide diffusion sampling (the noise-conditional
classifier and CLIP image tower): training pairs (x_t, t) drawn from the forward process.

An image's x_0 is its bin centre on [-1, 1] (as the diffusion family's), t ~ U{0 .. T-1}
(schedule indices, paper steps 1 .. T) and x_t = sqrt(a_t) x_0 + sqrt(1 - a_t) eps,
eps ~ N(0, I) (`genfam.diffusion.process.q_sample`), so the guide sees exactly the states
the sampler visits. Evaluations also report accuracy per t-bucket: bucket k of n holds the
timesteps [k T / n, (k + 1) T / n).
"""
import jax
import jax.numpy as jnp

from genfam.diffusion import schedules
from genfam.diffusion.process import q_sample
from genfam.errors import GenfamError
from genfam.likelihood.discretized import bin_centres

NUM_BUCKETS = 5


def schedule_of(diffusion_config) -> schedules.Schedule:
  """The schedule named by a guide's config.diffusion (schedule, num_steps): the guided model's."""
  d = diffusion_config
  if d.schedule not in schedules.SCHEDULES:
    raise GenfamError(f"unknown diffusion.schedule {d.schedule!r}; use one of {schedules.SCHEDULES} "
                      "(the schedule of the diffusion model this guide will steer)")
  return schedules.make_schedule(d.schedule, int(d.num_steps))


def noised(s: schedules.Schedule, image, num_bins: int, rng, t=None):
  """(x_t float32 [B, H, W, C], t int32 [B]) for uint8 images [B, H, W, C]; t uniform on
  {0 .. T-1} unless given ([B] int)."""
  x0 = bin_centres(image, num_bins)
  rng_t, rng_noise = jax.random.split(rng)
  if t is None:
    t = jax.random.randint(rng_t, (x0.shape[0],), 0, s.num_steps)
  return q_sample(s, x0, t, jax.random.normal(rng_noise, x0.shape, x0.dtype)), t


def bucket_timesteps(rng, num_steps: int, bucket: int, batch: int, num_buckets: int = NUM_BUCKETS):
  """t int32 [batch], uniform on bucket `bucket` of `num_buckets`: [k T / n, (k + 1) T / n)."""
  low, high = bucket * num_steps // num_buckets, (bucket + 1) * num_steps // num_buckets
  return jax.random.randint(rng, (batch,), low, max(high, low + 1))


def bucket_name(num_steps: int, bucket: int, num_buckets: int = NUM_BUCKETS) -> str:
  """'t<first>_<last>' of bucket k (schedule indices, inclusive), e.g. 't0_199' for T = 1000, k = 0."""
  low, high = bucket * num_steps // num_buckets, (bucket + 1) * num_steps // num_buckets
  return f"t{low}_{max(high, low + 1) - 1}"
