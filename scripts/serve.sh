#!/usr/bin/env bash
# TraceMem's production web server (gunicorn), in the foreground (docs/contract/interfaces.md). Listens on
# TRACEMEM_HOST:TRACEMEM_PORT (default 127.0.0.1:8000; the image sets 0.0.0.0). Reads the
# environment; finds `gunicorn` on PATH (an activated virtualenv, or the image). Extra arguments go
# to gunicorn (and GUNICORN_CMD_ARGS is honoured), e.g. scripts/serve.sh --workers 4.
#
# Keep-alive: idle client connections stay open 75 s, longer than the idle timeouts of common
# clients and proxies (60 s: nginx, AWS ALB, most HTTP client pools), so the server never closes a
# connection a client is about to reuse (which fails that request with a reset). gthread workers
# park idle connections without holding a thread. Numbers are starting points (issue 17 tunes them).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v gunicorn >/dev/null || { echo "serve.sh: gunicorn is not on PATH (activate the virtualenv)" >&2; exit 127; }
exec gunicorn tracemem_site.wsgi \
  --bind "${TRACEMEM_HOST:-127.0.0.1}:${TRACEMEM_PORT:-8000}" \
  --worker-class gthread \
  --workers "${TRACEMEM_WEB_WORKERS:-2}" \
  --threads "${TRACEMEM_WEB_THREADS:-8}" \
  --keep-alive "${TRACEMEM_WEB_KEEPALIVE:-75}" \
  --timeout 60 \
  --graceful-timeout 30 \
  --access-logfile - --error-logfile - \
  "$@"
