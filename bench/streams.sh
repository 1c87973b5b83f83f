#!/usr/bin/env bash
# Resident memory of tollgate holding many streams open at once, the whole pipeline on
# (bench/lib.sh's config: key auth, PII and secret guardrails both ways, reserve and commit
# on the embedded store, audit file, metrics), beside the bare Pingora passthrough holding
# the same streams. Issue 17's target: at most 100 MB with 1,000 open streams.
#
#   bench/streams.sh                         # 1,000 streams of 40 events, 100 ms apart
#   STREAMS=2000 bench/streams.sh
#
# The mock spaces its events STREAM_GAP_MS apart, so every stream stays open about
# STREAM_WORDS x STREAM_GAP_MS; the load generator keeps STREAMS connections each with one
# stream in flight for STREAM_SECS seconds. RSS is sampled every 100 ms from /proc; the
# peak (VmHWM) and the peak of the samples are printed per target, with how many streams
# completed and failed. Settings: STREAMS (1000), STREAM_WORDS (40), STREAM_GAP_MS (100),
# STREAM_SECS (8), BENCH_THREADS (1), TOLLGATE_FEATURES (cargo features of tollgate, e.g.
# system-alloc for glibc's allocator), CARGO_TARGET_DIR. jemalloc reads _RJEM_MALLOC_CONF
# from the environment, so allocator settings can be tried without a build.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
STREAMS=${STREAMS:-1000}
WORDS=${STREAM_WORDS:-40}
GAP=${STREAM_GAP_MS:-100}
SECS=${STREAM_SECS:-8}
THREADS=${BENCH_THREADS:-1}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tollgate-streams.XXXXXX")
PIDS=()
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
trap kill_all EXIT

# 1,000 connections each way need as many descriptors in every process.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

log "building release binaries"
(cd "$ROOT" && cargo build --release --quiet -p tollgate-proxy --bin tollgate \
    ${TOLLGATE_FEATURES:+--features "tollgate-proxy/$TOLLGATE_FEATURES"} \
    -p tollgate-tests --bin tollgate-mock -p tollgate-bench --bin load --bin passthrough)
BIN=$TARGET_DIR/release

MOCK_PORT=$(free_port)
start mock "$BIN/tollgate-mock" --listen "127.0.0.1:$MOCK_PORT" --chunk-delay-ms "$GAP"
wait_port "$MOCK_PORT" mock

PASS_PORT=$(free_port)
start passthrough "$BIN/passthrough" --listen "127.0.0.1:$PASS_PORT" \
    --upstream "127.0.0.1:$MOCK_PORT" --threads "$THREADS"
PASS_PID=$STARTED
wait_port "$PASS_PORT" passthrough

TG_PORT=$(free_port)
TG_ADMIN=$(free_port)
tollgate_config tollgate "$TG_PORT" "$TG_ADMIN" "{ kind: embedded, path: $WORK/data }"
start tollgate "$BIN/tollgate" serve --config "$WORK/tollgate.yaml"
TG_PID=$STARTED
wait_http "http://127.0.0.1:$TG_ADMIN/readyz" tollgate "$TG_PID"

kib() { awk -v k="$1" '$1 == k":" {print $2}' "/proc/$2/status"; }

# Loads one target with STREAMS streams and prints its memory line.
measure() {
    local name=$1 port=$2 pid=$3 idle peak=0 rss result
    idle=$(kib VmRSS "$pid")
    "$BIN/load" --addr "127.0.0.1:$port" --target "$name" --key "$KEY" \
        --connections "$STREAMS" --stream --words "$WORDS" --max-tokens 64 \
        --warmup-secs 0 --duration-secs "$SECS" >"$WORK/$name.result" &
    local load=$!
    while kill -0 "$load" 2>/dev/null; do
        rss=$(kib VmRSS "$pid")
        ((rss > peak)) && peak=$rss
        sleep 0.1
    done
    wait "$load"
    result=$(cat "$WORK/$name.result")
    printf '{"target":"%s","streams":%s,"idle_rss_kib":%s,"peak_rss_kib_sampled":%s,"vm_hwm_kib":%s,"load":%s}\n' \
        "$name" "$STREAMS" "$idle" "$peak" "$(kib VmHWM "$pid")" "$result"
}

log "$STREAMS streams of $WORDS events, ${GAP} ms apart, for ${SECS} s: passthrough"
measure passthrough "$PASS_PORT" "$PASS_PID"
log "the same through tollgate (whole pipeline, $THREADS worker thread(s))"
measure tollgate "$TG_PORT" "$TG_PID"
