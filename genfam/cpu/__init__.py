"""Platform tuning for XLA:CPU: how genfam runs fast on a CPU, none of it changing a computed value.

Everything here is about the CPU backend, and a reader of the models can skip it:
- `host_memory`: keeping freed host memory mapped between steps (glibc's thresholds,
  huge pages, jemalloc), and the restart of genfam.main that sets the allocator up
  (`train.malloc`, `train.huge_pages`, `train.malloc_retain_mib`).
- `xla_cpu`: the CPU's split into data-parallel devices (`train.cpu_devices`) and the
  opt-in XLA:CPU flags (`train.xla_cpu_flags`), set before JAX starts.
- Exact rewrites of products that XLA:CPU runs on a slow path, each equal to lax's form
  in float64 (gradients included) and used on the CPU only (GPU and TPU get lax's forms):
  `phase_conv` (convolutions over zero-dilated or upsampled inputs, by phases),
  `conv_transpose` (a transposed convolution with a pre-swapped kernel for its input
  gradient), `matmul_conv` (the networks' `Conv` layer with a product dtype: 1x1
  convolutions as matmuls, im2col), `dense_products` (dense layers' kernel gradients in
  the form the CPU's bfloat16 matrix units run).
The defaults are those of docs/DESIGN.md, "Scale"; the networks (`genfam.nets`) import
the layers, `genfam.main` and the loop the rest.
"""
