#!/usr/bin/env bash
# Time a cold `make run` in a fresh clone of REPO at REF: from nothing (no .venv, no var/) to
# /healthz answering 200. Usage: bench/cold_run.sh REPO [REF] [PORT]   (docs/operations.md, "Installing")
set -uo pipefail
src=${1:?repo path}; ref=${2:-HEAD}; port=${3:-8765}
dir=$(mktemp -d /tmp/coldrun.XXXX)
git clone -q "$src" "$dir/tm" && cd "$dir/tm" && git checkout -q "$ref"
start=$(date +%s%N)
TRACEMEM_PORT=$port setsid make run >"$dir/run.log" 2>&1 < /dev/null &
pid=$!
until curl -sf "http://127.0.0.1:$port/healthz" >/dev/null; do sleep 0.5; done
end=$(date +%s%N)
echo "$ref cold make run to /healthz: $(( (end - start) / 1000000 )) ms; venv: $(du -sm .venv | cut -f1) MB; $dir"
kill -TERM -- -"$pid"; sleep 2
