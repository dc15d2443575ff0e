#!/usr/bin/env bash
# Quick start on the embedded default: SQLite under var/, tasks inline, email on the console.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh
.venv/bin/python manage.py migrate --noinput -v 0
.venv/bin/python manage.py collectstatic --noinput -v 0
HOST=${TRACEMEM_HOST:-127.0.0.1}
PORT=${TRACEMEM_PORT:-8000}
# The URLs printed by seed_demo (and put in emails) must match where we actually listen.
export TRACEMEM_PUBLIC_URL=${TRACEMEM_PUBLIC_URL:-http://$HOST:$PORT}
.venv/bin/python manage.py seed_demo
PIDS=()
stop_all() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
# Without a broker there is no Celery beat: `manage.py tick` runs its schedule (approval expiry,
# delivery re-dispatch) next to the web server. With a broker, run scripts/worker.sh and
# scripts/beat.sh instead.
if [ -z "${CELERY_BROKER_URL:-${REDIS_URL:-}}" ]; then
  (. scripts/metrics-dir.sh && use_metrics_dir tick && exec .venv/bin/python manage.py tick) &
  PIDS+=($!)
fi
echo "TraceMem is listening on http://$HOST:$PORT  (Ctrl-C stops it)"
if [ -z "${DATABASE_URL:-}" ]; then
  echo "Embedded SQLite: no database roles. Whoever can write var/ can rewrite traces and re-sign their"
  echo "receipts; only receipts already handed out would show it. For that promise: docs/security.md"
fi
TRACEMEM_HOST=$HOST TRACEMEM_PORT=$PORT TRACEMEM_WEB_WORKERS=${TRACEMEM_WEB_WORKERS:-1} \
  PATH="$PWD/.venv/bin:$PATH" scripts/serve.sh &
PIDS+=($!)
# Stop everything as soon as either process ends (or on Ctrl-C / SIGTERM, via the traps).
wait -n "${PIDS[@]}"
