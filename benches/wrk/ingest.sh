#!/usr/bin/env bash
# Ingest measured with wrk (Debian's `wrk`): one message per request, 64 connections, against the
# release daemon on a fresh SQLite file with no webhook. Prints wrk's figures for each round and
# the daemon's resident memory before and after.
#
#   benches/wrk/ingest.sh [rounds=3] [seconds=10] [connections=64]
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-3} seconds=${2:-10} connections=${3:-64}
command -v wrk >/dev/null || { echo "needs wrk: apt-get install wrk" >&2; exit 2; }
cargo build --release --quiet
token=bench-admin-token-0123456789
for round in $(seq "$rounds"); do
  dir=$(mktemp -d)
  port=$((20000 + RANDOM % 20000))
  (cd "$dir" && CHATBUNDLE_ADMIN_TOKEN=$token CHATBUNDLE_HTTP__MAX_CONNECTIONS_PER_CLIENT=4096 \
    exec "$OLDPWD/target/release/chatbundle" serve --listen "127.0.0.1:$port" >"$dir/log" 2>&1) &
  pid=$!
  for _ in $(seq 100); do curl -sf "127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.05; done
  ws=$(curl -sf -X POST "127.0.0.1:$port/api/v1/workspaces" -H "Authorization: Bearer $token" \
    -H 'Content-Type: application/json' \
    -d '{"name":"bench","owner_email":"bench@example.com","account":{"full_name":"Bench","phone":"+1555"}}')
  id=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])' <<<"$ws")
  key=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["ingest_key"])' <<<"$ws")
  rss_before=$(awk '/VmRSS/{print int($2/1024)}' "/proc/$pid/status")
  WRK_PATH="/api/v1/workspaces/$id/messages" WRK_KEY=$key \
    wrk -t1 -c"$connections" -d"${seconds}s" -s benches/wrk/ingest.lua "http://127.0.0.1:$port" | grep '^wrk:'
  rss_after=$(awk '/VmRSS/{print int($2/1024)}' "/proc/$pid/status")
  echo "round $round: daemon RSS ${rss_before} MiB idle before, ${rss_after} MiB after"
  kill -TERM "$pid"; wait "$pid" || true
  rm -rf "$dir"
done
