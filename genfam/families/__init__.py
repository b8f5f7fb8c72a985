"""Generative families; each module exposes `make(config, spec) -> Family`."""
