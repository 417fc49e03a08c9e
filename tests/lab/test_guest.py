"""The vhost-user test guest against a real vhost-user peer that needs no forwarder:
dpdk-testpmd relaying net_vhost <-> net_tap (io mode), the tap in a test network namespace."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from vio4wd_tool.lab.guest import VhostGuest

pytestmark = [
    pytest.mark.qemu,
    pytest.mark.dpdk,
    pytest.mark.root,
    pytest.mark.skipif(shutil.which("dpdk-testpmd") is None, reason="dpdk-testpmd missing: scripts/setup.sh"),
]

HOST_IP = "10.211.0.1"
GUEST_IP = "10.211.0.2"
TAP = "vtap0"
NR_HUGEPAGES = Path("/proc/sys/vm/nr_hugepages")
GUEST_MEM_MB = 256


@pytest.fixture
def netns():
    name = f"vio4wd-t-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.fixture
def sockdir(tmp_path_factory):
    # unix socket paths are limited to 108 bytes: keep them short
    path = Path(f"/tmp/vio4wd-t-{uuid.uuid4().hex[:8]}")
    path.mkdir()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def guest_hugedir():
    """A private hugetlbfs mount with the guest's memory in 2 MiB pages reserved; both undone after."""
    pages = GUEST_MEM_MB // 2
    before = int(NR_HUGEPAGES.read_text())
    NR_HUGEPAGES.write_text(str(before + pages))
    mnt = Path(tempfile.mkdtemp(prefix="vio4wd-t-huge-"))
    try:
        got = int(NR_HUGEPAGES.read_text()) - before
        if got < pages:
            pytest.fail(f"could reserve only {got} of {pages} hugepages (memory fragmented?)")
        subprocess.run(["mount", "-t", "hugetlbfs", "-o", "pagesize=2M", "nodev", str(mnt)], check=True)
        try:
            yield mnt
        finally:
            subprocess.run(["umount", str(mnt)], check=True)
    finally:
        NR_HUGEPAGES.write_text(str(max(0, int(NR_HUGEPAGES.read_text()) - pages)))
        mnt.rmdir()


def start_testpmd(netns: str, sock: Path, client: bool, log: Path, queues: int = 1) -> subprocess.Popen:
    """testpmd in the netns: net_vhost0 on sock <-> net_tap0 (iface vtap0) in io mode."""
    vhost = f"net_vhost0,iface={sock},queues={queues}" + (",client=1" if client else "")
    cmd = ["ip", "netns", "exec", netns, "stdbuf", "-oL", "dpdk-testpmd", "-l", "0-1", "--no-huge", "-m", "256",
           "--no-shconf", "--no-pci", "--vdev", vhost, "--vdev", f"net_tap0,iface={TAP}",
           "--", "--forward-mode=io", "--auto-start", "--total-num-mbufs=8192",
           f"--rxq={queues}", f"--txq={queues}"]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while "Press enter to exit" not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc)
            raise AssertionError(f"testpmd did not start:\n{log.read_text(errors='replace')}")
        time.sleep(0.2)
    subprocess.run(["ip", "netns", "exec", netns, "ip", "addr", "add", f"{HOST_IP}/24", "dev", TAP], check=True)
    subprocess.run(["ip", "netns", "exec", netns, "ip", "link", "set", TAP, "up"], check=True)
    return proc


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def ping_both_ways(netns: str, guest: VhostGuest) -> None:
    out = subprocess.run(["ip", "netns", "exec", netns, "ping", "-c", "5", "-i", "0.2", "-W", "5", GUEST_IP],
                         capture_output=True, text=True)
    print(out.stdout)
    assert out.returncode == 0 and " 0% packet loss" in out.stdout, out.stdout + out.stderr
    out = guest.run(f"ping -c 3 -W 5 {HOST_IP}")
    assert "3 packets received" in out, out


@pytest.mark.parametrize("guest_server", [False, True], ids=["qemu-client", "qemu-server"])
def test_ping_through_testpmd(netns, sockdir, tmp_path, guest_server):
    sock = sockdir / "vu0.sock"
    log = tmp_path / "testpmd.log"
    testpmd = None
    try:
        if not guest_server:  # testpmd listens first, QEMU connects
            testpmd = start_testpmd(netns, sock, client=False, log=log)
        guest = VhostGuest(sock, ip_cidr=f"{GUEST_IP}/24", server=guest_server)
        guest.start()
        try:
            if guest_server:  # QEMU listens, testpmd connects as client
                testpmd = start_testpmd(netns, sock, client=True, log=log)
            guest.wait_ready()
            print(f"guest ready after {guest.boot_seconds:.1f} s")
            assert guest.run("cat /sys/class/net/eth0/address").strip() == guest.mac
            assert guest.run_rc("exit 3") == (3, "")
            ping_both_ways(netns, guest)
        finally:
            guest.stop()
    finally:
        if testpmd is not None:
            stop(testpmd)
            print(log.read_text(errors="replace")[-1500:])
    assert not sock.exists() or not guest_server


def test_multiqueue_guest(netns, sockdir, tmp_path):
    """queues=2 with smp=2: the guest's virtio-net exposes and enables both queue pairs."""
    sock = sockdir / "vu0.sock"
    testpmd = start_testpmd(netns, sock, client=False, log=tmp_path / "testpmd.log", queues=2)
    try:
        with VhostGuest(sock, ip_cidr=f"{GUEST_IP}/24", queues=2, smp=2) as guest:
            print(f"2-vCPU guest ready after {guest.boot_seconds:.1f} s")
            queues = guest.run("ls /sys/class/net/eth0/queues").split()
            assert sorted(queues) == ["rx-0", "rx-1", "tx-0", "tx-1"], queues
            ping_both_ways(netns, guest)
    finally:
        stop(testpmd)


def test_guest_memory_on_hugepages(netns, sockdir, tmp_path, guest_hugedir):
    """memory-backend-file on a hugetlbfs mount instead of memfd."""
    sock = sockdir / "vu0.sock"
    testpmd = start_testpmd(netns, sock, client=False, log=tmp_path / "testpmd.log")
    try:
        with VhostGuest(sock, ip_cidr=f"{GUEST_IP}/24", mem_mb=GUEST_MEM_MB, hugepage_dir=guest_hugedir) as guest:
            ping_both_ways(netns, guest)
    finally:
        stop(testpmd)
