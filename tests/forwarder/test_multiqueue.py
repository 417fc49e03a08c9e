"""Test 2: multiqueue. VF->VM spreads flows over the guest's RX queues by hash; VM->VF serves
the enabled TX queues round robin."""
import struct

import pytest

from helpers import FWD_CPU, fwd_eal, fwd_settings, peer_eal, read_pcap, udp_frame, write_pcap
from testlib import wait_for

pytestmark = [pytest.mark.root, pytest.mark.dpdk]
QUEUES = 4


def ipv6_frame(i: int, flow: int) -> bytes:
    eth = bytes.fromhex("020000000001020000000002") + b"\x86\xdd"
    payload = struct.pack("!HHHH", flow, 4789, 16, 0) + struct.pack("!II", i, 0)
    ip = struct.pack("!IHBB", 6 << 28, len(payload), 17, 64) + bytes(15) + b"\x01" + \
        bytes(15) + b"\x02"
    return eth + ip + payload


def other_frame(i: int, src: int) -> bytes:        # not IP: hashed on MACs + ethertype
    return bytes.fromhex("020000000001") + src.to_bytes(6, "big") + b"\x88\xb5" + \
        struct.pack("!I", i) + bytes(42)


@pytest.fixture
def mq(hugedir, procs, tmp_path):
    fwd = procs("fwd_proc.py", {"settings": fwd_settings(tmp_path),
                                "eal": fwd_eal(hugedir)}, "fwd")
    sock = tmp_path / "virtio-forwarder0.sock"
    peer = procs("peer_proc.py", {"eal": peer_eal(hugedir, f"net_virtio_user0,path={sock},"
                                                  f"queues={QUEUES},queue_size=1024"),
                                  "queues": QUEUES}, "peer")
    wait_for(lambda: fwd.call("status", 0)["rxq_enabled"] == (1 << QUEUES) - 1,
             what="all queues enabled")
    return fwd, peer


def test_flows_land_on_queues_by_hash(mq, tmp_path):
    fwd, peer = mq
    st = fwd.call("status", 0)
    assert st["queue_pairs"] == QUEUES and st["txq_enabled"] == (1 << QUEUES) - 1
    flows = 48
    frames, flow_of = [], {}
    for i in range(flows * 10):
        kind, flow = i % 3, i % flows
        f = (udp_frame(i, 64, flow=1000 + flow) if kind == 0 else
             ipv6_frame(i, 2000 + flow) if kind == 1 else other_frame(i, 3000 + flow))
        frames.append(f)
        flow_of[f] = (kind, flow)
    write_pcap(tmp_path / "in.pcap", frames)
    fwd.call("add_vf", 0, [f"net_pcap0,rx_pcap={tmp_path}/in.pcap"])
    got = peer.op("recv", count=len(frames), timeout=20)["frames"]
    assert sorted(bytes.fromhex(f) for _, f in got) == sorted(frames)
    queue_of_flow: dict = {}
    for q, f in got:
        queue_of_flow.setdefault(flow_of[bytes.fromhex(f)], set()).add(q)
    assert all(len(qs) == 1 for qs in queue_of_flow.values()), "a flow was split over queues"
    used = {next(iter(qs)) for qs in queue_of_flow.values()}
    assert used == set(range(QUEUES)), f"flows used only queues {used}"
    for kind in range(3):   # each kind of frame spreads on its own
        assert len({next(iter(qs)) for (k, _), qs in queue_of_flow.items() if k == kind}) > 1


def test_vm_to_vf_round_robin(mq, tmp_path):
    fwd, peer = mq
    write_pcap(tmp_path / "empty.pcap", [])
    fwd.call("add_vf", 0, [f"net_pcap0,rx_pcap={tmp_path}/empty.pcap,"
                           f"tx_pcap={tmp_path}/out.pcap"])
    fwd.call("move", {0: [FWD_CPU, None]})          # park VM->VF: the guest's queues fill up
    per_q = 100
    for q in range(QUEUES):
        sent = peer.op("send", queue=q, frames=[udp_frame(q * 1000 + i, 64).hex()
                                                for i in range(per_q)])
        assert sent == per_q
    assert fwd.call("status", 0)["vm2vf"]["rx_pkts"] == 0
    fwd.call("move", {0: [FWD_CPU, FWD_CPU]})
    wait_for(lambda: fwd.call("status", 0)["vm2vf"]["tx_pkts"] == QUEUES * per_q,
             what="all queues drained")
    fwd.call("remove_vf", 0)
    out = [struct.unpack_from("!I", f, 42)[0] for f in read_pcap(tmp_path / "out.pcap")]
    runs = []                                        # (queue, length) of consecutive frames
    for n in out:
        q = n // 1000
        if runs and runs[-1][0] == q:
            runs[-1][1] += 1
        else:
            runs.append([q, 1])
    assert all(length <= 32 for _, length in runs), runs          # one burst per turn
    assert all(b[0] == (a[0] + 1) % QUEUES for a, b in zip(runs, runs[1:])), runs
    for q in range(QUEUES):                                        # in order within a queue
        assert [n for n in out if n // 1000 == q] == [q * 1000 + i for i in range(per_q)]

