"""A real lab VM: boot the cached Debian 12 image under QEMU 10 (TCG), SSH in, create SR-IOV VFs
on the emulated igb PF, ping the PF from the lab netns, reboot, and tear everything down."""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest

from vio4wd_tool.lab.vm import HOST_IP, LabVM

pytestmark = [
    pytest.mark.lab,
    pytest.mark.slow,
    pytest.mark.qemu,
    pytest.mark.root,
]

PF_IP = "10.213.0.2"
FIND_PF = 'dirname "$(ls /sys/bus/pci/devices/*/sriov_totalvfs | head -1)"'


def test_lab_vm_sriov_ping_reboot_teardown():
    vm = LabVM(f"t{uuid.uuid4().hex[:6]}")
    with vm:
        inv = vm.inventory.read_text()
        assert f"ansible_port={vm.port} ansible_user=root" in inv
        assert vm.cfg.name in (vm.dir.parent / "inventory.ini").read_text()

        pf = vm.ssh(FIND_PF).stdout.strip()
        assert vm.ssh(f"cat {pf}/sriov_totalvfs").stdout.strip() == "7"
        vm.ssh(f"echo 2 > {pf}/sriov_numvfs && udevadm settle")
        vfs = vm.ssh("lspci -n -d 8086:10ca").stdout.splitlines()
        assert len(vfs) == 2, vfs
        drivers = vm.ssh(f"for v in {pf}/virtfn*; do basename $(readlink $v/driver); done").stdout.split()
        assert drivers == ["igbvf", "igbvf"]

        ifname = vm.ssh(f"ls {pf}/net").stdout.strip()
        vm.ssh(f"ip addr add {PF_IP}/24 dev {ifname} && ip link set {ifname} up")
        out = vm.netns_exec(["ping", "-c", "3", "-W", "10", PF_IP]).stdout
        assert " 0% packet loss" in out, out
        out = vm.ssh(f"ping -c 2 -W 10 {HOST_IP}").stdout
        assert " 0% packet loss" in out, out

        took = vm.reboot()
        print(f"reboot took {took:.0f} s")
        assert vm.ssh(f"cat {pf}/sriov_numvfs").stdout.strip() == "0"  # VFs do not persist by themselves
        pid = vm.pid
    assert not vm.dir.exists()
    assert subprocess.run(["ip", "netns", "pids", vm.netns], capture_output=True).returncode != 0
    assert pid is not None and not os.path.exists(f"/proc/{pid}")
