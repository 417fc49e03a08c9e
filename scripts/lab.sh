#!/usr/bin/env bash
# README command (a): set up this Debian 12 machine, then run the main job on an embedded default:
#   1. vio4wd-tool doctor against this very host;
#   2. the host-only lab: the forwarder with a net_tap VF stand-in in a private network namespace,
#      a QEMU 10 (TCG) guest on its vhost-user socket, a ping through it, live relay stats, teardown.
# Extra arguments go to `vio4wd-tool lab host` (e.g. --keep to look around until Ctrl-C).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
echo
echo "==> vio4wd-tool doctor on $(hostname) (exit 1 = something to fix; the lab below does not need it)"
vio4wd-tool doctor -q || true
echo
echo "==> vio4wd-tool lab host $*"
exec vio4wd-tool lab host "$@"
