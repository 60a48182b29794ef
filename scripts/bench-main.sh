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
winner = acc[chosen_name]
scaled = next((v for k, v in acc.items() if k.startswith("uniform 8-bit, width")), None)
print(f"main flow from a cold start: {seconds} s ({seconds / 60:.1f} min); target <= 15 min")
print(f"FP32 test accuracy {fp:.2f}% (target >= 91); chosen mixed-precision network {winner:.2f}% "
      f"({winner - fp:+.2f} points, target within 1.0); width-scaled 8-bit network that fits {scaled}% "
      f"(chosen above it: {scaled is not None and winner > scaled})")
json.dump({"seconds": seconds, "fp32": fp, "chosen": winner, "width_scaled_8bit": scaled, "rows": rows},
          open("results/bench/main.json", "w"), indent=2)
PY
