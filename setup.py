"""genfam: generative model families on one loop, one data pipeline, one evaluation."""
from setuptools import find_packages, setup

setup(
    name="genfam",
    version="0.1.0",
    description="VAE, flows, GAN, diffusion and image-GPT trained by one JAX loop and judged by one evaluation",
    packages=find_packages(include=["genfam", "genfam.*"]),
    python_requires=">=3.10",
    install_requires=[
        "jax>=0.10",
        "flax>=0.12",
        "optax>=0.2.8",
        "orbax-checkpoint>=0.12",
        "chex>=0.1.90",
        "ml-collections>=1.1",
        "tensorflow-datasets>=4.9.10",
        "importlib_resources",  # TFDS imports it lazily when preparing a builder
        "array_record>=0.8",
        "grain>=0.2.18",
        "absl-py",
        "tqdm",
        "tensorboardX",
        "matplotlib",
        "scikit-learn",
        "blackjax>=1.2",  # HMC transitions of the GAN's AIS likelihood (genfam.likelihood.ais)
        "optuna>=4.5",  # experiments.studies.sweep's distributed mode (RDB storage, heartbeats, retries)
    ],
    extras_require={
        "test": ["pytest", "pytest-xdist", "nbclient", "nbformat", "ipykernel",
                 "psycopg2-binary"],  # the sweep test on a local PostgreSQL server
    },
)
