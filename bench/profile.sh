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

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tollgate-profile.XXXXXX")
PIDS=()
THREADS=1
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
trap kill_all EXIT

log "building release binaries"
(cd "$ROOT" && cargo build --release --quiet -p tollgate-proxy --bin tollgate \
    -p tollgate-tests --bin tollgate-mock -p tollgate-bench --bin load --bin passthrough)
BIN=$TARGET_DIR/release
mkdir -p "$OUT"

MOCK_PORT=$(free_port)
start mock "$BIN/tollgate-mock" --listen "127.0.0.1:$MOCK_PORT"
wait_port "$MOCK_PORT" mock

# Runs one server under callgrind for `n` requests; prints its instruction total.
measure() {
    local target=$1 n=$2 port admin dir pid
    port=$(free_port)
    dir=$WORK/$target-$n
    mkdir -p "$dir"
    local cmd
    if [[ $target == tollgate ]]; then
        admin=$(free_port)
        # The same config as bench/run.sh: the whole pipeline, one worker thread.
        tollgate_config "$target-$n" "$port" "$admin" "{ kind: embedded, path: $dir/data }"
        cmd=("$BIN/tollgate" serve --config "$WORK/$target-$n.yaml")
    else
        cmd=("$BIN/passthrough" --listen "127.0.0.1:$port" --upstream "127.0.0.1:$MOCK_PORT" \
            --threads 1)
    fi
    valgrind --tool=callgrind --callgrind-out-file="$dir/callgrind.out" \
        "${cmd[@]}" >"$dir/server.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_port "$port" "$target under callgrind" 180
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
