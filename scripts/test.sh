#!/usr/bin/env bash
# The whole suite on PostgreSQL and Redis, plus the checks CI runs. Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh --dev
# Browser tests drive Debian's Chromium; install it when we can (root on Debian).
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || echo "warning: could not install chromium"
fi
# The test database is created and migrated as this role (the owner, a superuser here);
# tests/conftest.py then runs `db_roles`, and every connection of the code under test (test client,
# live servers, worker subprocesses) logs in as the app role it created, as in production.
export DATABASE_URL=${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/tracemem}
unset MIGRATION_DATABASE_URL
export REDIS_URL=${TEST_REDIS_URL:-redis://127.0.0.1:6379/15}
export TRACEMEM_VAR_DIR=${TRACEMEM_VAR_DIR:-$PWD/var/test}
echo "== ruff"; .venv/bin/ruff check . && .venv/bin/ruff format --check .
echo "== import-linter"; .venv/bin/lint-imports
# import-linter sees external packages whole, so Django's HTTP/forms/templates are checked by name.
# approvals/services/channels.py is the exception: the email sender renders the email templates.
if grep -nE '^\s*(from|import) django\.(http|forms|template|shortcuts)' \
  $(ls */services.py */services/*.py */config.py */selectors.py | grep -v '^approvals/services/channels.py$'); then
  echo "services and selectors must not import HTTP, forms or templates (STYLE rule 2)"; exit 1
fi
echo "== mypy (django-stubs): tracemem_core, tracemem_site and every app's services and selectors"
.venv/bin/mypy tracemem_core tracemem_site tracemem_verify */services.py */services/*.py */config.py */selectors.py decisions/records.py decisions/receipts.py \
  decisions/evidence.py decisions/integrity.py receiptlog/integrity.py policies/engine.py products/engine.py products/dsn.py \
  products/demo.py approvals/demo.py policies/demo.py
echo "== mypy --strict: the Python client (clients/python), against the oldest Python it supports"
(cd clients/python && ../../.venv/bin/mypy src)
# Checked against the server's maintenance database (it always exists; the test database is created
# later by pytest), so makemigrations has a database to look at and prints no "does not exist" warning.
echo "== migrations are up to date"
DATABASE_URL="${DATABASE_URL%/*}/postgres" .venv/bin/python manage.py makemigrations --check --dry-run >/dev/null
echo "== pytest"
exec .venv/bin/pytest "$@"
