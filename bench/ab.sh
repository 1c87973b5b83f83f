#!/usr/bin/env bash
# Same-run A/B of two tollgate binaries beside the bare Pingora passthrough: one mock, the
# three servers started once, then each measured in turn ROUNDS times, so a burst of other
# work on the machine touches all three alike. Prints one line per measurement: target,
# req/s, p50 and p99 (µs) and the server's CPU per request (µs).
#
#   bench/ab.sh OLD_BIN NEW_BIN CONNECTIONS [load flags, e.g. --stream]
#   MOCK_ARGS="--latency-ms 20" ROUNDS=2 DURATION=4 bench/ab.sh ...
#
# Build each binary from its commit first (e.g. `git stash; cargo build --release -p
# tollgate-proxy --bin tollgate; cp target/release/tollgate /tmp/old`). The mock, the
# passthrough and the load generator come from CARGO_TARGET_DIR (default target/), built
# here. Settings: ROUNDS (3), DURATION (seconds per measurement, 5), MOCK_ARGS.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
(($# >= 3)) || { echo "usage: bench/ab.sh OLD_BIN NEW_BIN CONNECTIONS [load flags]" >&2; exit 2; }
OLD=$1 NEW=$2 CONNS=$3
shift 3
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tollgate-ab.XXXXXX")
PIDS=()
THREADS=1
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
trap kill_all EXIT

(cd "$ROOT" && cargo build --release --quiet -p tollgate-tests --bin tollgate-mock \
    -p tollgate-bench --bin load --bin passthrough)
BIN=$TARGET_DIR/release

MOCK_PORT=$(free_port)
# shellcheck disable=SC2086 # MOCK_ARGS is a list of flags
start mock "$BIN/tollgate-mock" --listen "127.0.0.1:$MOCK_PORT" ${MOCK_ARGS:-}
wait_port "$MOCK_PORT" mock

declare -A PORT PID
PORT[passthrough]=$(free_port)
start passthrough "$BIN/passthrough" --listen "127.0.0.1:${PORT[passthrough]}" \
    --upstream "127.0.0.1:$MOCK_PORT" --threads "$THREADS"
PID[passthrough]=$STARTED
wait_port "${PORT[passthrough]}" passthrough
for name in old new; do
    bin=$OLD
    [[ $name == new ]] && bin=$NEW
    PORT[$name]=$(free_port)
    admin=$(free_port)
    tollgate_config "$name" "${PORT[$name]}" "$admin" "{ kind: embedded, path: $WORK/$name-data }"
    start "$name" "$bin" serve --config "$WORK/$name.yaml"
    PID[$name]=$STARTED
    wait_http "http://127.0.0.1:$admin/readyz" "$name" "$STARTED"
done

for _ in $(seq "$ROUNDS"); do
    for target in passthrough old new; do
        "$BIN/load" --addr "127.0.0.1:${PORT[$target]}" --target "$target" --key "$KEY" \
            --connections "$CONNS" --threads 1 --server-pid "${PID[$target]}" \
            --warmup-secs 1 --duration-secs "$DURATION" "$@" |
            python3 -c 'import json, sys
d = json.load(sys.stdin)
print("%-11s req/s %7.0f  p50 %6d  p99 %6d  cpu/req %5.0f" % (d["target"], d["rps"],
      d["latency"]["p50_us"], d["latency"]["p99_us"], d["server_cpu_us_per_request"] or 0))'
    done
done
