"""Test 4: as many relays as the DPDK build allows (RTE_MAX_ETHPORTS: 32 on Debian), each
carrying its own traffic both ways, at the same time."""

import pytest

from helpers import fwd_eal, fwd_settings, peer_eal, read_pcap, udp_frame, write_pcap
from testlib import wait_for

pytestmark = [pytest.mark.root, pytest.mark.dpdk]
PER_RELAY = 100


def tagged(relay: int, direction: int) -> list[bytes]:
    return [udp_frame(relay * 10000 + direction * 1000 + i, 64 + relay) for i in range(PER_RELAY)]


def test_all_relays_at_once(hugedir, procs, tmp_path):
    fwd = procs("fwd_proc.py", {"settings": fwd_settings(tmp_path, max_relays=64),
                                "eal": fwd_eal(hugedir)}, "fwd")
    n = fwd.hello["ok"]["max_relays"]
    assert n == 32, "Debian's DPDK has RTE_MAX_ETHPORTS 32"
    vdevs = [f"net_virtio_user{i},path={tmp_path}/virtio-forwarder{i}.sock" for i in range(n)]
    peer = procs("peer_proc.py", {"eal": peer_eal(hugedir, *vdevs)}, "peer")
    assert peer.hello["ok"]["ports"] == list(range(n))
    wait_for(lambda: all(s["virtio_state"] == "VIRTIO_READY" for s in fwd.call("statuses")),
             what="all guests up")
    for i in range(n):
        write_pcap(tmp_path / f"in{i}.pcap", tagged(i, 0))
        fwd.call("add_vf", i, [f"net_pcap{i},rx_pcap={tmp_path}/in{i}.pcap,"
                               f"tx_pcap={tmp_path}/out{i}.pcap"])
    for i in range(n):        # the peer's port i is the guest of relay i
        got = peer.op("recv", port=i, count=PER_RELAY, timeout=10)["frames"]
        assert [bytes.fromhex(f) for _, f in got] == tagged(i, 0), f"relay {i} VF->VM"
        assert peer.op("send", port=i, frames=[f.hex() for f in tagged(i, 1)]) == PER_RELAY
    wait_for(lambda: all(s["vm2vf"]["tx_pkts"] == PER_RELAY for s in fwd.call("statuses")),
             what="VM->VF on every relay")
    for i in range(n):
        fwd.call("remove_vf", i)
        assert read_pcap(tmp_path / f"out{i}.pcap") == tagged(i, 1), f"relay {i} VM->VF"
    for s in fwd.call("statuses"):
        assert s["vf2vm"]["tx_pkts"] == s["vm2vf"]["tx_pkts"] == PER_RELAY
        assert s["vf2vm"]["drop_full_pkts"] == s["vf2vm"]["drop_nc_pkts"] == 0
