"""Test 6: a real guest. QEMU 10 (TCG) boots a busybox initramfs whose virtio-net is on the
forwarder's vhost-user socket; the VF side is a net_tap in a test network namespace; ping goes
through the forwarder both ways."""
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from helpers import fwd_eal, fwd_settings
from testlib import wait_for

pytestmark = [pytest.mark.root, pytest.mark.dpdk, pytest.mark.qemu]
HOST_IP, GUEST_IP, TAP = "10.212.0.1", "10.212.0.2", "vf0"


@pytest.fixture
def netns():
    name = f"vio4wd-fwd-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.fixture
def sockdir():
    path = Path(f"/tmp/vio4wd-f-{uuid.uuid4().hex[:8]}")    # unix socket paths: < 108 bytes
    path.mkdir()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_ping_guest_through_forwarder(hugedir, procs, netns, sockdir):
    guest_mod = pytest.importorskip("vio4wd_tool.lab.guest")
    ns = ("ip", "netns", "exec", netns)
    fwd = procs("fwd_proc.py", {"settings": fwd_settings(sockdir, max_relays=4),
                                "eal": fwd_eal(hugedir)}, "fwd", prefix=ns)
    fwd.call("add_vf", 0, [f"net_tap0,iface={TAP}"])
    subprocess.run([*ns, "ip", "addr", "add", f"{HOST_IP}/24", "dev", TAP], check=True)
    subprocess.run([*ns, "ip", "link", "set", TAP, "up"], check=True)
    with guest_mod.VhostGuest(sockdir / "virtio-forwarder0.sock",
                              ip_cidr=f"{GUEST_IP}/24") as guest:
        print(f"guest ready after {guest.boot_seconds:.1f} s")
        assert fwd.call("status", 0)["virtio_state"] == "VIRTIO_READY"
        out = subprocess.run([*ns, "ping", "-c", "10", "-i", "0.2", "-W", "5", GUEST_IP],
                             capture_output=True, text=True)
        print(out.stdout)
        assert out.returncode == 0 and " 0% packet loss" in out.stdout, out.stdout + out.stderr
        out = guest.run(f"ping -c 5 -W 5 {HOST_IP}")
        assert "5 packets received" in out, out
        st = fwd.call("status", 0)
    assert st["vf2vm"]["tx_pkts"] >= 15 and st["vm2vf"]["tx_pkts"] >= 15
    assert st["vf2vm"]["drop_full_pkts"] == st["vm2vf"]["drop_full_pkts"] == 0
    wait_for(lambda: fwd.call("status", 0)["virtio_state"] == "VIRTIO_UNINIT", what="guest gone")
    assert os.path.exists(sockdir / "virtio-forwarder0.sock")   # server socket stays for the next
