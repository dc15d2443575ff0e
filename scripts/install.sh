#!/usr/bin/env bash
# Create .venv and install TraceMem (idempotent, quick when done).
#   scripts/install.sh         what running needs (make run): the server and the Python client
#   scripts/install.sh --dev   that plus the test and lint tools (make test, make bench)
set -euo pipefail
cd "$(dirname "$0")/.."
extra=""
stamp=.venv/.installed-runtime
if [ "${1:-}" = "--dev" ]; then
  extra="[dev]"
  stamp=.venv/.installed-dev
fi
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
client=clients/python
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ "$client/pyproject.toml" -nt "$stamp" ] \
  || [ ! -x .venv/bin/tracemem ]; then
  # One pip run for both (one dependency resolution); the venv's own pip is recent enough.
  # The Python client (its own package) in editable mode: the `tracemem` command and
  # `import tracemem_client` follow this checkout. The tests import it from clients/python/src.
  .venv/bin/pip install -q --disable-pip-version-check ".$extra" -e "$client"
  touch "$stamp"
fi
