"""`vio4wd-tool lab vm`: README command (a)'s main job end to end on a lab VM (about 10-15 min
under TCG): doctor before and after, the rollout, pings through the emulated igb PF, the real VF and
the forwarder, stats, and a teardown that leaves no VM, namespace or state behind. The molecule
`site` scenario runs the same playbooks with the default guest side (virtio-forwarder-echo); this test
uses the issue's peer, a net_virtio_user `dpdk-testpmd --forward-mode=icmpecho`."""
from __future__ import annotations

import os
import subprocess

import pytest

from testlib import vio4wd_tool

pytestmark = [pytest.mark.lab, pytest.mark.slow, pytest.mark.root, pytest.mark.qemu]


def test_lab_vm_pings_through_the_real_vf(tmp_path):
    name = "t-vmlab"
    env = {**os.environ, "VIO4WD_LAB_STATE": str(tmp_path)}
    p = vio4wd_tool("lab", "vm", "--name", name, "--pings", "5", "--guest", "testpmd", env=env, timeout=2400)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-6000:]
    for step in ("doctor before the rollout", "rollout took", "doctor after the rollout", "relay 1 live stats"):
        assert step in out, step
    assert "HOST" in out and "OK" in out  # the fleet doctor table before the rollout
    assert " passed, " in out and " warnings, 0 failed, " in out  # doctor -q in the VM after it
    assert "dpdk-testpmd --forward-mode=icmpecho" in out
    assert "5 received, 0% packet loss" in out and "rtt min/avg/max/mdev" in out
    assert "0000:01:10.0" in out  # the stats table: relay 1 on the real VF
    assert "vhost-user" in out  # the QEMU snippet for relay 1
    assert "the lab worked end to end" in out
    assert f"vio4wd-lab-{name}" not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not (tmp_path / name).exists()
