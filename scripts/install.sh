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
# TraceMem pins Python 3.11 (pyproject.toml); prefer it when several Pythons are installed, and of
# several 3.11s the distribution's or the official image's (/usr/bin, /usr/local/bin: built with
# profile-guided optimisation) over another found first on PATH: a default pyenv build has none and
# runs ~12 % more instructions per request (docs/performance.md section 18). PYTHON=... decides.
if [ -z "${PYTHON:-}" ]; then
  PYTHON=python3
  for candidate in /usr/bin/python3.11 /usr/local/bin/python3.11 python3.11; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import ensurepip, venv' >/dev/null 2>&1; then
      PYTHON=$candidate
      break
    fi
  done
fi
if [ ! -x .venv/bin/python ] && ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  echo "TraceMem needs Python 3.11; install it or set PYTHON=/path/to/python3.11" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
client=clients/python
UV_VERSION=0.13.8
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ "$client/pyproject.toml" -nt "$stamp" ] \
  || [ ! -x .venv/bin/tracemem ]; then
  # The Python client (its own package) in editable mode: the `tracemem` command and
  # `import tracemem_client` follow this checkout. The tests import it from clients/python/src.
  # uv (pinned, from PyPI) resolves and installs in parallel: a cold install takes seconds where pip
  # takes minutes (docs/operations.md, "Installing"). Plain pip is the fallback.
  if [ ! -x .venv/bin/uv ]; then
    .venv/bin/pip install -q --disable-pip-version-check "uv==$UV_VERSION" || true
  fi
  # --compile-bytecode: every process (the server's workers, each test's subprocess) would otherwise
  # compile Django and every library from source at start-up where PYTHONDONTWRITEBYTECODE is set,
  # as in our image and CI: 10 s instead of 4 s to import the site (docs/performance.md).
  if [ -x .venv/bin/uv ] && .venv/bin/uv pip install -q --compile-bytecode --python .venv/bin/python ".$extra" -e "$client"; then
    :
  else
    echo "install.sh: installing with pip" >&2
    .venv/bin/pip install -q --disable-pip-version-check ".$extra" -e "$client"
  fi
  touch "$stamp"
fi
