#!/usr/bin/env python3
"""Exit 0 if TraceMem's beat has stamped its heartbeat recently, 1 otherwise (the docker-compose
beat healthcheck). Reads only a file's age, so it does not start Django:

    python scripts/heartbeat_check.py [beat|tick] [--max-age SECONDS]

The beat stamps ``$TRACEMEM_VAR_DIR/heartbeat/beat`` each time it queues a task, i.e. every
TRACEMEM_APPROVALS_TICK_SECONDS (default 30); the default --max-age is three of those plus 30 s.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", nargs="?", default="beat", choices=["beat", "tick"])
    tick = int(os.environ.get("TRACEMEM_APPROVALS_TICK_SECONDS") or 30)
    parser.add_argument("--max-age", type=float, default=3 * tick + 30)
    args = parser.parse_args()
    var = Path(os.environ.get("TRACEMEM_VAR_DIR") or Path(__file__).resolve().parent.parent / "var")
    path = var / "heartbeat" / args.name
    try:
        age = time.time() - path.stat().st_mtime
    except OSError:
        print(f"{args.name}: no heartbeat yet ({path})", file=sys.stderr)
        return 1
    if age > args.max_age:
        print(f"{args.name}: last heartbeat {age:.0f} s ago (more than {args.max_age:g} s)", file=sys.stderr)
        return 1
    print(f"{args.name}: last heartbeat {age:.0f} s ago")
    return 0


if __name__ == "__main__":
    sys.exit(main())
