"""One code path for one device and many: a one-axis `data` mesh.

The batch is sharded over the `data` axis, parameters and optimizer state are
replicated (what `pmap` did, written as `jax.jit` with shardings). Works on one
CPU, 8 fake CPU devices, a GPU or a TPU slice; across processes each process
supplies its own rows of the global batch. (How many devices a CPU is split into is
set before JAX starts, by `genfam.cpu.xla_cpu`.)
"""
import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P


def data_mesh() -> jax.sharding.Mesh:
  """All devices on one `data` axis, sharded automatically by the compiler (Auto
  axis type: jit propagates the batch sharding, parameters stay replicated)."""
  return jax.make_mesh((jax.device_count(),), ("data",), axis_types=(jax.sharding.AxisType.Auto,))


def batch_sharding(mesh) -> NamedSharding:
  return NamedSharding(mesh, P("data"))


def replicated(mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def shard_batch(batch: dict, mesh) -> dict:
  """Process-local numpy rows -> global arrays sharded on their leading axis."""
  sharding = batch_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in batch.items()}


def to_host(x) -> np.ndarray:
  """A (possibly sharded) global array -> numpy on every process."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
  return np.asarray(x)


def global_rows(local: np.ndarray, mesh) -> np.ndarray:
  """This process's rows of a batch-shaped array -> the global batch's rows, on every
  process (as `to_host` returns a sharded result); the identity on one process."""
  if jax.process_count() == 1:
    return np.asarray(local)
  return to_host(jax.make_array_from_process_local_data(batch_sharding(mesh), np.asarray(local)))
