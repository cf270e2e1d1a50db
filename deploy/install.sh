#!/usr/bin/env bash
# The image's install step (Dockerfile's builder stage runs exactly this), also run by
# tests/test_deploy.py into a fresh virtualenv, so a broken step fails a test, not a build:
#     deploy/install.sh VENV_DIR
# Installs the pinned set of deploy/requirements.lock (nothing resolved at build time:
# --no-deps), then this package itself (not editable), then checks that every pinned
# requirement is consistent and that the entrypoint's commands exist.
# BENCH_LOCK: the lock to install (default deploy/requirements.lock, CPU torch; the GPU
# image uses deploy/requirements-gpu.lock). BENCH_TORCH_FIND_LINKS: where the CPU torch
# wheel is found (default: PyTorch's CPU index; any folder holding that wheel).
set -euo pipefail
venv="${1:?usage: deploy/install.sh VENV_DIR}"
src="$(cd "$(dirname "$0")/.." && pwd)"
find_links="${BENCH_TORCH_FIND_LINKS:-https://download.pytorch.org/whl/cpu/torch/}"
uv venv --quiet --python "${BENCH_PYTHON:-python3.11}" "$venv"
uv pip install --quiet --python "$venv/bin/python" --no-deps --find-links "$find_links" \
    -r "$src/${BENCH_LOCK:-deploy/requirements.lock}"
uv pip install --quiet --python "$venv/bin/python" --no-deps "$src"
uv pip check --python "$venv/bin/python"
"$venv/bin/bench" --version
