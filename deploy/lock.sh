#!/usr/bin/env bash
# Regenerate deploy/requirements.lock, the pinned set the image installs (deploy/install.sh).
# Run it after changing a dependency in pyproject.toml, and commit both files together:
#     deploy/lock.sh
# The lock is for Linux x86_64 / CPython 3.11 (the image's base) with the CPU build of torch
# (no CUDA libraries: a GPU image installs torch from its CUDA index over it, see Dockerfile).
set -euo pipefail
cd "$(dirname "$0")/.."
printf 'torch==2.13.0+cpu\n' > deploy/.torch-cpu.txt
trap 'rm -f deploy/.torch-cpu.txt' EXIT
uv pip compile pyproject.toml \
    --extra postgres --extra parquet --extra dashboard \
    --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
    --find-links "${BENCH_TORCH_FIND_LINKS:-https://download.pytorch.org/whl/cpu/torch/}" \
    --constraint deploy/.torch-cpu.txt \
    --custom-compile-command "deploy/lock.sh" \
    --output-file deploy/requirements.lock "$@"
