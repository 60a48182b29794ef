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

# The project venv (Debian's python3 with python3-venv): Deeploy for the Deeploy export's
# generation check and the CV32E40P RTL the simulator is built from, pinned in
# scripts/python-requirements.txt. QSEARCH_VENV moves it; the Rust side finds its interpreter
# there (QSEARCH_DEEPLOY_PYTHON names another for Deeploy).
venv="${QSEARCH_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/qsearch/venv}"
stamp="$venv/.requirements"
if ! cmp -s scripts/python-requirements.txt "$stamp" || ! "$venv/bin/python" -c 'import Deeploy, pythondata_cpu_cv32e40p' 2>/dev/null; then
  echo "setup: installing scripts/python-requirements.txt into $venv"
  if [ -e "$venv" ] && [ ! -f "$venv/pyvenv.cfg" ]; then
    echo "setup: $venv exists and is not a Python venv; move it or set QSEARCH_VENV" >&2
    exit 1
  fi
  /usr/bin/python3 -m venv --clear "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-input -r scripts/python-requirements.txt
  cp scripts/python-requirements.txt "$stamp"
fi

command -v cargo >/dev/null || { echo "setup: cargo not found; install Rust (https://rustup.rs)" >&2; exit 1; }
echo "setup: ready"
