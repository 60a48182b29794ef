#!/usr/bin/env bash
# Stops the single-node SLURM cluster started by scripts/slurm-up.sh: only the daemons whose pid
# files it left in $QSEARCH_SLURM_DIR (default /var/tmp/qsearch-slurm), i.e. slurmd, slurmctld and
# munged, in that order. Waits for each to exit and removes its pid file. Job steps still running
# are left alone (slurmd reattaches to them on the next start).
set -euo pipefail

dir=${QSEARCH_SLURM_DIR:-/var/tmp/qsearch-slurm}
sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
as_root() { "${sudo_cmd[@]}" "$@"; }
# True while pid $1 runs (a zombie counts as gone: pid 1 of a container may not reap it).
running() { local s; s=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) && [ -n "$s" ] && [ "$s" != Z ]; }

for name in slurmd slurmctld munged; do
  pidfile=$dir/$name.pid
  [ -f "$pidfile" ] || continue
  pid=$(cat "$pidfile")
  # Only signal the pid if it still is the daemon (pids get reused).
  if running "$pid" && [ "$(cat "/proc/$pid/comm")" = "$name" ]; then
    as_root kill -TERM "$pid"
    for _ in $(seq 100); do
      running "$pid" || break
      sleep 0.1
    done
    if running "$pid"; then
      echo "slurm-down: $name ($pid) still running after 10 s; sending SIGKILL" >&2
      as_root kill -KILL "$pid" || true
    fi
    echo "slurm-down: stopped $name ($pid)"
  fi
  as_root rm -f "$pidfile"
done
