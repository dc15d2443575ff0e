#!/usr/bin/env bash
# TraceMem's Celery workers, in the foreground (docs/contract/interfaces.md). Reads the environment (.env.example);
# finds `celery` on PATH (an activated virtualenv, or the image).
#
#   scripts/worker.sh [all|deliveries|tasks] [extra celery worker arguments]
#
# Two workers, so a slow or hanging notification receiver never holds up anything else:
#   deliveries  the `deliveries` queue (approval notifications), a pool of
#               TRACEMEM_DELIVERY_CONCURRENCY threads (default 16): sending is waiting on the network
#   tasks       every other queue (`celery`: the beat's tick, Slack message updates),
#               TRACEMEM_TASKS_CONCURRENCY threads (default 2)
# `all` (the default) runs both and stops both as soon as either stops. The periodic schedule is
# not here: run scripts/beat.sh, exactly one per deployment.
set -euo pipefail
cd "$(dirname "$0")/.."
which=${1:-all}
[ $# -gt 0 ] && shift
command -v celery >/dev/null || { echo "worker.sh: celery is not on PATH (activate the virtualenv)" >&2; exit 127; }
common=(-A tracemem_site worker --loglevel "${LOG_LEVEL:-INFO}" --without-gossip --without-mingle)

. scripts/metrics-dir.sh

deliveries() {
  use_metrics_dir worker-deliveries
  exec celery "${common[@]}" -n "deliveries@%h" -Q deliveries \
    --pool threads --concurrency "${TRACEMEM_DELIVERY_CONCURRENCY:-16}" "$@"
}
tasks() {
  use_metrics_dir worker-tasks
  exec celery "${common[@]}" -n "tasks@%h" -Q celery \
    --pool threads --concurrency "${TRACEMEM_TASKS_CONCURRENCY:-2}" "$@"
}

case "$which" in
  deliveries) deliveries "$@" ;;
  tasks) tasks "$@" ;;
  all)
    (deliveries "$@") &
    first=$!
    (tasks "$@") &
    second=$!
    stop() { kill -TERM "$first" "$second" 2>/dev/null || true; wait "$first" "$second" 2>/dev/null || true; }
    trap 'stop; exit 143' TERM
    trap 'stop; exit 130' INT
    # One worker ending (crash or shutdown) ends both, so a supervisor restarts the pair.
    status=0
    wait -n "$first" "$second" || status=$?
    stop
    exit "$status"
    ;;
  *) echo "usage: scripts/worker.sh [all|deliveries|tasks] [celery worker args]" >&2; exit 2 ;;
esac
