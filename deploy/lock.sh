#!/usr/bin/env bash
# Regenerate the pinned sets the image installs (deploy/install.sh), from pyproject.toml:
#     deploy/lock.sh
# Run it after changing a dependency in pyproject.toml and commit the locks with it.
#   deploy/requirements.lock      CPU image: torch's CPU build (no CUDA libraries)
#   deploy/requirements-gpu.lock  GPU image: PyPI's torch (CUDA 12) with its nvidia-* wheels
# Both for Linux x86_64, CPython 3.11 (the image's base).
# BENCH_TORCH_FIND_LINKS: where the CPU torch wheel is found (default: PyTorch's CPU index;
# a local folder holding torch-<version>+cpu-*.whl works too).
set -euo pipefail
cd "$(dirname "$0")/.."
common=(pyproject.toml --extra postgres --extra parquet --extra dashboard --extra service --extra analysis
        --python-version 3.11 --python-platform x86_64-manylinux_2_28
        --custom-compile-command "deploy/lock.sh" --quiet)
torch_cpu="$(mktemp)"
trap 'rm -f "$torch_cpu"' EXIT
printf 'torch==2.13.0+cpu\n' > "$torch_cpu"
uv pip compile "${common[@]}" --constraint "$torch_cpu" \
    --find-links "${BENCH_TORCH_FIND_LINKS:-https://download.pytorch.org/whl/cpu/torch/}" \
    --output-file deploy/requirements.lock
printf 'torch==2.13.0\n' > "$torch_cpu"
uv pip compile "${common[@]}" --constraint "$torch_cpu" \
    --output-file deploy/requirements-gpu.lock
