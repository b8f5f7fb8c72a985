"""Probes of where a step's time goes: XLA kernels on this CPU, the image-GPT step alone, and a
profiled training step by XLA operation (docs/performance.md)."""
