"""`vio4wd-tool lab host`: the newcomer's host-only lab end to end (real forwarder, net_tap VF
stand-in in a namespace, QEMU 10 TCG guest), and that its teardown leaves nothing behind."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from testlib import vio4wd_tool

pytestmark = [pytest.mark.root, pytest.mark.dpdk, pytest.mark.qemu]


def machine_state():
    return (subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.count("vio4wd-lab-host"),
            Path("/proc/mounts").read_text().count("/host/huge"),
            Path("/proc/sys/vm/nr_hugepages").read_text().strip())


def test_lab_host_pings_through_the_forwarder(tmp_path):
    before = machine_state()
    p = vio4wd_tool("lab", "host", "--pings", "5", env={"VIO4WD_LAB_STATE": str(tmp_path), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
                    timeout=300)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out
    assert "5 received, 0% packet loss" in out and "rtt min/avg/max/mdev" in out
    assert "net_tap0,iface=vf0" in out  # the stats table shows the live relay
    assert "doctor before:" in out and "doctor after:" in out
    assert machine_state() == before
    assert not (tmp_path / "host").exists()
