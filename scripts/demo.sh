#!/usr/bin/env bash
# Builds tollgate and runs its offline demo: a built-in config and mock provider on
# localhost, no network, nothing written outside a temp dir.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo run --release --quiet -p tollgate-proxy --bin tollgate -- demo "$@"
