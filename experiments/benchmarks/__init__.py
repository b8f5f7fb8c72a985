"""Speed, FLOP and evaluation-cost measurements: training steps, sampling, evaluation, mixed precision
and the PyTorch peers (docs/performance.md)."""
