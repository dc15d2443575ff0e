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
echo "TraceMem is listening on http://$HOST:$PORT  (Ctrl-C stops it)"
exec .venv/bin/gunicorn tracemem_site.wsgi --bind "$HOST:$PORT" --worker-class gthread --workers 1 --threads 8 \
  --access-logfile - --error-logfile -
