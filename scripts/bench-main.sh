#!/usr/bin/env bash
# The whole main flow on the default network from a cold start (no cached training): at width 1.0
# and at the widest width whose uniform 8-bit network fits, train the floating-point network,
# measure its sensitivity, search and fine-tune the top 3 and uniform 8 bit with the short
# schedule; at width 1.0 also the other policies' winners and uniform 4 bit.
# Prints the time per stage and the accuracy targets; writes results/bench/main.json.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release
out=results/bench-main
rm -rf "$out"
start=$(date +%s)
./target/release/qsearch --budget 512KB --objective latency --results "$out" --run main --quiet | tee results/bench-main.txt
end=$(date +%s)
python3 - "$((end - start))" <<'PY'
import csv, json, sys
seconds = int(sys.argv[1])
rows = list(csv.DictReader(open("results/bench-main/main/tradeoff.csv")))
acc = {r["network"]: float(r["accuracy"]) for r in rows}
# The first FP32 row is the network's own width's (each width has one).
fp = next(float(r["accuracy"]) for r in rows if r["bits"] == "fp32")
chosen_name = json.load(open("results/bench-main/main/chosen.json"))["network"]
chosen = next(r for r in rows if r["network"] == chosen_name)
winner = acc[chosen_name]
eight_fits = [r for r in rows if r["fits"] == "true" and r["uniform_8_bit"] == "true"]
best_8 = max(eight_fits, key=lambda r: float(r["accuracy"]), default=None)
# Issue 14's target: the chosen network is at least as fast as the fastest uniform 8-bit network
# that fits and is within 0.1 point of the chosen one's measured accuracy.
eight_bit = [r for r in eight_fits if float(r["accuracy"]) >= winner - 0.1]
fastest_8 = min(eight_bit, key=lambda r: float(r["latency_ms"]), default=None)
met = fastest_8 is None or float(chosen["latency_ms"]) <= float(fastest_8["latency_ms"])
print(f"main flow from a cold start: {seconds} s ({seconds / 60:.1f} min); target <= 15 min")
print(f"FP32 test accuracy {fp:.2f}% (target >= 91); chosen network ({chosen_name}) {winner:.2f}% "
      f"({winner - fp:+.2f} points, target within 1.0) at {float(chosen['latency_ms']):.3f} ms; "
      f"most accurate uniform 8-bit network that fits: "
      + (f"{best_8['network']} {float(best_8['accuracy']):.2f}%" if best_8 else "none"))
print("chosen at least as fast as the fastest uniform 8-bit network that fits within 0.1 point: "
      + ("met" if met else "not met") + (f" ({fastest_8['network']}: {float(fastest_8['latency_ms']):.3f} ms)"
                                          if fastest_8 else " (none is within 0.1 point)"))
json.dump({"seconds": seconds, "fp32": fp, "chosen": winner, "chosen_network": chosen_name,
           "best_fitting_8bit": best_8, "chosen_as_fast_as_8bit": met, "rows": rows},
          open("results/bench/main.json", "w"), indent=2)
PY
