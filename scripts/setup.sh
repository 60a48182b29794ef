#!/usr/bin/env bash
# Installs what qsearch needs beyond a Rust toolchain, on Debian 12. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the build, the tests and the main job use (one per line, '#' comments).
mapfile -t packages < <(grep -v '^\s*\(#\|$\)' scripts/apt-packages.txt | awk '{print $1}')

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
fi

command -v cargo >/dev/null || { echo "setup: cargo not found; install Rust (https://rustup.rs)" >&2; exit 1; }
echo "setup: ready"
