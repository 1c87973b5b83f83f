#!/usr/bin/env bash
# Soak: tollgate with the whole pipeline on (bench/lib.sh's config, embedded store) under
# SOAK_CONNECTIONS keep-alive connections for SOAK_SECS, whole answers from a mock that
# answers at once. Prints the load generator's result (p50 ... p99.9, max, errors) and, every
# 10 s, the store's files on disk (database and WAL) and tollgate's RSS, so a stall can be
# matched with what the store was doing. Issue 17's target: no request over 1 s in 10
# minutes at 64 connections, the store's disk bounded.
#
#   bench/soak.sh                      # 600 s, 64 connections
#   SOAK_SECS=60 bench/soak.sh
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
SECS=${SOAK_SECS:-600}
CONNS=${SOAK_CONNECTIONS:-64}
THREADS=${BENCH_THREADS:-1}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tollgate-soak.XXXXXX")
PIDS=()
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
trap kill_all EXIT

log "building release binaries"
(cd "$ROOT" && cargo build --release --quiet -p tollgate-proxy --bin tollgate \
    -p tollgate-tests --bin tollgate-mock -p tollgate-bench --bin load)
BIN=$TARGET_DIR/release

MOCK_PORT=$(free_port)
start mock "$BIN/tollgate-mock" --listen "127.0.0.1:$MOCK_PORT"
wait_port "$MOCK_PORT" mock
TG_PORT=$(free_port)
TG_ADMIN=$(free_port)
tollgate_config tollgate "$TG_PORT" "$TG_ADMIN" "{ kind: embedded, path: $WORK/data }"
start tollgate "$BIN/tollgate" serve --config "$WORK/tollgate.yaml"
TG_PID=$STARTED
wait_http "http://127.0.0.1:$TG_ADMIN/readyz" tollgate "$TG_PID"

log "$CONNS connections for $SECS s"
"$BIN/load" --addr "127.0.0.1:$TG_PORT" --target tollgate --key "$KEY" \
    --connections "$CONNS" --server-pid "$TG_PID" --warmup-secs 1 \
    --duration-secs "$SECS" >"$WORK/result" &
LOAD=$!
start_s=$SECONDS
while kill -0 "$LOAD" 2>/dev/null; do
    printf '{"t":%s,"store_kib":{%s},"rss_kib":%s}\n' "$((SECONDS - start_s))" \
        "$(cd "$WORK/data" && du -k -- * 2>/dev/null | awk '{printf "%s\"%s\":%s", sep, $2, $1; sep = ","}')" \
        "$(awk '$1 == "VmRSS:" {print $2}' "/proc/$TG_PID/status")"
    for _ in $(seq 100); do kill -0 "$LOAD" 2>/dev/null || break; sleep 0.1; done
done
wait "$LOAD"
cat "$WORK/result"
grep -ci 'checkpoint\|wal' "$WORK/tollgate.log" | sed 's/^/store log lines naming the WAL or checkpoints: /' >&2 || true
