#!/usr/bin/env bash
# Training throughput of the default network at batch 128: burn's flex backend (qsearch) against
# PyTorch on the CPU (Debian's python3-torch, installed here if missing) training the identical
# network in the same run. Prints the ratio; writes results/bench/train-vs-torch.json.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! /usr/bin/python3 -c "import torch" 2>/dev/null; then
  sudo_cmd=(); [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get install -y --no-install-recommends python3-torch
fi

cargo bench --bench train
best=""
for threads in 1 "$(nproc)"; do
  run=$(/usr/bin/python3 tools/torch_train_bench.py "$threads")
  echo "pytorch, $threads thread(s): $run"
  best=$(/usr/bin/python3 - "$run" "$best" <<'PY'
import json, sys
run = json.loads(sys.argv[1]); best = json.loads(sys.argv[2]) if sys.argv[2] else None
print(json.dumps(run if best is None or run["images_per_second"] > best["images_per_second"] else best))
PY
)
done
/usr/bin/python3 - "$best" <<'PY'
import json, sys
torch = json.loads(sys.argv[1])
burn = json.load(open("results/bench/train.json"))
ratio = burn["images_per_second"] / torch["images_per_second"]
print(f"training throughput, fashion-cnn, batch 128: qsearch/burn {burn['images_per_second']:.0f} images/s, "
      f"PyTorch {torch['torch']} {torch['images_per_second']:.0f} images/s ({torch['threads']} thread(s), its faster setting); "
      f"ratio {ratio:.2f}; target >= 1.0")
json.dump({"burn": burn, "torch": torch, "ratio": ratio}, open("results/bench/train-vs-torch.json", "w"), indent=2)
PY
