# Shared by the bench scripts: logging, ports, starting and stopping servers, the agent key,
# and the tollgate config with the whole pipeline on. Expects WORK (a temp dir), PIDS (an
# array), THREADS and, for tollgate_config, MOCK_PORT.

# The agent key every bench sends, and its hash for the config.
KEY="tg_bench_0123456789abcdef0123456789abcdef0123456789abcdef"
KEY_SHA=$(printf '%s' "$KEY" | sha256sum | cut -d' ' -f1)

# Kills every process in PIDS at once and removes WORK (for scripts that need no more).
kill_all() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}

log() { printf 'bench: %s\n' "$*" >&2; }

USED_PORTS=" "
# A port nobody listens on and this script has not handed out yet.
free_port() {
    local port
    while :; do
        port=$((20000 + RANDOM % 40000))
        [[ $USED_PORTS == *" $port "* ]] && continue
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            USED_PORTS+="$port "
            echo "$port"
            return
        fi
    done
}

# Waits until something accepts connections on the port, or fails after LIMIT seconds
# (default 30; a server under valgrind needs more).
wait_port() {
    local port=$1 name=$2 limit=${3:-30}
    local deadline=$((SECONDS + limit))
    until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
        ((SECONDS < deadline)) || { log "$name did not listen on $port in $limit s"; return 1; }
        sleep 0.05
    done
}

# Waits until a URL answers 2xx; fails when the process exits first or after 30 s.
wait_http() {
    local url=$1 name=$2 pid=$3 deadline=$((SECONDS + 30))
    until curl -fsS -o /dev/null "$url" 2>/dev/null; do
        kill -0 "$pid" 2>/dev/null || { log "$name exited before it was ready"; return 1; }
        ((SECONDS < deadline)) || { log "$name not ready at $url in 30 s"; return 1; }
        sleep 0.05
    done
}

# Starts a server in the background with its output in $WORK/NAME.log; sets STARTED.
start() {
    local name=$1
    shift
    "$@" >"$WORK/$name.log" 2>&1 &
    STARTED=$!
    PIDS+=("$STARTED")
}

# Writes a tollgate config with the whole pipeline on: a budgeted scope (every request
# reserves and commits), PII and secret guardrails on the prompt and on the answer
# (streamed answers per slot), the audit line, metrics.
tollgate_config() {
    local name=$1 port=$2 admin=$3 store=$4
    cat >"$WORK/$name.yaml" <<EOF
server:
  listen: 127.0.0.1:$port
  admin_listen: 127.0.0.1:$admin
  threads: $THREADS
store: $store
audit:
  path: $WORK/$name-audit.jsonl
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
