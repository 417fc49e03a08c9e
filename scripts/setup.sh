#!/usr/bin/env bash
# Set up a Debian 12 machine for vio4wd development and tests:
#   apt packages (DPDK 22.11, QEMU 10 from bookworm-backports, test peers) and a venv in .venv.
# Idempotent: a second run installs nothing new. Needs root (or sudo) for apt.
#   VIO4WD_SETUP_MINIMAL=1  only what the Python package and its unit tests need.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive

base_pkgs=(python3 python3-venv python3-dev gcc make pkg-config libffi-dev git iproute2 iputils-ping
           kmod pciutils util-linux procps)
dpdk_pkgs=(dpdk dpdk-dev libdpdk-dev)
lab_pkgs=(busybox-static cpio linux-image-amd64 linux-headers-amd64 dkms dpdk-kmods-dkms mmdebstrap e2fsprogs fdisk openssh-client libxml2-utils
          libvirt-clients grub2-common openvswitch-switch tcpdump)
bpo_pkgs=(qemu-system-x86 qemu-utils)

need=()
want=("${base_pkgs[@]}")
if [ "${VIO4WD_SETUP_MINIMAL:-0}" != 1 ]; then
  want+=("${dpdk_pkgs[@]}" "${lab_pkgs[@]}")
fi
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
done
bpo_need=0
if [ "${VIO4WD_SETUP_MINIMAL:-0}" != 1 ]; then
  # QEMU 7.2 in bookworm has no igb device and crashes on vhost-user under TCG: take 10.x.
  if ! qemu-system-x86_64 --version 2>/dev/null | grep -qE 'version (9|[1-9][0-9])\.'; then
    bpo_need=1
  fi
fi

if [ ${#need[@]} -gt 0 ] || [ $bpo_need = 1 ]; then
  if [ $bpo_need = 1 ] && ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
    say "adding the bookworm-backports suite (QEMU 10)"
    echo "deb http://deb.debian.org/debian bookworm-backports main" | $SUDO tee /etc/apt/sources.list.d/vio4wd-backports.list >/dev/null
  fi
  say "apt-get update"
  $SUDO apt-get update -q
  if [ ${#need[@]} -gt 0 ]; then
    say "installing ${need[*]}"
    $SUDO apt-get install -y -q --no-install-recommends "${need[@]}"
  fi
  if [ $bpo_need = 1 ]; then
    say "installing QEMU from bookworm-backports"
    $SUDO apt-get install -y -q --no-install-recommends -t bookworm-backports "${bpo_pkgs[@]}"
  fi
fi
# the distribution's ovsdb-server is started by tests on their own sockets, never as a service
if systemctl is-active -q openvswitch-switch 2>/dev/null; then $SUDO systemctl disable --now openvswitch-switch >/dev/null 2>&1 || true; fi

PY=${VIO4WD_PYTHON:-/usr/bin/python3}
if [ ! -x .venv/bin/python ]; then
  say "creating .venv with $PY"
  "$PY" -m venv .venv
fi
stamp=.venv/.vio4wd-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ -n "$(find forwarder -newer "$stamp" -name '*.c' -o -newer "$stamp" -name '*_build.py' 2>/dev/null | head -1)" ]; then
  say "installing vio4wd into .venv (editable, with the test and lab extras)"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[test,lab]'
  touch "$stamp"
fi
say "ready: $(.venv/bin/vio4wd-tool --version 2>/dev/null || echo vio4wd-tool)"
