#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ (libFuzzer through cargo-fuzz) for a bounded time and fails
# on any crash or broken invariant. Installs cargo-fuzz when it is missing.
# Usage: scripts/fuzz.sh [seconds-per-target]   (default 12: about a minute for all targets)
#   FUZZ_SANITIZER=address   build with AddressSanitizer (slower; the default is none, since
#                            tollgate forbids unsafe code and the targets check invariants)
# What a run finds beyond the seeds stays in fuzz/corpus/ (not committed); a crash leaves its
# input in fuzz/artifacts/<target>/ and the command that replays it is printed.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-12}"
sanitizer="${FUZZ_SANITIZER:-none}"
export PATH="$HOME/.cargo/bin:$PATH"
# cargo-fuzz passes nightly-only flags to rustc (-Zsanitizer, sancov passes); the stable
# toolchain accepts them with RUSTC_BOOTSTRAP, so no nightly toolchain is needed.
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz"
  cargo install cargo-fuzz --locked --quiet
fi

flags=(--sanitizer "$sanitizer" --debug-assertions)
targets=$(cargo fuzz list)
echo "fuzz: building $(echo "$targets" | wc -w) targets (sanitizer: $sanitizer)"
mkdir -p fuzz/artifacts
if ! cargo fuzz build "${flags[@]}" >fuzz/artifacts/build.log 2>&1; then
  tail -40 fuzz/artifacts/build.log
  exit 1
fi

failed=()
for t in $targets; do
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
  log="fuzz/artifacts/$t/last-run.log"
  # FUZZ_RUNS (scripts/test.sh sets it): a fixed number of inputs from the committed seeds
  # with a fixed seed in a fresh corpus, so the run is the same on every machine.
  if [[ -n ${FUZZ_RUNS:-} ]]; then
    corpus=$(mktemp -d)
    budget=(-runs="$FUZZ_RUNS" -seed="${FUZZ_SEED:-1}")
  else
    corpus="fuzz/corpus/$t"
    budget=(-max_total_time="$seconds")
  fi
  if cargo fuzz run "${flags[@]}" "$t" "$corpus" "fuzz/seeds/$t" -- \
    "${budget[@]}" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
    runs=$(grep -m1 -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo "?")
    echo "fuzz: $t ok ($runs inputs)"
  else
    failed+=("$t")
    echo "fuzz: $t FAILED; its log: $log"
    grep -E -A1 'panicked at|ERROR: libFuzzer' "$log" | grep -v '^stack backtrace' | head -12 ||
      tail -20 "$log"
    grep -oE 'Test unit written to .*' "$log" || true
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: ${#failed[@]} target(s) failed: ${failed[*]}"
  echo "fuzz: replay one with RUSTC_BOOTSTRAP=1 cargo fuzz run -s $sanitizer <target> <artifact>"
  exit 1
fi
