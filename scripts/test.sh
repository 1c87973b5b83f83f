#!/usr/bin/env bash
# Runs tollgate's whole test suite: installs what it needs, builds the binaries the
# end-to-end tests start, runs every crate's tests, then fuzzes every fuzz target for a
# bounded time (FUZZ_SECONDS per target, default 12; 0 skips the fuzz step).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --workspace --bins
cargo test --workspace --no-fail-fast "$@"
if [ "${FUZZ_SECONDS:-12}" != 0 ]; then
  scripts/fuzz.sh "${FUZZ_SECONDS:-12}"
fi
