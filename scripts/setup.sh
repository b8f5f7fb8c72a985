#!/usr/bin/env bash
# Sets genfam up on a Debian/Ubuntu machine with Python >= 3.10:
#  1. Fashion-MNIST: Debian's dataset-fashion-mnist (IDX files under
#     /usr/share/datasets/fashion-mnist), unless GENFAM_FASHION_MNIST_DIR points
#     at the files already; without root or apt the runs fall back to TFDS's
#     download, or say how to get the data.
#  2. A virtual environment .venv (sharing packages already installed for this
#     Python) with genfam and its dependencies, test extras included.
# Safe to run again: it skips what is done.
set -euo pipefail
cd "$(dirname "$0")/.."

fmnist=/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz
if [ -z "${GENFAM_FASHION_MNIST_DIR:-}" ] && [ ! -e "$fmnist" ]; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo"
    if [ "$(id -u)" -eq 0 ] || [ -n "$SUDO" ]; then
      echo "setup: installing Debian's dataset-fashion-mnist" >&2
      $SUDO apt-get update -qq && $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null \
        || echo "setup: could not install dataset-fashion-mnist; runs will try TFDS's download" >&2
    fi
  fi
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv --system-site-packages .venv
fi
if ! .venv/bin/python -c "import genfam, jax, flax, optax, orbax.checkpoint, grain, tensorflow_datasets, nbclient" 2>/dev/null \
   || [ setup.py -nt .venv/.genfam-installed ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
  touch .venv/.genfam-installed
fi
echo "setup: ready (.venv/bin/python)" >&2
