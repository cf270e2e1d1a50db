#!/usr/bin/env bash
# The one entrypoint of the bench_service image: every container of docker-compose.yml and
# every pod of deploy/kubernetes/ runs one of these roles, nothing else.
#
#   entrypoint.sh head        Ray head: GCS on $RAY_PORT, dashboard + Jobs API on :8265
#   entrypoint.sh worker      Ray worker joining $RAY_HEAD_ADDRESS (host:port)
#   entrypoint.sh api         the HTTP API (bench serve), submitting sweeps as Ray Jobs
#   entrypoint.sh dashboard   the Streamlit dashboard (bench dashboard)
#   entrypoint.sh migrate     create or upgrade the database schema (bench db upgrade), exit
#   entrypoint.sh sweep SPEC  run one sweep on the cluster this runs in (a Ray Job's command)
#   entrypoint.sh health ROLE exit 0 when this container's ROLE is healthy (the probes)
#   entrypoint.sh check       print the command of every role without running it (tests)
#
# Configuration is by environment only (documented in .env.example): the database URL
# (BENCH_DB_URL), Ray's token (RAY_AUTH_TOKEN, with RAY_AUTH_MODE=token), the API's tokens
# (BENCH_API_TOKENS) and the dashboard's (BENCH_DASHBOARD_TOKEN). A role that lacks a
# variable it needs exits 2 with one line naming it.
set -euo pipefail

die() { echo "entrypoint: $*" >&2; exit 2; }
need() {
    [[ -n "${!1:-}" ]] || die "role '$role' needs \$$1 ($2)"
    [[ "${!1}" != *CHANGE-ME* ]] || die "role '$role': \$$1 is still a placeholder (CHANGE-ME)"
}

# Optional flags: only passed when their variable is set (Ray detects the rest itself).
node_flags() {
    flags=()
    [[ -n "${BENCH_NODE_IP:-}" ]] && flags+=(--node-ip-address "$BENCH_NODE_IP")
    [[ -n "${BENCH_RAY_TEMP_DIR:-}" ]] && flags+=(--temp-dir "$BENCH_RAY_TEMP_DIR")
    [[ -n "${RAY_NUM_CPUS:-}" ]] && flags+=(--num-cpus "$RAY_NUM_CPUS")
    [[ -n "${RAY_NUM_GPUS:-}" ]] && flags+=(--num-gpus "$RAY_NUM_GPUS")
    [[ -n "${RAY_OBJECT_STORE_BYTES:-}" ]] && flags+=(--object-store-memory "$RAY_OBJECT_STORE_BYTES")
    return 0
}

role_command() {
    case "$role" in
    head)
        need RAY_AUTH_TOKEN "the cluster's token: openssl rand -hex 32"
        if [[ -n "${KUBERAY_GEN_RAY_START_CMD:-}" ]]; then  # KubeRay wrote the ray start line
            cmd=(bash -c "$KUBERAY_GEN_RAY_START_CMD"); return
        fi
        node_flags
        cmd=(ray start --head --block --disable-usage-stats
             --port "${RAY_PORT:-6380}" --dashboard-host 0.0.0.0
             --dashboard-port "${RAY_DASHBOARD_PORT:-8265}" "${flags[@]}") ;;
    worker)
        need RAY_AUTH_TOKEN "the cluster's token, the head's"
        if [[ -n "${KUBERAY_GEN_RAY_START_CMD:-}" ]]; then
            cmd=(bash -c "$KUBERAY_GEN_RAY_START_CMD"); return
        fi
        need RAY_HEAD_ADDRESS "the head's GCS address, e.g. ray-head:6380"
        node_flags
        cmd=(ray start --block --disable-usage-stats --address "$RAY_HEAD_ADDRESS"
             "${flags[@]}") ;;
    api)
        need BENCH_DB_URL "postgresql+psycopg://USER:PASSWORD@HOST:5432/DB"
        need BENCH_RAY_DASHBOARD_URL "the head's Jobs API, e.g. http://ray-head:8265"
        cmd=(bench serve --db "$BENCH_DB_URL" --ray-address "$BENCH_RAY_DASHBOARD_URL"
             --host "${BENCH_API_HOST:-0.0.0.0}" --port "${BENCH_API_PORT:-8000}") ;;
    dashboard)
        need BENCH_DB_URL "postgresql+psycopg://USER:PASSWORD@HOST:5432/DB"
        cmd=(bench dashboard --db "$BENCH_DB_URL" --host "${BENCH_DASHBOARD_HOST:-0.0.0.0}"
             --port "${BENCH_DASHBOARD_PORT:-8501}") ;;
    migrate)
        need BENCH_DB_URL "postgresql+psycopg://USER:PASSWORD@HOST:5432/DB"
        cmd=(bench db upgrade --db "$BENCH_DB_URL") ;;
    sweep)
        need BENCH_DB_URL "postgresql+psycopg://USER:PASSWORD@HOST:5432/DB"
        [[ -n "${spec:-}" ]] || die "role 'sweep' needs the spec file: entrypoint.sh sweep SPEC"
        cmd=(bench run "$spec" --db "$BENCH_DB_URL" --address "${RAY_ADDRESS:-auto}"
             --no-progress) ;;
    *)
        die "unknown role '${role}'; one of: head worker api dashboard migrate sweep health check" ;;
    esac
}

# GET a local URL (with the Ray token for the Ray dashboard); exit 1 unless it answers 2xx.
http_ok() {
    python - "$1" "${2:-}" <<'PY'
import sys, urllib.request
req = urllib.request.Request(sys.argv[1])
if sys.argv[2]:
    req.add_header("Authorization", f"Bearer {sys.argv[2]}")
try:
    with urllib.request.urlopen(req, timeout=5) as resp:
        sys.exit(0 if 200 <= resp.status < 300 else 1)
except Exception as exc:
    print(f"unhealthy: {sys.argv[1]}: {exc}", file=sys.stderr)
    sys.exit(1)
PY
}

health() {
    case "$1" in
    head) http_ok "http://127.0.0.1:${RAY_DASHBOARD_PORT:-8265}/api/gcs_healthz" \
              "${RAY_AUTH_TOKEN:-}" ;;
    worker)  # this node's raylet runs (ray start --block exits, and the container with it,
             # when it dies; this catches a hung start)
        for comm in /proc/[0-9]*/comm; do
            [[ "$(cat "$comm" 2>/dev/null)" == raylet ]] && return 0
        done
        echo "unhealthy: no raylet process" >&2; return 1 ;;
    api) http_ok "http://127.0.0.1:${BENCH_API_PORT:-8000}/health" ;;
    dashboard) http_ok "http://127.0.0.1:${BENCH_DASHBOARD_PORT:-8501}/_stcore/health" ;;
    *) die "health: unknown role '${1}'; one of: head worker api dashboard" ;;
    esac
}

role="${1:-}"
spec="${2:-}"
if [[ "$role" == health ]]; then
    health "$spec"
    exit $?
fi
if [[ "$role" == check ]]; then
    # Every role's command with placeholder settings, one per line (tests parse these).
    export RAY_AUTH_TOKEN="${RAY_AUTH_TOKEN:-x}" RAY_HEAD_ADDRESS="${RAY_HEAD_ADDRESS:-h:6380}"
    export BENCH_DB_URL="${BENCH_DB_URL:-sqlite:///x.db}"
    export BENCH_RAY_DASHBOARD_URL="${BENCH_RAY_DASHBOARD_URL:-http://h:8265}"
    spec="${spec:-spec.yaml}"
    for role in head worker api dashboard migrate sweep; do
        role_command
        printf '%s\n' "$role: ${cmd[*]}"
    done
    exit 0
fi
[[ -n "$role" ]] || die "usage: entrypoint.sh ROLE (head worker api dashboard migrate sweep)"
role_command
# Ray's token authentication is on in every role that talks to Ray: the head refuses
# unauthenticated clients, workers and job drivers carry the token.
export RAY_AUTH_MODE="${RAY_AUTH_MODE:-token}"
exec "${cmd[@]}"
