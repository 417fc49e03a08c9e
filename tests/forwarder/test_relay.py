"""Test 1: net_pcap VF <-> relay <-> vhost-user <-> net_virtio_user peer, frame for frame."""
import signal
import subprocess
import time

import pytest

from helpers import FWD_CPU, PEER_CPU, file_prefix, fwd_eal, fwd_settings, peer_eal, read_pcap, remove_runtime_dir, udp_frame, write_pcap
from testlib import wait_for

pytestmark = [pytest.mark.root, pytest.mark.dpdk]

N = 1000
CSUM, GUEST_TSO4, HOST_TSO4, MRG_RXBUF, CTRL_RX = 0, 7, 11, 15, 18     # virtio-net feature bits
SIZES = [60, 64, 128, 511, 1000, 1514, 2114]    # 2114 = MTU 2100 + Ethernet header


def frames(base: int) -> list[bytes]:
    return [udp_frame(base + i, SIZES[i % len(SIZES)]) for i in range(N)]


def test_pcap_frames_both_directions(hugedir, procs, tmp_path):
    fwd = procs("fwd_proc.py", {"settings": fwd_settings(tmp_path),
                                "eal": fwd_eal(hugedir)}, "fwd")
    sock = tmp_path / "virtio-forwarder0.sock"
    assert sock.is_socket()
    peer = procs("peer_proc.py", {"eal": peer_eal(hugedir, f"net_virtio_user0,path={sock},"
                                                  "queue_size=1024")}, "peer")
    wait_for(lambda: fwd.call("status", 0)["virtio_state"] == "VIRTIO_READY", what="guest up")
    idle = {w: c[0] for w, c in fwd.call("worker_cycles").items()}

    to_vm, to_vf = frames(0), frames(100000)
    write_pcap(tmp_path / "vf_in.pcap", to_vm)
    fwd.call("add_vf", 0, [f"net_pcap0,rx_pcap={tmp_path}/vf_in.pcap,"
                           f"tx_pcap={tmp_path}/vf_out.pcap"])
    got = peer.op("recv", count=N, timeout=20)["frames"]
    assert [bytes.fromhex(f) for _, f in got] == to_vm

    assert peer.op("send", frames=[f.hex() for f in to_vf]) == N
    wait_for(lambda: fwd.call("status", 0)["vm2vf"]["tx_pkts"] == N, what="VM->VF frames")
    st = fwd.call("status", 0)
    # busy cycles (like testpmd --record-core-cycles) grew with the traffic and stay below the total
    cycles = fwd.call("worker_cycles")
    assert sum(c[0] for c in cycles.values()) > sum(idle.values())
    assert all(0 < c[0] < c[1] for c in cycles.values() if c[0])
    fwd.call("remove_vf", 0)           # closes (flushes) the pcap
    assert read_pcap(tmp_path / "vf_out.pcap") == to_vf

    nbytes = sum(map(len, to_vm))
    assert st["vf2vm"] == dict(rx_pkts=N, rx_bytes=nbytes, tx_pkts=N, tx_bytes=nbytes,
                               drop_full_pkts=0, drop_full_bytes=0, drop_nc_pkts=0,
                               drop_nc_bytes=0)
    nbytes = sum(map(len, to_vf))
    assert st["vm2vf"] == dict(rx_pkts=N, rx_bytes=nbytes, tx_pkts=N, tx_bytes=nbytes,
                               drop_full_pkts=0, drop_full_bytes=0, drop_nc_pkts=0,
                               drop_nc_bytes=0)
    assert st["active"] and st["dpdk_state"] == "DPDK_READY"
    assert fwd.call("status", 0)["dpdk_state"] == "DPDK_UNINIT"
    for bit in (MRG_RXBUF, CTRL_RX, HOST_TSO4, GUEST_TSO4, CSUM):    # off unless asked
        assert not st["features"] & 1 << bit, f"feature bit {bit} offered"


def test_jumbo_mergeable_buffers_tso(hugedir, procs, tmp_path):
    fwd = procs("fwd_proc.py", {"settings": fwd_settings(tmp_path, jumbo=True, mrgbuf=True,
                                                         tso=True),
                                "eal": fwd_eal(hugedir)}, "fwd")
    sock = tmp_path / "virtio-forwarder0.sock"
    peer = procs("peer_proc.py", {"eal": peer_eal(hugedir, f"net_virtio_user0,path={sock}"),
                                  "jumbo": True}, "peer")
    st = wait_for(lambda: (s := fwd.call("status", 0))["virtio_state"] == "VIRTIO_READY" and s,
                  what="guest up")
    assert st["features"] & 1 << MRG_RXBUF     # (the peer asks for no offloads: TSO stays off)
    assert not st["features"] & 1 << CTRL_RX
    big = [udp_frame(i, 9014) for i in range(50)]
    write_pcap(tmp_path / "in.pcap", big)
    fwd.call("add_vf", 0, [f"net_pcap0,rx_pcap={tmp_path}/in.pcap,tx_pcap={tmp_path}/out.pcap"])
    got = peer.op("recv", count=len(big), timeout=20)["frames"]
    assert [bytes.fromhex(f) for _, f in got] == big
    assert peer.op("send", frames=[f.hex() for f in big]) == len(big)
    wait_for(lambda: fwd.call("status", 0)["vm2vf"]["tx_pkts"] == len(big), what="VM->VF")
    fwd.call("remove_vf", 0)
    assert read_pcap(tmp_path / "out.pcap") == big


def test_not_connected_and_queue_full_are_counted(hugedir, procs, tmp_path):
    """Frames from the VF without a guest count as dropped-not-connected; a guest that does
    not read makes its queue fill up: dropped-queue-full, and the worker goes on."""
    fwd = procs("fwd_proc.py", {"settings": fwd_settings(tmp_path),
                                "eal": fwd_eal(hugedir)}, "fwd")
    write_pcap(tmp_path / "in.pcap", frames(0))
    fwd.call("add_vf", 0, [f"net_pcap0,rx_pcap={tmp_path}/in.pcap"])
    st = wait_for(lambda: (s := fwd.call("status", 0))["vf2vm"]["rx_pkts"] == N and s,
                  what="frames read")
    assert st["vf2vm"]["drop_nc_pkts"] == N and st["vf2vm"]["tx_pkts"] == 0
    assert st["vf2vm"]["drop_nc_bytes"] == st["vf2vm"]["rx_bytes"]

    sock = tmp_path / "virtio-forwarder1.sock"
    procs("peer_proc.py", {"eal": peer_eal(hugedir, f"net_virtio_user0,path={sock}")}, "peer")
    wait_for(lambda: fwd.call("status", 1)["virtio_state"] == "VIRTIO_READY", what="guest up")
    fwd.call("add_vf", 1, [f"net_pcap1,rx_pcap={tmp_path}/in.pcap"])   # nobody reads the guest
    st = wait_for(lambda: (s := fwd.call("status", 1))["vf2vm"]["rx_pkts"] == N and s,
                  what="frames read")
    v = st["vf2vm"]
    assert 0 < v["tx_pkts"] <= 256       # what fits in the guest's RX ring
    assert v["drop_full_pkts"] == N - v["tx_pkts"] and v["drop_nc_pkts"] == 0
    assert v["tx_bytes"] + v["drop_full_bytes"] == v["rx_bytes"]


def test_throughput_pcap_to_guest(hugedir, procs, tmp_path, record_property):
    """Frames/s VF->VM: net_pcap replaying 64-byte frames from memory, dpdk-testpmd rxonly as
    the guest, each busy poller on its own CPU. Printed and recorded; asserts only that the
    relay forwards at a plausible rate."""
    fwd = procs("fwd_proc.py", {"settings": fwd_settings(tmp_path),
                                "eal": fwd_eal(hugedir)}, "fwd")
    write_pcap(tmp_path / "in.pcap", [udp_frame(i, 64) for i in range(512)])
    sock = tmp_path / "virtio-forwarder0.sock"
    eal = ["dpdk-testpmd", "--lcores", f"0@{PEER_CPU},1@{PEER_CPU}", "--no-pci", "--in-memory",
           "--huge-dir", str(hugedir), "--single-file-segments", "--file-prefix", file_prefix(),
           "--vdev", f"net_virtio_user0,path={sock},queue_size=1024"]
    pmd = subprocess.Popen(
        eal + ["--", "--forward-mode=rxonly", "--auto-start", "--stats-period", "1",
               "--nb-cores", "1", "--txq", "1", "--rxq", "1"],
        stdin=subprocess.DEVNULL, stdout=open(tmp_path / "testpmd.log", "w"),
        stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: fwd.call("status", 0)["virtio_state"] == "VIRTIO_READY",
                 what="testpmd connected")
        fwd.call("add_vf", 0, [f"net_pcap0,rx_pcap={tmp_path}/in.pcap,infinite_rx=1"])
        time.sleep(1)
        a = fwd.call("status", 0)["vf2vm"]
        t0 = time.monotonic()
        time.sleep(3)
        b = fwd.call("status", 0)["vf2vm"]
        dt = time.monotonic() - t0
    finally:
        pmd.send_signal(signal.SIGINT)
        try:
            pmd.wait(20)
        except subprocess.TimeoutExpired:
            pmd.kill()
            pmd.wait()
        remove_runtime_dir(eal)
    rx = (b["rx_pkts"] - a["rx_pkts"]) / dt
    tx = (b["tx_pkts"] - a["tx_pkts"]) / dt
    print(f"\nVF->VM 64 B: {rx / 1e6:.2f} Mpps read from net_pcap, {tx / 1e6:.2f} Mpps "
          f"into the guest (worker cpu {FWD_CPU})")
    record_property("vf2vm_rx_pps", rx)
    record_property("vf2vm_tx_pps", tx)
    assert tx > 100_000
