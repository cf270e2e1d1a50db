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
#   entrypoint.sh check       print the command of every role without running it (tests)
#
# Configuration is by environment only (documented in .env.example): the database URL
# (BENCH_DB_URL), Ray's token (RAY_AUTH_TOKEN, with RAY_AUTH_MODE=token), the API's tokens
# (BENCH_API_TOKENS) and the dashboard's (BENCH_DASHBOARD_TOKEN). A role that lacks a
# variable it needs exits 2 with one line naming it.
set -euo pipefail

die() { echo "entrypoint: $*" >&2; exit 2; }
need() { [[ -n "${!1:-}" ]] || die "role '$role' needs \$$1 ($2)"; }

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
        node_flags
        cmd=(ray start --head --block --disable-usage-stats
             --port "${RAY_PORT:-6380}" --dashboard-host 0.0.0.0
             --dashboard-port "${RAY_DASHBOARD_PORT:-8265}" "${flags[@]}") ;;
    worker)
        need RAY_AUTH_TOKEN "the cluster's token, the head's"
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
        die "unknown role '${role}'; one of: head worker api dashboard migrate sweep check" ;;
    esac
}

role="${1:-}"
spec="${2:-}"
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
