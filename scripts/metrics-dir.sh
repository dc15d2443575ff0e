# Sourced by serve.sh, worker.sh, beat.sh and run.sh: Prometheus multiprocess mode. Each kind of
# process writes its samples under $TRACEMEM_METRICS_DIR/<kind> (default: $TRACEMEM_VAR_DIR/metrics),
# emptied when that kind starts; GET /metrics adds up every kind's files, so one scrape shows the
# web workers' requests and the Celery workers' deliveries (docs/operations.md, "Metrics").
use_metrics_dir() {
  export TRACEMEM_METRICS_DIR=${TRACEMEM_METRICS_DIR:-${TRACEMEM_VAR_DIR:-var}/metrics}
  export PROMETHEUS_MULTIPROC_DIR="$TRACEMEM_METRICS_DIR/$1"
  mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
  rm -f "$PROMETHEUS_MULTIPROC_DIR"/*.db
}
