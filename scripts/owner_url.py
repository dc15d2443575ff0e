#!/usr/bin/env python3
"""Print the owner's database URL made from POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB (and
POSTGRES_HOST, default ``postgres``; POSTGRES_PORT, default 5432), each quoted for a URL: the
docker-compose migrate job's MIGRATION_DATABASE_URL, so owner.env states the credentials once."""

from __future__ import annotations

import os
import sys
from urllib.parse import quote


def owner_url(env: dict[str, str]) -> str:
    user, password, db = env.get("POSTGRES_USER"), env.get("POSTGRES_PASSWORD"), env.get("POSTGRES_DB")
    if not (user and password and db):
        raise SystemExit("owner_url.py: set POSTGRES_USER, POSTGRES_PASSWORD and POSTGRES_DB (owner.env)")
    host = env.get("POSTGRES_HOST") or "postgres"
    port = env.get("POSTGRES_PORT") or "5432"
    return f"postgres://{quote(user, safe='')}:{quote(password, safe='')}@{host}:{port}/{quote(db, safe='')}"


if __name__ == "__main__":
    print(owner_url(dict(os.environ)))
    sys.exit(0)
