"""Port control, config and core sched over ZeroMQ against the real forwarder (vdevs)."""
from __future__ import annotations

import os

import pytest
import zmq

from forwarder.control import handlers
from forwarder.control import virtioforwarder_pb2 as pb
from forwarder.relays import ErrorCode
from vio4wd_tool import fwdctl
from vio4wd_tool.fwdctl import Client, ControlError, port_request

pytestmark = pytest.mark.dpdk
E = ErrorCode
C = handlers.CtlError


def raw(ep: str, frames: list[bytes], timeout: float = 1.0) -> bytes:
    """Send frames as one message from a REQ socket; the reply must come within `timeout`."""
    ctx = zmq.Context.instance()
    s = ctx.socket(zmq.REQ)
    s.setsockopt(zmq.LINGER, 0)
    try:
        s.connect(ep)
        s.send_multipart(frames)
        assert s.poll(int(timeout * 1000)), f"no reply from {ep} within {timeout} s"
        return s.recv()
    finally:
        s.close(0)


def pc(fwd, op, vfs=(), **kw):
    """PortControlResponse of one request (OK or ERROR, not raised)."""
    req = port_request(op, list(vfs), **kw)
    return Client(fwd.ep["port_control"]).request(req, pb.PortControlResponse)


def ok(r):
    assert r.status == pb.PortControlResponse.OK, (r.error_code, r.error_code_source)
    return r


def err(r, code):
    assert r.status == pb.PortControlResponse.ERROR, r
    assert r.error_code == int(code), (r.error_code, r.error_code_source)
    assert r.error_code_source
    return r


def relay(fwd, rid):
    reply = fwdctl.stats(Client(fwd.ep["stats"]), [rid])
    assert [r.id for r in reply.relay] == [rid]
    return reply.relay[0]


def test_add_remove_and_their_errors(fwd):
    ok(pc(fwd, "add", ["net_null0"], relay=1))
    r = relay(fwd, 1)
    assert r.vf.pci_addr_str == "net_null0"
    assert r.vf_to_vm.internal_state == "DPDK_READY" and r.vf_to_vm.active
    assert r.vm_to_vf.internal_state == "VIRTIO_UNINIT" and not r.vm_to_vf.active
    assert r.vhost.vhost_socket_name == os.path.join(fwd.settings["socket_dir"],
                                                     "virtio-forwarder1.sock")
    # conditional (default): a request that changes nothing is fine; strict: ALREADY_ADDED
    ok(pc(fwd, "add", ["net_null0"], relay=1))
    err(pc(fwd, "add", ["net_null0"], relay=1, conditional=False), E.ALREADY_ADDED)
    err(pc(fwd, "add", ["net_null9"], relay=1), E.ALREADY_ADDED)        # another VF
    err(pc(fwd, "add", ["net_null0"], relay=2), E.ALREADY_ADDED)        # VF on relay 1
    err(pc(fwd, "add", ["net_null5"], relay=fwd.max_relays), E.BAD_ID)
    err(pc(fwd, "add", ["net_null5"]), E.BAD_ARGS)                      # no virtio_id
    err(pc(fwd, "add", [], relay=2), E.BAD_ARGS)                        # no VF
    err(pc(fwd, "add", ["net_nosuchdriver0"], relay=2), E.PROBE_FAILED)
    err(pc(fwd, "add", ["0000:00:1f.7"], relay=2), E.PROBE_FAILED)      # no such PCI device
    bad = pb.PortControlRequest(op=pb.PortControlRequest.ADD, virtio_id=2)
    bad.pci_addrs.add(domain=0, bus=0, slot=0x40, function=0)
    r = Client(fwd.ep["port_control"]).request(bad, pb.PortControlResponse)
    err(r, E.BAD_ARGS)
    assert "slot=64" in r.error_code_source
    # QUERY_PCI by the fixed socket path
    sock1 = r1 = relay(fwd, 1).vhost.vhost_socket_name
    assert ok(pc(fwd, "query-pci", vhost_path=sock1)).query_string == "net_null0"
    assert ok(pc(fwd, "query-pci", vhost_path=sock1.replace("1.sock", "2.sock"))) \
        .query_string == ""
    err(pc(fwd, "query-pci", vhost_path="/nonexistent.sock"), E.SOCKET_UNKNOWN)
    err(pc(fwd, "query-pci"), E.BAD_ARGS)
    # REMOVE
    err(pc(fwd, "remove", ["net_null9"], relay=1), E.NOT_ADDED)         # not that VF
    ok(pc(fwd, "remove", ["net_null0"], relay=1))
    assert not relay(fwd, 1).HasField("vf") and r1
    ok(pc(fwd, "remove", relay=1))                                      # conditional no-op
    err(pc(fwd, "remove", relay=1, conditional=False), E.NOT_ADDED)
    err(pc(fwd, "remove", relay=99), E.BAD_ID)
    err(pc(fwd, "remove"), E.BAD_ARGS)
    # socket operations need dynamic sockets
    err(pc(fwd, "add-sock", ["net_null0"], vhost_path="/tmp/x.sock"), E.NOT_DYNAMIC)
    err(pc(fwd, "remove-sock", vhost_path=sock1, conditional=False), E.NOT_DYNAMIC)


def test_bond_of_two_vdevs(fwd):
    ok(pc(fwd, "add", ["net_null2", "net_null3"], relay=3, mode=1))
    r = relay(fwd, 3)
    assert r.vf.pci_addr_str == "net_null2 net_null3"
    assert r.vf_to_vm.internal_state == "DPDK_READY"
    ok(pc(fwd, "add", ["net_null3", "net_null2"], relay=3))              # same set: no-op
    err(pc(fwd, "add", ["net_null6", "net_null7"], relay=4, mode=9), E.BAD_ARGS)
    err(pc(fwd, "add", [f"net_null{i}" for i in range(10, 19)], relay=4), E.BAD_ARGS)
    bond = pb.PortControlRequest(op=pb.PortControlRequest.ADD, virtio_id=4)  # PCI bond, no name
    for fn in (1, 2):
        bond.pci_addrs.add(domain=0, bus=5, slot=0, function=fn)
    err(Client(fwd.ep["port_control"]).request(bond, pb.PortControlResponse), E.BAD_ARGS)
    ok(pc(fwd, "remove", relay=3))
    assert not relay(fwd, 3).HasField("vf")
    # the members are free again
    ok(pc(fwd, "add", ["net_null2"], relay=3))
    ok(pc(fwd, "remove", relay=3))


def test_malformed_frames_get_distinct_errors(fwd):
    ep = fwd.ep["port_control"]
    r = pb.PortControlResponse.FromString(raw(ep, [b"\xff\xff\xff"]))
    err(r, C.BAD_MESSAGE)
    r = pb.PortControlResponse.FromString(raw(ep, [b""]))               # no op: required
    err(r, C.BAD_MESSAGE)
    r = pb.PortControlResponse.FromString(raw(ep, [b"\x08\x09"]))       # op = 9
    err(r, C.UNKNOWN_OP)
    full = port_request("add", ["net_null0"], relay=1).SerializeToString()
    r = pb.PortControlResponse.FromString(raw(ep, [full[:-3]]))         # truncated
    err(r, C.BAD_MESSAGE)
    r = pb.PortControlResponse.FromString(raw(ep, [b"\x08\x00" * 40000]))
    err(r, C.TOO_LARGE)
    r = pb.PortControlResponse.FromString(raw(ep, [full, full]))        # two frames
    err(r, C.BAD_MESSAGE)
    cs = fwd.ep["core_sched"]
    r = pb.CoreSchedResponse.FromString(raw(cs, [b"\x08\x05"]))
    assert r.status == pb.CoreSchedResponse.ERROR and r.error_code == C.UNKNOWN_OP
    r = pb.CoreSchedResponse.FromString(raw(cs, [b"\x12\x02\x08"]))
    assert r.status == pb.CoreSchedResponse.ERROR and r.error_code == C.BAD_MESSAGE
    r = pb.ConfigResponse.FromString(raw(fwd.ep["config"], [b"\x0a"]))
    assert r.status == pb.ConfigResponse.EBADR
    r = pb.StatsResponse.FromString(raw(fwd.ep["stats"], [b"\x18"]))
    assert r.status == pb.StatsResponse.EBADR


def test_config_and_core_sched(fwd):
    cfg, cs = Client(fwd.ep["config"]), Client(fwd.ep["core_sched"])
    assert fwdctl.core_sched(cs) == fwd.workers == [1]
    m = fwdctl.relay_cpu_map(cfg)
    assert sorted(m) == list(range(fwd.max_relays))
    assert all(v == (1, 1) for v in m.values())
    assert fwdctl.core_sched(cs, {0: (1, 1), 5: (1, 1)}) == []
    for mapping, code in (({0: (0, 1)}, E.BAD_CPU), ({0: (1, 7)}, E.BAD_CPU),
                          ({fwd.max_relays: (1, 1)}, E.BAD_ID), ({-1: (1, 1)}, E.BAD_ID)):
        with pytest.raises(ControlError, match=rf"error {int(code)} \({code.name}\)"):
            fwdctl.core_sched(cs, mapping)
    dup = pb.CoreSchedRequest(op=pb.CoreSchedRequest.UPDATE)
    dup.relay_cpu_map.add(relay_number=1, vf2virtio_cpu=1, virtio2vf_cpu=1)
    dup.relay_cpu_map.add(relay_number=1, vf2virtio_cpu=1, virtio2vf_cpu=1)
    r = cs.request(dup, pb.CoreSchedResponse)
    assert r.status == pb.CoreSchedResponse.ERROR and r.error_code == E.BAD_ARGS


def test_dynamic_sockets(start_fwd):
    f = start_fwd(dynamic_sockets=True, max_relays=2)
    sd = f.tmp / "dyn"
    sd.mkdir()
    a, b, c = (str(sd / f"{n}.sock") for n in "abc")
    ok(pc(f, "add-sock", ["net_null0"], vhost_path=a))
    assert os.path.exists(a)
    ok(pc(f, "add-sock", ["net_null0"], vhost_path=a))                  # conditional no-op
    err(pc(f, "add-sock", ["net_null0"], vhost_path=a, conditional=False), E.SOCKET_REGISTERED)
    err(pc(f, "add-sock", ["net_null1"], vhost_path=a), E.SOCKET_REGISTERED)
    err(pc(f, "add-sock", ["net_null0"]), E.BAD_ARGS)                   # no path
    assert ok(pc(f, "query-pci", vhost_path=a)).query_string == "net_null0"
    ok(pc(f, "add-sock", ["net_null1", "net_null2"], vhost_path=b))     # a bond
    assert ok(pc(f, "query-pci", vhost_path=b)).query_string == "net_null1 net_null2"
    err(pc(f, "add-sock", ["net_null3"], vhost_path=c), E.NO_FREE_RELAY)
    st = fwdctl.stats(Client(f.ep["stats"]))
    assert {r.vhost.vhost_socket_name for r in st.relay} == {a, b}
    ok(pc(f, "remove-sock", ["net_null0"]))                             # by VF
    assert not os.path.exists(a)
    err(pc(f, "remove-sock", vhost_path=a, conditional=False), E.SOCKET_UNKNOWN)
    ok(pc(f, "remove-sock", vhost_path=a))                              # conditional no-op
    err(pc(f, "remove-sock"), E.BAD_ARGS)
    ok(pc(f, "remove-sock", vhost_path=b))
    err(pc(f, "query-pci", vhost_path=b), E.SOCKET_UNKNOWN)
    ok(pc(f, "add-sock", vhost_path=c))                                 # a socket without VF
    assert ok(pc(f, "query-pci", vhost_path=c)).query_string == ""


def test_error_table_is_complete_and_distinct():
    codes = [int(c) for c in ErrorCode] + [int(c) for c in handlers.CtlError]
    assert len(codes) == len(set(codes))
    for c in codes:
        assert f" {c:>3}  {handlers.ERROR_TABLE[c]}" in handlers.__doc__.replace("\n", " \n")


def test_pci_addresses_are_normalised():
    req = port_request("add", ["0000:0A:1F.7"], relay=1)
    a = req.pci_addrs[0]
    assert (a.domain, a.bus, a.slot, a.function) == (0, 10, 31, 7)
    assert handlers.pci_str(a) == "0000:0a:1f.7"
    assert handlers.same_vfs(["0:a:1f.7"], ["0000:0A:1F.7"])
    assert not handlers.same_vfs(["0000:0a:1f.6"], ["0000:0a:1f.7"])


def test_ipc_sockets_are_0660(fwd):
    for kind in ("config", "port_control", "stats", "core_sched"):
        path = fwd.ep[kind][len("ipc://"):]
        assert os.stat(path).st_mode & 0o777 == 0o660, kind
