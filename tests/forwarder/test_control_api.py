"""The control-plane API (forwarder.relays.Forwarder) the ZeroMQ endpoints build on: dynamic
sockets, bonds, error codes, and moving directions between workers under traffic."""
import pytest

from helpers import FWD_CPU, PEER_CPU, fwd_eal, fwd_settings, peer_eal, read_pcap, udp_frame, write_pcap
from testlib import wait_for

pytestmark = [pytest.mark.root, pytest.mark.dpdk]


def error(fwd, method, *args, **kw) -> str:
    reply = fwd.ask(call=method, args=list(args), kwargs=kw)
    assert "error" in reply, f"{method}{args} succeeded"
    return reply["code"]


def test_dynamic_sockets_bonds_and_errors(hugedir, procs, tmp_path):
    fwd = procs("fwd_proc.py", {"settings": fwd_settings(tmp_path, dynamic_sockets=True),
                                "eal": fwd_eal(hugedir)}, "fwd")
    assert not list(tmp_path.glob("*.sock"))
    a, b = str(tmp_path / "a.sock"), str(tmp_path / "b.sock")
    assert fwd.call("add_socket", a, ["net_null0"]) == 0
    assert fwd.call("add_socket", b) == 1
    assert fwd.call("relay_by_socket", b) == 1 and fwd.call("query_vf", b) == ""
    assert fwd.call("query_vf", a) == "net_null0"
    assert fwd.call("query_vf", str(tmp_path / "none.sock")) is None
    assert error(fwd, "add_socket", a) == "SOCKET_REGISTERED"
    assert error(fwd, "add_vf", 1, ["net_null0"]) == "ALREADY_ADDED"     # VF used by relay 0
    assert error(fwd, "add_vf", 0, ["net_null9"]) == "ALREADY_ADDED"     # relay has a VF
    assert error(fwd, "add_vf", 32, ["net_null9"]) == "BAD_ID"
    assert error(fwd, "add_vf", 1, ["eth0"]) == "BAD_ARGS"
    assert error(fwd, "add_vf", 1, ["0000:99:00.7"]) == "PROBE_FAILED"
    assert error(fwd, "add_vf", 1, ["net_null1", "net_null2"]) == "BAD_ARGS"   # bond: no name
    assert error(fwd, "add_vf", 1, ["net_null1", "net_null2"], "b0", 7) == "BAD_ARGS"
    assert error(fwd, "remove_vf", 1) == "NOT_ADDED"
    assert error(fwd, "remove_socket", str(tmp_path / "none.sock")) == "SOCKET_UNKNOWN"
    assert error(fwd, "move", {0: [PEER_CPU, FWD_CPU]}) == "BAD_CPU"      # not a worker

    fwd.call("add_vf", 1, ["net_null1", "net_null2", "net_null3"], "b0", 0)   # round robin
    st = fwd.call("status", 1)
    assert st["vf"] == "net_null1 net_null2 net_null3" and st["bond"] == "b0"
    assert st["dpdk_state"] == "DPDK_READY"
    wait_for(lambda: fwd.call("status", 1)["vf2vm"]["rx_pkts"] > 0, what="bond traffic")
    assert fwd.call("remove_socket", None, "net_null2") == 1         # by a member VF
    assert not (tmp_path / "b.sock").exists()
    assert fwd.call("status", 1)["dpdk_state"] == "DPDK_UNINIT"
    assert fwd.call("add_socket", b, ["net_null1", "net_null2"], "b0") == 1   # names reusable
    assert fwd.call("remove_socket", b) == 1
    assert fwd.call("remove_socket", a, "net_null0") == 0
    assert not list(tmp_path.glob("*.sock"))


def test_static_sockets_refuse_socket_ops(hugedir, procs, tmp_path):
    fwd = procs("fwd_proc.py", {"settings": fwd_settings(tmp_path, max_relays=4),
                                "eal": fwd_eal(hugedir)}, "fwd")
    assert sorted(p.name for p in tmp_path.glob("*.sock")) == \
        [f"virtio-forwarder{i}.sock" for i in range(4)]
    assert error(fwd, "add_socket", str(tmp_path / "x.sock")) == "NOT_DYNAMIC"


def test_move_directions_under_traffic(hugedir, procs, tmp_path):
    """Two workers; the VM->VF direction hops between them while the guest sends: every frame
    arrives once, in order."""
    n = 20000
    eal = fwd_eal(hugedir)
    eal[eal.index("--lcores") + 1] = f"127@({PEER_CPU}-{FWD_CPU}),{PEER_CPU}@{PEER_CPU}," \
                                     f"{FWD_CPU}@{FWD_CPU}"
    eal[eal.index("--main-lcore") + 1] = "127"
    fwd = procs("fwd_proc.py", {"settings": fwd_settings(tmp_path, cpus=[PEER_CPU, FWD_CPU],
                                                         master_lcore=None, max_relays=2),
                                "eal": eal}, "fwd")
    assert fwd.hello["ok"]["workers"] == [PEER_CPU, FWD_CPU]
    assert fwd.call("cpu_map") == {"0": [PEER_CPU, FWD_CPU], "1": [FWD_CPU, PEER_CPU]}
    sock = tmp_path / "virtio-forwarder0.sock"
    peer = procs("peer_proc.py", {"eal": peer_eal(hugedir, f"net_virtio_user0,path={sock},"
                                                  "queue_size=1024")}, "peer")
    wait_for(lambda: fwd.call("status", 0)["virtio_state"] == "VIRTIO_READY", what="guest up")
    write_pcap(tmp_path / "empty.pcap", [])
    fwd.call("add_vf", 0, [f"net_pcap0,rx_pcap={tmp_path}/empty.pcap,"
                           f"tx_pcap={tmp_path}/out.pcap"])
    frames = [udp_frame(i, 64) for i in range(n)]
    peer.send(op="send", frames=[f.hex() for f in frames])
    moves = 0
    while fwd.call("status", 0)["vm2vf"]["rx_pkts"] < n:
        cpu = (PEER_CPU, FWD_CPU)[moves % 2]
        fwd.call("move", {0: [PEER_CPU, cpu]})
        assert fwd.call("cpu_map")["0"] == [PEER_CPU, cpu]
        moves += 1
    assert peer.reply() == n
    st = fwd.call("status", 0)["vm2vf"]
    fwd.call("remove_vf", 0)
    print(f"\n{moves} moves while {n} frames went through")
    assert moves > 10
    assert st["drop_full_pkts"] + st["drop_nc_pkts"] == 0 and st["tx_pkts"] == n
    assert read_pcap(tmp_path / "out.pcap") == frames


def test_remove_socket_under_a_connected_guest(hugedir, procs, tmp_path):
    """Unregistering a socket whose guest is connected and receiving, many times over."""
    fwd = procs("fwd_proc.py", {"settings": fwd_settings(tmp_path, dynamic_sockets=True),
                                "eal": fwd_eal(hugedir)}, "fwd")
    sock = str(tmp_path / "g.sock")
    for k in range(5):
        assert fwd.call("add_socket", sock, ["net_null0"]) == 0
        peer = procs("peer_proc.py", {"eal": peer_eal(hugedir, f"net_virtio_user0,path={sock}")},
                     f"peer{k}")
        wait_for(lambda: fwd.call("status", 0)["virtio_state"] == "VIRTIO_READY",
                 what="guest up")
        tx = fwd.call("status", 0)["vf2vm"]["tx_pkts"]     # counters are per relay, kept
        peer.send(op="drain", seconds=3)  # long enough for a loaded machine
        wait_for(lambda: fwd.call("status", 0)["vf2vm"]["tx_pkts"] > tx + 1000, what="traffic")
        assert fwd.call("remove_socket", sock) == 0
        st = fwd.call("status", 0)
        assert st["virtio_state"] == "VIRTIO_UNINIT" and not st["connected"]
        assert st["dpdk_state"] == "DPDK_UNINIT" and st["socket"] == ""
        assert sum(peer.reply()) > 0
