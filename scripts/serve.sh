#!/usr/bin/env bash
# TraceMem's production web server (gunicorn), in the foreground (docs/contract/interfaces.md). Listens on
# TRACEMEM_HOST:TRACEMEM_PORT (default 127.0.0.1:8000; the image sets 0.0.0.0). Reads the
# environment; finds `gunicorn` on PATH (an activated virtualenv, or the image). Extra arguments go
# to gunicorn (and GUNICORN_CMD_ARGS is honoured), e.g. scripts/serve.sh --workers 4.
#
# Workers: TRACEMEM_WEB_WORKERS processes (uvicorn workers: tracemem_site/front_worker.py), each
# running Django's synchronous views on a fixed pool of TRACEMEM_WEB_THREADS threads behind a small
# asyncio front (tracemem_site/front.py) that waits for decision_wait without holding a thread, so
# hundreds of waiting agents cost no thread and no database connection (docs/mcp.md,
# "decision_wait and the server"; bench/bench_wait.py measures it).
#
# Keep-alive: idle client connections stay open 75 s, longer than the idle timeouts of common
# clients and proxies (60 s: nginx, AWS ALB, most HTTP client pools), so the server never closes a
# connection a client is about to reuse (which fails that request with a reset). The event loop
# parks idle connections without holding a thread. Workers and threads (2 x 8) were measured against
# 2 x 4, 2 x 16, 3 x 8 and 4 x 4 with `python -m bench hotpath` (docs/performance.md section 32): no
# setting beat another beyond the noise on 2 cores; a worker costs ~150 MiB, a thread almost nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v gunicorn >/dev/null || { echo "serve.sh: gunicorn is not on PATH (activate the virtualenv)" >&2; exit 127; }
. scripts/metrics-dir.sh
use_metrics_dir web
export TRACEMEM_WEB_THREADS="${TRACEMEM_WEB_THREADS:-8}"
# glibc's malloc gives each thread that allocates its own arena (up to 8 per core), and each arena
# keeps the free memory of its busiest moment: the pool's threads took turns serving 828 KB trace
# pages and each kept its own few MiB. Two arenas for the whole process keep ~30 MiB less per worker
# at the same CPU per request (docs/performance.md §21). Other allocators ignore it.
export MALLOC_ARENA_MAX="${MALLOC_ARENA_MAX:-2}"
exec gunicorn tracemem_site.front:application \
  --bind "${TRACEMEM_HOST:-127.0.0.1}:${TRACEMEM_PORT:-8000}" \
  --worker-class tracemem_site.front_worker.Worker \
  --workers "${TRACEMEM_WEB_WORKERS:-2}" \
  --keep-alive "${TRACEMEM_WEB_KEEPALIVE:-75}" \
  --timeout 60 \
  --graceful-timeout 30 \
  --access-logfile - --error-logfile - \
  "$@"
