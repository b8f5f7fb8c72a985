"""Data: TFDS builders of our own + a grain pipeline -> batches of numpy arrays."""
