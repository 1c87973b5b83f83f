#!/usr/bin/env bash
# Runs tollgate's whole test suite: installs what it needs, builds the binaries the
# end-to-end tests start, runs every crate's tests, then fuzzes every fuzz target for a
# fixed number of inputs with a fixed seed (FUZZ_RUNS, default 25000; FUZZ_SECONDS=0 skips
# the fuzz step), so the step is the same on every machine.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --workspace --bins
cargo test --workspace --no-fail-fast "$@"
if [ "${FUZZ_SECONDS:-12}" != 0 ]; then
  FUZZ_RUNS=${FUZZ_RUNS:-25000} scripts/fuzz.sh "${FUZZ_SECONDS:-12}"
fi
