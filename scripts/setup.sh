#!/usr/bin/env bash
# Sets genfam up on a Debian/Ubuntu machine with Python >= 3.10:
#  1. Fashion-MNIST: Debian's dataset-fashion-mnist (IDX files under
#     /usr/share/datasets/fashion-mnist), unless GENFAM_FASHION_MNIST_DIR points
#     at the files already; without root or apt the runs fall back to TFDS's
#     download, or say how to get the data.
#  2. jemalloc: Debian's libjemalloc2, which genfam.main preloads by default
#     (train.malloc; genfam/cpu/host_memory.py); without it runs use glibc's malloc and say so.
#  3. A virtual environment .venv (sharing packages already installed for this
#     Python) with genfam and its dependencies, test extras included.
# Safe to run again: it skips what is done.
set -euo pipefail
cd "$(dirname "$0")/.."

# apt_install PACKAGE WHAT_HAPPENS_WITHOUT_IT: Debian's PACKAGE where apt and root (or sudo) are at hand.
apt_updated=""
apt_install() {
  command -v apt-get >/dev/null 2>&1 || return 0
  local SUDO=""; [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo"
  [ "$(id -u)" -eq 0 ] || [ -n "$SUDO" ] || return 0
  echo "setup: installing Debian's $1" >&2
  { [ -n "$apt_updated" ] || $SUDO apt-get update -qq; } && apt_updated=1 \
    && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null \
    || echo "setup: could not install $1; $2" >&2
}

fmnist=/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz
if [ -z "${GENFAM_FASHION_MNIST_DIR:-}" ] && [ ! -e "$fmnist" ]; then
  apt_install dataset-fashion-mnist "runs will try TFDS's download"
fi
if ! compgen -G "/usr/lib*/libjemalloc.so.2" >/dev/null && ! compgen -G "/usr/lib*/*/libjemalloc.so.2" >/dev/null; then
  apt_install libjemalloc2 "runs will use glibc's malloc (train.malloc)"
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
