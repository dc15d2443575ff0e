#!/usr/bin/env bash
# Create .venv and install TraceMem with its development tools (idempotent, quick when done).
set -euo pipefail
cd "$(dirname "$0")/.."
# TraceMem pins Python 3.11 (pyproject.toml); prefer it when several Pythons are installed.
if [ -z "${PYTHON:-}" ]; then
  if command -v python3.11 >/dev/null 2>&1; then PYTHON=python3.11; else PYTHON=python3; fi
fi
if [ ! -x .venv/bin/python ] && ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  echo "TraceMem needs Python 3.11; install it or set PYTHON=/path/to/python3.11" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.installed
client=clients/python
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ "$client/pyproject.toml" -nt "$stamp" ] \
  || [ ! -x .venv/bin/tracemem ]; then
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q ".[dev]"
  # The Python client (its own package) in editable mode: the `tracemem` command and
  # `import tracemem_client` follow this checkout. The tests import it from clients/python/src.
  .venv/bin/pip install -q -e "$client"
  touch "$stamp"
fi
