#!/usr/bin/env bash
# Runs tollgate's whole test suite: installs what it needs, builds the binaries the
# end-to-end tests start, then runs every crate's tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --workspace --bins
cargo test --workspace --no-fail-fast "$@"
