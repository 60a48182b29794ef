#!/usr/bin/env bash
# The whole main flow on the default network from a cold start (no cached training): train the
# floating-point network, measure its sensitivity, search, fine-tune the top 3 and the other
# policies' winners with the short schedule, train and fine-tune the width-scaled 8-bit baseline.
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
fp = acc["FP32"]
report = open("results/bench-main/main/report.md").read()
chosen_line = next(l for l in report.splitlines() if "(chosen)" in l)
chosen_name = chosen_line.split("(chosen)")[0].strip()
chosen = next(r for r in rows if r["network"] == chosen_name)
winner = acc[chosen_name]
scaled = next((v for k, v in acc.items() if k.startswith("uniform 8-bit, width")), None)
# Issue 14's target: the chosen network is at least as fast as the fastest uniform 8-bit network
# that fits and is within 0.1 point of the chosen one's measured accuracy.
eight_bit = [r for r in rows if r["fits"] == "true" and r["network"].startswith("uniform 8-bit")
             and float(r["accuracy"]) >= winner - 0.1]
fastest_8 = min(eight_bit, key=lambda r: float(r["latency_ms"]), default=None)
met = fastest_8 is None or float(chosen["latency_ms"]) <= float(fastest_8["latency_ms"])
print(f"main flow from a cold start: {seconds} s ({seconds / 60:.1f} min); target <= 15 min")
print(f"FP32 test accuracy {fp:.2f}% (target >= 91); chosen network ({chosen_name}) {winner:.2f}% "
      f"({winner - fp:+.2f} points, target within 1.0) at {float(chosen['latency_ms']):.3f} ms; "
      f"width-scaled 8-bit network that fits {scaled}%")
print("chosen at least as fast as the fastest uniform 8-bit network that fits within 0.1 point: "
      + ("met" if met else "not met") + (f" ({fastest_8['network']}: {float(fastest_8['latency_ms']):.3f} ms)"
                                          if fastest_8 else " (none is within 0.1 point)"))
json.dump({"seconds": seconds, "fp32": fp, "chosen": winner, "chosen_network": chosen_name,
           "width_scaled_8bit": scaled, "chosen_as_fast_as_8bit": met, "rows": rows},
          open("results/bench/main.json", "w"), indent=2)
PY
