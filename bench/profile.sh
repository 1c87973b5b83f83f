#!/usr/bin/env bash
# Instructions per request, by function, for tollgate and the bare Pingora passthrough,
# counted by valgrind's callgrind: repeatable on a busy machine (it counts instructions,
# not seconds), so a change's effect shows even where wall-clock benchmarks are noise.
#
#   bench/profile.sh                   # whole answers, 1 connection
#   PROFILE_STREAM=1 bench/profile.sh  # streams of WORDS events
#
# Each server runs twice under callgrind, serving N1 and then N2 requests after start; the
# difference of the two totals over N2 - N1 is the cost of one request, free of start-up
# and of one-time work (tokenizer tables, first connections). The N2 run's profile is kept
# in $PROFILE_OUT (default target/profile) for callgrind_annotate.
#
# Settings: PROFILE_N1 (default 200), PROFILE_N2 (default 1200), PROFILE_STREAM,
# PROFILE_WORDS (default 16), PROFILE_OUT, CARGO_TARGET_DIR.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
N1=${PROFILE_N1:-200}
N2=${PROFILE_N2:-1200}
WORDS=${PROFILE_WORDS:-16}
OUT=${PROFILE_OUT:-$TARGET_DIR/profile}
STREAM=()
MODE=whole
if [[ ${PROFILE_STREAM:-0} == 1 ]]; then
    STREAM=(--stream)
    MODE=stream
fi
command -v valgrind >/dev/null || { echo "profile: valgrind is needed" >&2; exit 1; }

log() { printf 'profile: %s\n' "$*" >&2; }
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tollgate-profile.XXXXXX")
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
    local port
    while :; do
        port=$((20000 + RANDOM % 40000))
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { echo "$port"; return; }
    done
}
wait_port() {
    local port=$1 deadline=$((SECONDS + 180))
    until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
        ((SECONDS < deadline)) || { log "nothing listens on $port after 180 s"; return 1; }
        sleep 0.2
    done
}

log "building release binaries"
(cd "$ROOT" && cargo build --release --quiet -p tollgate-proxy --bin tollgate \
    -p tollgate-tests --bin tollgate-mock -p tollgate-bench --bin load --bin passthrough)
BIN=$TARGET_DIR/release
mkdir -p "$OUT"

KEY="tg_bench_0123456789abcdef0123456789abcdef0123456789abcdef"
KEY_SHA=$(printf '%s' "$KEY" | sha256sum | cut -d' ' -f1)
MOCK_PORT=$(free_port)
"$BIN/tollgate-mock" --listen "127.0.0.1:$MOCK_PORT" >"$WORK/mock.log" 2>&1 &
PIDS+=($!)
wait_port "$MOCK_PORT"

# The same config as bench/run.sh: the whole pipeline, one worker thread.
config() {
    local port=$1 admin=$2 dir=$3
    cat <<EOF
server: { listen: 127.0.0.1:$port, admin_listen: 127.0.0.1:$admin, threads: 1 }
store: { kind: embedded, path: $dir/data }
audit: { path: $dir/audit.jsonl }
providers:
  - { name: mock, kind: openai, base_url: "http://127.0.0.1:$MOCK_PORT/v1", models: ["mock-*"] }
pricing:
  overrides:
    mock-1: { input_per_mtok: 0.1, output_per_mtok: 0.2, max_output_tokens: 64 }
scopes:
  bench: { budget: { limit_usd: 1000000, period: total } }
policies:
  bench:
    guardrails:
      input: { pii: redact, secrets: block }
      output: { pii: redact, secrets: redact }
agents:
  a1: { scope: bench/a1, policy: bench }
keys:
  - { id: k1, agent: a1, sha256: "$KEY_SHA" }
EOF
}

# Runs one server under callgrind for `n` requests; prints its instruction total.
measure() {
    local target=$1 n=$2 port admin dir pid
    port=$(free_port)
    dir=$WORK/$target-$n
    mkdir -p "$dir"
    local cmd
    if [[ $target == tollgate ]]; then
        admin=$(free_port)
        config "$port" "$admin" "$dir" >"$dir/config.yaml"
        cmd=("$BIN/tollgate" serve --config "$dir/config.yaml")
    else
        cmd=("$BIN/passthrough" --listen "127.0.0.1:$port" --upstream "127.0.0.1:$MOCK_PORT" \
            --threads 1)
    fi
    valgrind --tool=callgrind --callgrind-out-file="$dir/callgrind.out" \
        "${cmd[@]}" >"$dir/server.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_port "$port"
    "$BIN/load" --addr "127.0.0.1:$port" --target "$target" --key "$KEY" --connections 1 \
        --warmup-secs 0 --requests "$n" --words "$WORDS" "${STREAM[@]}" >"$dir/load.json"
    kill -INT "$pid"
    wait "$pid" || true
    grep -h '^totals:\|^summary:' "$dir/callgrind.out" | head -n1 | awk '{print $2}'
    if [[ $n == "$N2" ]]; then
        cp "$dir/callgrind.out" "$OUT/$target-$MODE.callgrind.out"
    fi
}

declare -A PER
for target in passthrough tollgate; do
    log "$target: $N1 then $N2 requests ($MODE) under callgrind"
    a=$(measure "$target" "$N1")
    b=$(measure "$target" "$N2")
    PER[$target]=$(((b - a) / (N2 - N1)))
    log "$target: $a and $b instructions: ${PER[$target]} per request"
done
printf '{"mode":"%s","words":%s,"passthrough_ir_per_request":%s,"tollgate_ir_per_request":%s}\n' \
    "$MODE" "$WORDS" "${PER[passthrough]}" "${PER[tollgate]}"
log "profiles: $OUT/{passthrough,tollgate}-$MODE.callgrind.out"
log "read them with: callgrind_annotate --inclusive=yes $OUT/tollgate-$MODE.callgrind.out | head -60"
