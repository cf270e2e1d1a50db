# syntax=docker/dockerfile:1
# The one image of a bench_service cluster: Ray head, Ray workers, the API, the dashboard
# and the migration job all run it, each through one role of its entrypoint
# (deploy/entrypoint.sh: head | worker | api | dashboard | migrate | sweep SPEC).
#
#   docker build -t bench-service:0.1.0 .                      # CPU (torch's CPU build)
#   docker build -t bench-service:0.1.0-gpu \
#       --build-arg BENCH_LOCK=deploy/requirements-gpu.lock .  # GPU workers (CUDA torch)
#
# Every Python package comes pinned from a generated lock (deploy/lock.sh writes
# deploy/requirements*.lock from pyproject.toml), installed by deploy/install.sh, the same
# script tests/test_deploy.py runs into a fresh virtualenv.

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# --- builder: the virtualenv, from the lock only -----------------------------------------
FROM ${PYTHON_IMAGE} AS builder
ARG UV_VERSION=0.13.8
ARG BENCH_LOCK=deploy/requirements.lock
ARG BENCH_TORCH_FIND_LINKS=https://download.pytorch.org/whl/cpu/torch/
RUN pip install --no-cache-dir "uv==${UV_VERSION}"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bench_service ./bench_service
COPY deploy/install.sh deploy/requirements.lock deploy/requirements-gpu.lock ./deploy/
RUN BENCH_LOCK="${BENCH_LOCK}" BENCH_TORCH_FIND_LINKS="${BENCH_TORCH_FIND_LINKS}" \
    BENCH_PYTHON=/usr/local/bin/python3.11 UV_NO_CACHE=1 \
    deploy/install.sh /opt/venv

# --- runtime: the virtualenv and the entrypoint, a non-root user --------------------------
FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 bench \
 && useradd --system --uid 10001 --gid bench --create-home --home-dir /home/bench bench
COPY --from=builder /opt/venv /opt/venv
COPY deploy/entrypoint.sh /usr/local/bin/bench-entrypoint
COPY examples /opt/bench/examples
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    RAY_USAGE_STATS_ENABLED=0 \
    RAY_AUTH_MODE=token
USER bench
WORKDIR /home/bench
# 6380 GCS, 8265 Ray dashboard / Jobs API, 8000 bench API, 8501 bench dashboard
EXPOSE 6380 8265 8000 8501
ENTRYPOINT ["bench-entrypoint"]
CMD ["api"]
