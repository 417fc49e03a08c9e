#!/usr/bin/env bash
# README command (a): set up this Debian 12 machine, then run the main job on an embedded default.
#   scripts/lab.sh [--keep] [--pings N]   doctor on this host, then the VM lab (`vio4wd-tool lab vm`):
#       a lab VM with an emulated igb SR-IOV NIC, doctor before, the Ansible rollout (kernel args +
#       reboot, hugepages, VFs, pinning, forwarder), doctor after, a guest side on the forwarder's
#       vhost-user socket, pings from a private namespace through the PF, the real VF and the
#       forwarder, live stats, hints, teardown (about 10-15 min under TCG after setup).
#   scripts/lab.sh host [--keep]          the faster host-only lab (`vio4wd-tool lab host`): the
#       forwarder on this machine with a net_tap VF stand-in and a QEMU 10 guest (about 1 min).
#   scripts/lab.sh down                   tear down a lab left with --keep (or by a failure)
set -euo pipefail
cd "$(dirname "$0")/.."
mode=vm
case "${1:-}" in
  host) mode=host; shift ;;
  vm) shift ;;
  down) exec .venv/bin/vio4wd-tool lab vm --down ;;
esac
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
echo
echo "==> vio4wd-tool doctor on $(hostname) (exit 1 = something to fix; the lab below does not need it)"
vio4wd-tool doctor -q || true
echo
echo "==> vio4wd-tool lab $mode $*"
exec vio4wd-tool lab "$mode" "$@"
