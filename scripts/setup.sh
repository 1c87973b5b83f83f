#!/usr/bin/env bash
# Installs what building and testing tollgate needs on a Debian machine. Idempotent and
# quick when everything is already there. Usage: scripts/setup.sh [--test]
#   (no flag)  build tools only: what `tollgate demo` needs
#   --test     also Redis (running on 127.0.0.1:6379), Prometheus, a Python venv with the
#              official openai SDK, runcycles client and mcp SDK, the official openai and MCP
#              TypeScript SDK npm packages (tests/node) for the end-to-end tests
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[ "${1:-}" = "--test" ] && want_test=1

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
need() { dpkg -s "$1" >/dev/null 2>&1 || missing+=("$1"); }
# cmake builds zlib-ng for Pingora; a C compiler and make build SQLite for the embedded
# store and jemalloc, the binary's allocator.
need cmake; need gcc; need g++; need make; need pkg-config; need curl; need ca-certificates
if [ $want_test = 1 ]; then
  command -v redis-server >/dev/null || need redis-server
  # redis-cli (5 or later) creates the tests' local Redis Cluster (`--cluster create`).
  command -v redis-cli >/dev/null || need redis-tools
  command -v prometheus >/dev/null || need prometheus
  python3 -c 'import venv' 2>/dev/null || need python3-venv
  command -v node >/dev/null || need nodejs
  command -v npm >/dev/null || need npm
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "setup: installing the Rust toolchain with rustup"
    curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --component clippy,rustfmt
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
fi

if [ $want_test = 1 ]; then
  # Tests run against a real Redis; start one if nothing listens on 6379 (it keeps nothing).
  if ! (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; then
    echo "setup: starting redis-server on 127.0.0.1:6379"
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
      --dir /tmp --logfile /tmp/tollgate-redis.log
    for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null && break; sleep 0.1; done
  fi
  # The end-to-end tests drive tollgate with the official openai Python SDK, the official
  # Cycles client (runcycles) and, for the MCP gateway, the official MCP Python SDK (client
  # and server), all from PyPI.
  if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import openai, runcycles, mcp.client.streamable_http' 2>/dev/null; then
    echo "setup: creating .venv with the openai SDK, the runcycles client and the mcp SDK"
    [ -x .venv/bin/python ] || python3 -m venv .venv
    .venv/bin/pip install -q --disable-pip-version-check 'openai>=2,<4' 'runcycles>=0.4,<0.5' 'mcp>=2.3,<3'
  fi
  # ... and with the official openai npm package and MCP TypeScript SDK
  # (@modelcontextprotocol/sdk), exactly as tests/node/package-lock.json pins them. The copy
  # of the lock file left in node_modules says what is installed, so this is skipped when
  # nothing changed.
  node_major=$(node -p 'process.versions.node.split(".")[0]')
  if [ "$node_major" -lt 20 ]; then
    echo "setup: the openai npm package needs Node.js 20 or newer; found $(node --version)" >&2
    exit 1
  fi
  if ! cmp -s tests/node/package-lock.json tests/node/node_modules/.installed-lock.json; then
    echo "setup: installing the openai and @modelcontextprotocol/sdk npm packages in tests/node"
    (cd tests/node && npm ci --no-audit --no-fund --loglevel=error)
    cp tests/node/package-lock.json tests/node/node_modules/.installed-lock.json
  fi
fi
