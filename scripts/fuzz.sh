#!/usr/bin/env bash
# Fuzzes every reader of untrusted input for SECONDS each (default 600) with qsearch's seeded
# mutation fuzzer (src/fuzz/, run by the ignored test `long_run` in tests/fuzz.rs), prints per
# reader the inputs tried, errors, panics and hangs, and writes results/fuzz.json.
#
#   scripts/fuzz.sh [SECONDS] [READER,READER,...]
#
# qsearch is built with overflow checks for this run (release otherwise), so that arithmetic on a
# size an input chose panics where it would wrap silently. FUZZ_SEED (default 1) picks the
# inputs: the same seed tries the same ones. QSEARCH_FUZZ_REPLAY=READER:INDEX scripts/fuzz.sh
# writes one input of a finding to results/fuzz/ instead of fuzzing.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-600}"
readers="${2:-}"
case "$seconds" in
  ''|*[!0-9.]*|*.*.*) echo "usage: scripts/fuzz.sh [SECONDS] [READER,...]  (SECONDS per reader, e.g. 600)" >&2; exit 2 ;;
esac

checks=(--release --config 'profile.release.package.qsearch.overflow-checks=true')
cargo test "${checks[@]}" --quiet --no-run --test fuzz
QSEARCH_FUZZ_SECONDS="$seconds" \
QSEARCH_FUZZ_SEED="${FUZZ_SEED:-1}" \
QSEARCH_FUZZ_TARGETS="$readers" \
QSEARCH_FUZZ_OUT="$PWD/results/fuzz.json" \
  cargo test "${checks[@]}" --quiet --test fuzz -- --ignored --exact long_run --nocapture --test-threads 1
