"""genfam: generative model families trained by one loop and judged by one evaluation."""
import jax

# Random draws must not depend on how an array is sharded: with the
# partitionable threefry implementation, `random.normal(key, [B, ...])` gives
# the same numbers on 1 device and on 8, which the multi-device parity test
# relies on. Pinned here so every entry point (CLI, tests, notebooks) agrees.
jax.config.update("jax_threefry_partitionable", True)
