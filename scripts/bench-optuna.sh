#!/usr/bin/env bash
# Peer benchmark: qsearch's NSGA-II against Optuna's NSGA-II (Python) on the identical problem
# (MobileNetV2 on gap8, flash <= 2 MB, RAM <= 512 KB, minimise latency), exported by
# `cargo bench --bench search` as cost and sensitivity tables. Prints the time each needs to get
# within 1% of the ILP optimum and qsearch's speed-up. Writes results/bench/optuna.json.
#
# Usage: scripts/bench-optuna.sh [time limit for Optuna per seed, seconds (default 300)]
set -euo pipefail
cd "$(dirname "$0")/.."
limit="${1:-300}"

venv=.venv-bench
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "optuna>=4,<6"
fi

cargo bench --bench search
summary=results/bench/search.json
target=$("$venv/bin/python" -c "import json; print(1.01 * json.load(open('$summary'))['nsga_latency_optimum_cycles'])")
ours=$("$venv/bin/python" -c "import json; print(json.load(open('$summary'))['nsga_seconds_to_1pct_median'])")

runs=()
for seed in 0 1 2; do
  out=$("$venv/bin/python" tools/optuna_peer.py results/bench/problem-mobilenet-v2.json --target "$target" --time-limit "$limit" --seed "$seed")
  echo "optuna seed $seed: $out"
  runs+=("$out")
done
"$venv/bin/python" - "$ours" "$limit" "${runs[@]}" <<'PY'
import json, statistics, sys
ours, limit = float(sys.argv[1]), float(sys.argv[2])
runs = [json.loads(r) for r in sys.argv[3:]]
times = [r["reached_seconds"] if r["reached_seconds"] is not None else float("inf") for r in runs]
median = statistics.median(times)
if median == float("inf"):
    ratio = f"> {limit / ours:.0f}x (Optuna did not reach the target within {limit:.0f} s in most seeds)"
else:
    ratio = f"{median / ours:.0f}x"
print(f"time to within 1% of the ILP optimum: qsearch NSGA-II {ours:.3f} s (median of 5 seeds), "
      f"Optuna NSGA-II {median:.1f} s (median of {len(runs)} seeds; trials {[r['trials'] for r in runs]}); "
      f"speed-up {ratio}; target >= 50x")
json.dump({"qsearch_seconds": ours, "optuna_seconds": times, "optuna_runs": runs, "speedup": ratio},
          open("results/bench/optuna.json", "w"), indent=2)
PY
