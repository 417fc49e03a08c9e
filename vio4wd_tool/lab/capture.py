"""Fixture captures from lab VMs: boot a fresh lab VM, create VFs on the igb PF, run
`vio4wd-tool capture` there from a copy of this source tree (the image's python3 with the
project's dependencies from Debian, PYTHONPATH),
and copy the captured tree back.

    python -m vio4wd_tool.lab capture tests/fixtures/captures/labvm-igb-sriov
    python -m vio4wd_tool.lab capture --nodes 2 tests/fixtures/captures/labvm-2node
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from .common import LabError, say
from .vm import LabVM

SOURCE_TREE = Path(__file__).resolve().parents[2]
PACKAGES = ("vio4wd_tool", "forwarder")
GUEST_TREE = "/opt/vio4wd"
GUEST_CAPTURE = "/tmp/vio4wd-capture"
# the project's runtime imports, from Debian (debs cached on the host through the lab apt share)
GUEST_APT = ("python3-jinja2", "python3-zmq", "python3-pyudev", "python3-protobuf")

# create the VFs on the first SR-IOV capable device, bring its PF up, wait for the VF drivers
MAKE_VFS = r"""set -e
dev=$(dirname "$(ls /sys/bus/pci/devices/*/sriov_totalvfs | head -1)")
[ -n "$dev" ] || { echo "no SR-IOV device"; exit 1; }
echo 0 > "$dev/sriov_numvfs"
echo {vfs} > "$dev/sriov_numvfs"
udevadm settle
for n in "$dev"/net/*; do ip link set "$(basename "$n")" up; done
ls -d "$dev"/virtfn*
"""


def push_tree(vm: LabVM) -> None:
    """Copy the project's packages into GUEST_TREE in the VM."""
    tar = subprocess.Popen(["tar", "-C", str(SOURCE_TREE), "--exclude=__pycache__", "--exclude=*.so", "-cz",
                            *PACKAGES], stdout=subprocess.PIPE)
    proc = subprocess.run(vm.ssh_command() + [f"rm -rf {GUEST_TREE} && mkdir -p {GUEST_TREE} && "
                                              f"tar -C {GUEST_TREE} -xz"],
                          stdin=tar.stdout, capture_output=True, text=True)
    tar.stdout.close()
    if tar.wait() != 0 or proc.returncode != 0:
        raise LabError(f"copying the source tree into lab VM {vm.cfg.name} failed: {proc.stderr}")


def pull_tree(vm: LabVM, src: str, out: Path) -> None:
    out.mkdir(parents=True)
    ssh = subprocess.Popen(vm.ssh_command() + [f"tar -C {src} -c ."], stdout=subprocess.PIPE)
    proc = subprocess.run(["tar", "-C", str(out), "-x"], stdin=ssh.stdout, capture_output=True, text=True)
    ssh.stdout.close()
    if ssh.wait() != 0 or proc.returncode != 0:
        raise LabError(f"copying {src} out of lab VM {vm.cfg.name} failed: {proc.stderr}")


def capture_in(vm: LabVM, out: str | Path, vfs: int = 2) -> Path:
    """In a running lab VM: create `vfs` VFs, run the capture, replace `out` with it."""
    out = Path(out)
    if vfs:
        say(f"creating {vfs} VFs in {vm.cfg.name}")
        print(vm.ssh(MAKE_VFS.replace("{vfs}", str(vfs))).stdout, end="")
    say(f"installing {' '.join(GUEST_APT)} in {vm.cfg.name}")
    vm.ssh(f"apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "
           f"{' '.join(GUEST_APT)}")
    say(f"copying {', '.join(PACKAGES)} to {vm.cfg.name}:{GUEST_TREE}")
    push_tree(vm)
    say(f"running vio4wd-tool capture in {vm.cfg.name}")
    proc = vm.ssh(f"rm -rf {GUEST_CAPTURE} && cd /tmp && PYTHONPATH={GUEST_TREE} "
                  f"python3 -m vio4wd_tool capture {GUEST_CAPTURE}")
    print(proc.stdout, end="")
    if out.exists():
        shutil.rmtree(out)
    pull_tree(vm, GUEST_CAPTURE, out)
    say(f"capture of {vm.cfg.name} written to {out}")
    return out


def capture_fixture(out: str | Path, numa_nodes: int = 1, vfs: int = 2) -> Path:
    """Boot a fresh lab VM (1 or 2 NUMA nodes), capture it into `out`, remove the VM."""
    with LabVM(f"cap{numa_nodes}n", numa_nodes=numa_nodes) as vm:
        return capture_in(vm, out, vfs)
