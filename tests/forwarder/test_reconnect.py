"""Test 3: guests connect and disconnect hundreds of times, also disabling every vring first
(the original's worker spins forever on that), while another relay keeps forwarding."""
import time

import pytest

from helpers import fwd_eal, fwd_settings, peer_eal
from testlib import wait_for

pytestmark = [pytest.mark.root, pytest.mark.dpdk]
CYCLES = 300


def test_connect_disconnect_cycles(hugedir, procs, tmp_path):
    fwd = procs("fwd_proc.py", {"settings": fwd_settings(tmp_path),
                                "eal": fwd_eal(hugedir)}, "fwd")
    sock0, sock1 = tmp_path / "virtio-forwarder0.sock", tmp_path / "virtio-forwarder1.sock"
    steady = procs("peer_proc.py", {"eal": peer_eal(hugedir, f"net_virtio_user0,path={sock1}")},
                   "steady")
    flappy = procs("peer_proc.py", {"eal": peer_eal(hugedir)}, "flappy")
    wait_for(lambda: fwd.call("status", 1)["virtio_state"] == "VIRTIO_READY", what="relay 1")
    fwd.call("add_vf", 0, ["net_null0"])          # VF->VM traffic all the time on both
    fwd.call("add_vf", 1, ["net_null1"])

    def relay1_tx():
        return fwd.call("status", 1)["vf2vm"]["tx_pkts"]

    # a guest that disables all its vrings and stays connected
    steady.send(op="drain", seconds=3 + CYCLES * 0.03)   # outlasts the cycles
    port = flappy.op("plug", devargs=f"net_virtio_user0,path={sock0}")
    wait_for(lambda: fwd.call("status", 0)["virtio_state"] == "VIRTIO_READY", what="relay 0")
    assert flappy.op("stop", port=port) == 0        # disables every vring, stays connected
    time.sleep(0.2)
    a, r0 = relay1_tx(), fwd.call("status", 0)["vf2vm"]
    time.sleep(0.5)
    assert relay1_tx() > a, "relay 1 stalled while relay 0's guest had no vring enabled"
    r0_after = fwd.call("status", 0)["vf2vm"]
    assert r0_after["tx_pkts"] == r0["tx_pkts"]            # nothing reaches the guest
    assert r0_after["drop_full_pkts"] > r0["drop_full_pkts"]
    assert fwd.call("status", 0)["connected"]
    assert flappy.op("unplug", port=port) == 0

    # hundreds of connect / send / disable vrings / disconnect cycles
    a = relay1_tx()
    t0 = time.monotonic()
    assert flappy.op("cycles", devargs=f"net_virtio_user0,path={sock0}", n=CYCLES,
                     timeout=600) == CYCLES
    elapsed = time.monotonic() - t0
    assert relay1_tx() > a
    drained = steady.reply(timeout=600)
    assert sum(drained) > 0
    st = fwd.call("status", 0)
    assert st["virtio_state"] == "VIRTIO_UNINIT" and not st["connected"]
    assert st["vm2vf"]["rx_pkts"] > 0 and st["vm2vf"]["rx_pkts"] == st["vm2vf"]["tx_pkts"]
    print(f"\n{CYCLES} cycles in {elapsed:.1f} s")

    # and relay 0 still works afterwards
    port = flappy.op("plug", devargs=f"net_virtio_user0,path={sock0}")
    wait_for(lambda: fwd.call("status", 0)["virtio_state"] == "VIRTIO_READY", what="relay 0")
    got = flappy.op("recv", port=port, count=10, timeout=10)["frames"]
    assert len(got) >= 10


def test_kill_guest_mid_traffic(hugedir, procs, tmp_path):
    """A guest process killed while traffic flows (no orderly vring shutdown)."""
    fwd = procs("fwd_proc.py", {"settings": fwd_settings(tmp_path),
                                "eal": fwd_eal(hugedir)}, "fwd")
    sock = tmp_path / "virtio-forwarder0.sock"
    fwd.call("add_vf", 0, ["net_null0"])
    for k in range(5):
        peer = procs("peer_proc.py", {"eal": peer_eal(hugedir, f"net_virtio_user0,path={sock}")},
                     f"peer{k}")
        wait_for(lambda: fwd.call("status", 0)["virtio_state"] == "VIRTIO_READY",
                 what="guest up")
        peer.send(op="drain", seconds=60)
        tx = fwd.call("status", 0)["vf2vm"]["tx_pkts"]
        wait_for(lambda: fwd.call("status", 0)["vf2vm"]["tx_pkts"] > tx, what="traffic")
        peer.kill()
        wait_for(lambda: fwd.call("status", 0)["virtio_state"] == "VIRTIO_UNINIT",
                 what="guest gone")
    loops = fwd.call("worker_loops")
    time.sleep(0.2)
    assert all(fwd.call("worker_loops")[w] > n for w, n in loops.items())
