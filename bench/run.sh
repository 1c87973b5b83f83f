#!/usr/bin/env bash
# Whole-process load benchmark: tollgate against calling the mock provider directly and
# against a bare Pingora passthrough, at 1 and 64 connections, whole and streamed answers.
# Rewrites the load section of docs/benchmarks.md with the results.
#
#   bench/run.sh                      # everything, about 3 minutes
#   BENCH_DURATION=3 bench/run.sh     # quicker, noisier
#
# The embedded store and the audit file live in a temp dir (TMPDIR) that is removed at the
# end; with the store's WAL growing during a run, that can take a few GB meanwhile.
#
# Settings (environment): BENCH_DURATION (measured seconds per scenario, default 8),
# BENCH_WARMUP (seconds, default 1), BENCH_REDIS_URL (default redis://127.0.0.1:6379/0;
# "none" skips the Redis variant), BENCH_PIN (1 = pin the load generator to its own core),
# BENCH_LOAD_THREADS (load generator threads, default 1), BENCH_THREADS (worker threads of
# tollgate and of the passthrough alike, default 1), BENCH_REV (measure this commit,
# exported apart, instead of the work tree), BENCH_DOC (default docs/benchmarks.md),
# CARGO_TARGET_DIR.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
DURATION=${BENCH_DURATION:-8}
WARMUP=${BENCH_WARMUP:-1}
REDIS_URL=${BENCH_REDIS_URL:-redis://127.0.0.1:6379/0}
PIN=${BENCH_PIN:-0}
LOAD_THREADS=${BENCH_LOAD_THREADS:-1}
THREADS=${BENCH_THREADS:-1}
DOC=${BENCH_DOC:-$ROOT/docs/benchmarks.md}
CONNECTIONS=(1 64)

# The command as a reader would repeat it: the settings that were changed, then the script.
COMMAND=""
for var in CARGO_TARGET_DIR BENCH_REV BENCH_DURATION BENCH_WARMUP BENCH_REDIS_URL BENCH_PIN BENCH_LOAD_THREADS BENCH_THREADS; do
    if [[ -n ${!var:-} ]]; then COMMAND+="$var=${!var} "; fi
done
COMMAND+="bench/run.sh"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tollgate-bench.XXXXXX")
PIDS=()
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
REDIS_PREFIX=""

# Stops every process this script started (SIGINT is Pingora's and the mock's fast
# shutdown), then removes the temp dir and the Redis keys of this run.
cleanup() {
    local status=$?
    local pid deadline
    for pid in "${PIDS[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
    deadline=$((SECONDS + 5))
    for pid in "${PIDS[@]}"; do
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [[ -n $REDIS_PREFIX ]] && command -v redis-cli >/dev/null; then
        redis-cli -u "$REDIS_URL" --scan --pattern "$REDIS_PREFIX*" 2>/dev/null \
            | xargs -r redis-cli -u "$REDIS_URL" del >/dev/null 2>&1 || true
    fi
    if ((status != 0)); then
        log "failed; the start of each process's log, and its panics:"
        local f
        for f in "$WORK"/*.log; do
            [[ -e $f ]] || continue
            printf '==> %s <==\n' "$(basename "$f")" >&2
            head -n 8 "$f" >&2
            grep -A1 'panicked' "$f" | head -n 6 >&2 || true
        done
    fi
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM


# The sources measured: the work tree, or with BENCH_REV a committed revision exported
# apart (other people's unfinished edits in a shared work tree then change nothing).
SRC=$ROOT
if [[ -n ${BENCH_REV:-} ]]; then
    SRC=$WORK/src
    mkdir -p "$SRC"
    git -C "$ROOT" archive "$BENCH_REV" | tar -x -C "$SRC"
    REVISION=$(git -C "$ROOT" rev-parse --short "$BENCH_REV")
else
    REVISION=$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)
fi

log "building release binaries of $REVISION into $TARGET_DIR"
(cd "$SRC" && CARGO_TARGET_DIR=$TARGET_DIR cargo build --release --quiet \
    -p tollgate-proxy --bin tollgate \
    -p tollgate-tests --bin tollgate-mock \
    -p tollgate-bench --bin load --bin passthrough --bin report)
BIN=$TARGET_DIR/release

# The load generator gets core 0 to itself when pinned; the servers share the rest.
SERVER_PIN=()
LOAD_PIN=()
if [[ $PIN == 1 ]] && (($(nproc) >= 2)) && command -v taskset >/dev/null; then
    LOAD_PIN=(taskset -c 0)
    SERVER_PIN=(taskset -c "1-$(($(nproc) - 1))")
fi

MOCK_PORT=$(free_port)
start mock "${SERVER_PIN[@]}" "$BIN/tollgate-mock" --listen "127.0.0.1:$MOCK_PORT"
MOCK_PID=$STARTED
wait_port "$MOCK_PORT" mock

PASS_PORT=$(free_port)
start passthrough "${SERVER_PIN[@]}" "$BIN/passthrough" \
    --listen "127.0.0.1:$PASS_PORT" --upstream "127.0.0.1:$MOCK_PORT" --threads "$THREADS"
PASS_PID=$STARTED
wait_port "$PASS_PORT" passthrough


declare -A PORT PID
TARGETS=(direct passthrough)
PORT[direct]=$MOCK_PORT
PID[direct]=$MOCK_PID
PORT[passthrough]=$PASS_PORT
PID[passthrough]=$PASS_PID

# Starts one tollgate and adds it to the targets; fails when it does not become ready.
start_tollgate() {
    local name=$1 store=$2 port admin
    port=$(free_port)
    admin=$(free_port)
    tollgate_config "$name" "$port" "$admin" "$store"
    start "$name" "${SERVER_PIN[@]}" "$BIN/tollgate" serve --config "$WORK/$name.yaml"
    PID[$name]=$STARTED
    PORT[$name]=$port
    wait_http "http://127.0.0.1:$admin/readyz" "$name" "$STARTED" || return 1
    TARGETS+=("$name")
}

start_tollgate tollgate-embedded "{ kind: embedded, path: $WORK/embedded-data }"
REDIS_NOTE="no Redis variant (BENCH_REDIS_URL=none)"
if [[ $REDIS_URL != none ]]; then
    REDIS_PREFIX="bench-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
    if start_tollgate tollgate-redis \
        "{ kind: redis, url: \"$REDIS_URL\", key_prefix: $REDIS_PREFIX }"; then
        REDIS_NOTE="Redis: $(redis-cli -u "$REDIS_URL" info server 2>/dev/null \
            | tr -d '\r' | grep -m1 '^redis_version:' | sed 's/:/ /' || echo "redis") \
at $REDIS_URL, same machine"
    else
        # Reported rather than fatal: the other targets still say something.
        REDIS_NOTE="**the Redis variant did not run**: \`tollgate serve\` with \`store.kind: redis\` \
exited before it was ready, with: \`$(grep -m1 -o "there is no reactor.*\|panicked.*\|error.*" \
"$WORK/tollgate-redis.log" | head -c 160)\`"
        log "tollgate-redis did not start; going on without it:"
        head -n 5 "$WORK/tollgate-redis.log" >&2
    fi
fi

RESULTS=$WORK/results.jsonl
LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)
TOTAL=$((2 * ${#CONNECTIONS[@]} * ${#TARGETS[@]}))
n=0
# Targets interleave within each scenario, so a burst of other work on the machine
# touches all of them alike rather than one.
for mode in non-stream stream; do
    stream_flag=()
    [[ $mode == stream ]] && stream_flag=(--stream)
    for conns in "${CONNECTIONS[@]}"; do
        for target in "${TARGETS[@]}"; do
            n=$((n + 1))
            log "[$n/$TOTAL] $target, $mode, $conns connection(s)"
            "${LOAD_PIN[@]}" "$BIN/load" --addr "127.0.0.1:${PORT[$target]}" --target "$target" \
                --key "$KEY" --connections "$conns" --threads "$LOAD_THREADS" \
                --server-pid "${PID[$target]}" \
                --warmup-secs "$WARMUP" --duration-secs "$DURATION" "${stream_flag[@]}" \
                | tee -a "$RESULTS" >&2
        done
    done
done

# Peak and current resident memory of each proxy, after every scenario has run.
for target in "${TARGETS[@]}"; do
    [[ $target == direct ]] && continue
    status=/proc/${PID[$target]}/status
    rss=$(awk '/^VmRSS:/ {print $2}' "$status")
    hwm=$(awk '/^VmHWM:/ {print $2}' "$status")
    printf '{"kind":"memory","target":"%s","vm_rss_kib":%s,"vm_hwm_kib":%s}\n' \
        "$target" "$rss" "$hwm" | tee -a "$RESULTS" >&2
done

if [[ $PIN == 1 && ${#LOAD_PIN[@]} -gt 0 ]]; then
    PIN_NOTE="the load generator was pinned to core 0 (\`taskset\`), the mock and the proxies \
to the other core(s)"
else
    PIN_NOTE="no pinning: the load generator, the mock and the proxy share all $(nproc) cores"
fi
LOADAVG_END=$(cut -d' ' -f1-3 /proc/loadavg)
STORE_DISK="$(du -sm "$WORK/embedded-data" 2>/dev/null | cut -f1) MiB"
DIRTY_NOTE=""
if [[ $REVISION == *-dirty ]]; then
    DIRTY_NOTE=", with the work tree's uncommitted changes"
fi
"$BIN/report" --results "$RESULTS" --doc "$DOC" --command "$COMMAND" \
    --date "$(date -u '+%Y-%m-%d %H:%M UTC')" \
    --note "Each scenario: ${WARMUP} s warm-up, then ${DURATION} s measured; N keep-alive \
connections, each with one request in flight; latencies recorded in an HDR histogram \
(3 significant digits)." \
    --note "Load generator, mock and proxy run on the same machine: $PIN_NOTE. Absolute \
numbers are therefore lower bounds for a real deployment; the differences are the point." \
    --note "Mock: \`tollgate-mock\` with no added latency, 16-token answers. tollgate: $THREADS \
worker thread(s) (\`server.threads\`); the audit trail goes to a file with the embedded store and to the \
Redis stream with the Redis store; $REDIS_NOTE. Passthrough: \`bench/src/bin/passthrough.rs\`, \
Pingora $(grep -A1 '^name = "pingora-proxy"' "$SRC/Cargo.lock" | sed -n 's/version = "\(.*\)"/\1/p'), \
same thread count." \
    --note "Built from \`$REVISION\`${DIRTY_NOTE}." \
    --note "Load average (1/5/15 min) at the start: $LOADAVG; at the end: $LOADAVG_END. Other \
work on the machine shows up as noise, mostly in p99 and max, and less so in server CPU per \
request." \
    --note "The embedded store's files (database, WAL and shared memory) took $STORE_DISK on \
disk at the end of the run."
cp "$RESULTS" "$TARGET_DIR/bench-results.jsonl"
log "results: $TARGET_DIR/bench-results.jsonl; section rewritten in ${DOC#"$ROOT"/}"
