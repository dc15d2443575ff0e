#!/usr/bin/env bash
# TraceMem's periodic schedule (Celery beat), in the foreground (docs/contract/interfaces.md): every
# TRACEMEM_APPROVALS_TICK_SECONDS (default 30) it queues `approvals.tick` (expire overdue approvals,
# re-dispatch due notifications), which a `tasks` worker (scripts/worker.sh) runs. Run exactly one
# per deployment. Reads the environment; finds `celery` on PATH. Extra arguments go to celery beat.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v celery >/dev/null || { echo "beat.sh: celery is not on PATH (activate the virtualenv)" >&2; exit 127; }
var=${TRACEMEM_VAR_DIR:-var}
mkdir -p "$var"
. scripts/metrics-dir.sh
use_metrics_dir beat
exec celery -A tracemem_site beat --loglevel "${LOG_LEVEL:-INFO}" --schedule "$var/celerybeat-schedule" "$@"
