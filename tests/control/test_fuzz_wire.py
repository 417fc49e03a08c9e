"""Fuzzing every endpoint with random and mutated frames; a second proto2 implementation
(hand-written wire encoding from the field table of issue 5) round-trips with the forwarder."""
from __future__ import annotations

import random
import struct
import time

import pytest
import zmq

from forwarder.control import virtioforwarder_pb2 as pb
from vio4wd_tool import fwdctl
from vio4wd_tool.fwdctl import Client, port_request

from testlib import wait_for

pytestmark = pytest.mark.dpdk
FRAMES_PER_ENDPOINT = 1500
BATCH = 50

SEEDS = {
    "port_control": [port_request(op, vfs, **kw).SerializeToString() for op, vfs, kw in (
        ("add", ["net_null4"], {"relay": 4}), ("remove", [], {"relay": 4, "conditional": False}),
        ("add", ["0000:05:00.1", "0000:05:00.2"], {"relay": 5, "bond_name": "b0", "mode": 4}),
        ("query-pci", [], {"vhost_path": "/tmp/x.sock"}),
        ("add-sock", ["net_null5"], {"vhost_path": "/tmp/y.sock"}),
        ("remove-sock", [], {"vhost_path": "/tmp/y.sock"}))],
    "stats": [pb.StatsRequest(relay=[0, 1, 7], include_inactive=False, delay=3)
              .SerializeToString(), pb.StatsRequest().SerializeToString(),
              pb.StatsRequest(relay=list(range(8)), delay=0).SerializeToString()],
    "config": [b""],
    "core_sched": [pb.CoreSchedRequest(op=pb.CoreSchedRequest.GET_EAL_CORES).SerializeToString(),
                   _u.SerializeToString() if (_u := pb.CoreSchedRequest(
                       op=pb.CoreSchedRequest.UPDATE)).relay_cpu_map.add(
                       relay_number=3, vf2virtio_cpu=1, virtio2vf_cpu=1) else b""],
}


def mutate(rng: random.Random, seed: bytes) -> bytes:
    b = bytearray(seed)
    for _ in range(rng.randint(1, 4)):
        choice = rng.random()
        if choice < 0.35 and b:
            b[rng.randrange(len(b))] = rng.randrange(256)
        elif choice < 0.55 and b:
            del b[rng.randrange(len(b)):]                       # truncate
        elif choice < 0.75:
            pos = rng.randint(0, len(b))
            b[pos:pos] = rng.randbytes(rng.randint(1, 8))
        elif choice < 0.9 and b:
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
        else:
            b += bytes(b)                                       # repeated fields
    return bytes(b)


def frames(rng: random.Random, kind: str, n: int):
    for i in range(n):
        r = rng.random()
        if r < 0.4:
            yield [rng.randbytes(rng.randint(0, 64))]
        elif r < 0.9:
            yield [mutate(rng, rng.choice(SEEDS[kind]))]
        elif r < 0.95:
            yield [rng.choice(SEEDS[kind]), rng.randbytes(3)]   # two frames
        else:
            yield [rng.randbytes(70_000)]                       # oversized


def touches_flow(kind: str, data: list[bytes]) -> bool:
    """Would this frame legitimately detach relay 0's VF (so 'still forwarding' tests it)?"""
    if kind != "port_control" or len(data) != 1:
        return False
    m = pb.PortControlRequest()
    try:
        m.ParseFromString(data[0])
    except Exception:
        return False
    return m.IsInitialized() and m.virtio_id == 0 and m.HasField("virtio_id")


def stats_delay(data: list[bytes]) -> float:
    m = pb.StatsRequest()
    try:
        m.ParseFromString(data[0])
    except Exception:
        return 0.0
    return m.delay / 1000.0 if m.delay <= 10_000 else 0.0


def test_fuzz_every_endpoint(fwd):
    pc = Client(fwd.ep["port_control"])
    assert pc.request(port_request("add", ["net_null0"], relay=0), pb.PortControlResponse) \
        .status == pb.PortControlResponse.OK
    st = Client(fwd.ep["stats"])
    wait_for(lambda: fwdctl.stats(st, [0]).relay[0].vf_to_vm.pkts_rx_from_vf > 0)
    rng = random.Random(0x5EED)
    ctx = zmq.Context.instance()
    total = 0
    for kind in ("port_control", "stats", "config", "core_sched"):
        s = ctx.socket(zmq.DEALER)            # pipelined requests, REQ-style envelope
        s.setsockopt(zmq.LINGER, 0)
        s.connect(fwd.ep[kind])
        try:
            batch: list[list[bytes]] = []
            for data in frames(rng, kind, FRAMES_PER_ENDPOINT):
                if touches_flow(kind, data):
                    continue
                batch.append(data)
                if len(batch) == BATCH:
                    total += _send_batch(s, kind, batch)
                    batch = []
            if batch:
                total += _send_batch(s, kind, batch)
        finally:
            s.close(0)
    print(f"{total} fuzz frames answered")
    assert total > 4 * FRAMES_PER_ENDPOINT * 0.9
    # the forwarder is alive and still forwarding, the endpoints still answer properly
    assert fwd.alive()
    c0 = fwdctl.stats(st, [0]).relay[0].vf_to_vm.pkts_rx_from_vf
    wait_for(lambda: fwdctl.stats(st, [0]).relay[0].vf_to_vm.pkts_rx_from_vf > c0,
             what="relay 0 still forwarding")
    assert fwdctl.core_sched(Client(fwd.ep["core_sched"])) == [1]


def _send_batch(s, kind: str, batch: list[list[bytes]]) -> int:
    t0 = time.monotonic()
    for data in batch:
        s.send_multipart([b"", *data])
    deadline = t0 + 1.0 + max((stats_delay(d) for d in batch), default=0) \
        if kind == "stats" else t0 + 1.0
    replies = 0
    while replies < len(batch):
        left = deadline - time.monotonic()
        assert left > 0 and s.poll(int(left * 1000) + 1), \
            f"{kind}: only {replies} of {len(batch)} requests answered within the deadline"
        frames_ = s.recv_multipart()
        assert frames_[0] == b"" and len(frames_) == 2
        _check_reply(kind, frames_[1])
        replies += 1
    return replies


def _check_reply(kind: str, data: bytes) -> None:
    cls = {"port_control": pb.PortControlResponse, "stats": pb.StatsResponse,
           "config": pb.ConfigResponse, "core_sched": pb.CoreSchedResponse}[kind]
    m = cls()
    m.ParseFromString(data)
    assert m.IsInitialized()


# ---------------------------------------------------------------------------------------------
# a second proto2 implementation: hand-written wire format from the field table

def varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def key(field: int, wt: int) -> bytes:
    return varint(field << 3 | wt)


def vint(field: int, n: int) -> bytes:
    return key(field, 0) + varint(n)


def ldelim(field: int, data: bytes) -> bytes:
    return key(field, 2) + varint(len(data)) + data


def decode(data: bytes) -> list[tuple[int, int, object]]:
    """(field, wire type, value) of one message level; bytes for length-delimited."""
    out, i = [], 0
    while i < len(data):
        k, i = _rvarint(data, i)
        field, wt = k >> 3, k & 7
        if wt == 0:
            v, i = _rvarint(data, i)
        elif wt == 2:
            n, i = _rvarint(data, i)
            v, i = data[i:i + n], i + n
        elif wt == 5:
            v, i = struct.unpack_from("<f", data, i)[0], i + 4
        elif wt == 1:
            v, i = struct.unpack_from("<Q", data, i)[0], i + 8
        else:
            raise ValueError(f"wire type {wt}")
        out.append((field, wt, v))
    return out


def _rvarint(data: bytes, i: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        b = data[i]
        i += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, i


def fields(data: bytes) -> dict[int, list]:
    d: dict[int, list] = {}
    for f, _, v in decode(data):
        d.setdefault(f, []).append(v)
    return d


def raw_req(ep: str, data: bytes) -> bytes:
    s = zmq.Context.instance().socket(zmq.REQ)
    s.setsockopt(zmq.LINGER, 0)
    try:
        s.connect(ep)
        s.send(data)
        assert s.poll(2000)
        return s.recv()
    finally:
        s.close(0)


def test_hand_encoded_messages_round_trip(fwd):
    # PortControlRequest ADD (op=1 ADD=0, virtio_id=3, name=5 devargs), conditional=4 false
    add = vint(1, 0) + vint(3, 6) + vint(4, 0) + ldelim(5, b"net_null6")
    assert add == port_request("add", ["net_null6"], relay=6, conditional=False) \
        .SerializeToString()
    resp = fields(raw_req(fwd.ep["port_control"], add))
    assert resp == {4: [1]}                                     # status=4: OK
    resp = fields(raw_req(fwd.ep["port_control"], add))         # again, strict: ALREADY_ADDED
    assert resp[4] == [0] and resp[5] == [2] and b"already has VF" in resp[6][0]
    # a PCI bond request: pci_addrs=2 nested {domain=1, bus=2, slot=3, function=4}
    pci = ldelim(2, vint(1, 0) + vint(2, 0x0A) + vint(3, 0x1F) + vint(4, 7))
    q = vint(1, 0) + pci + pci + vint(3, 7) + ldelim(5, b"bondx") + vint(6, 2)
    parsed = pb.PortControlRequest.FromString(q)
    assert [(a.bus, a.slot, a.function) for a in parsed.pci_addrs] == [(10, 31, 7)] * 2
    assert parsed.name == "bondx" and parsed.mode == 2 and parsed.conditional is True
    # StatsRequest: relay=1 packed [6], include_inactive=2, delay=3
    req = ldelim(1, varint(6)) + vint(2, 1) + vint(3, 20)
    resp = fields(raw_req(fwd.ep["stats"], req))
    assert resp[1] == [0] and len(resp[2]) == 1                 # OK, one RelayState
    rs = fields(resp[2][0])
    assert rs[1] == [6] and rs[2] == [0] and 9 in rs             # id, active, socket_id
    assert fields(rs[6][0])[1] == [b"net_null6"]   # vf.pci_addr_str
    assert fields(rs[5][0])[1][0].endswith(b"virtio-forwarder6.sock")  # vhost
    up = fields(rs[7][0])
    assert up[1] == [1] and up[2] == [b"DPDK_READY"]             # active, internal_state
    assert up[3][0] > 0 and up[4][0] == 64 * up[3][0]           # pkts/bytes rx from vf
    assert up[11][0] > 0 and all(f in up for f in (12, 13, 14))  # float rates (wire type 5)
    down = fields(rs[8][0])
    assert down[2] == [b"VIRTIO_UNINIT"] and down[11] == [0.0]
    # ConfigRequest (empty) -> status=1 OK, relay_cpu_map=5 {relay_number=1, cpus=2,3}
    cfg = fields(raw_req(fwd.ep["config"], b""))
    assert cfg[1] == [0] and 2 not in cfg and 3 not in cfg and 4 not in cfg
    assert fields(cfg[5][6]) == {1: [6], 2: [1], 3: [1]}
    # CoreSchedRequest UPDATE op=1 (0), relay_cpu_map=2, then GET_EAL_CORES -> eal_cores=7
    upd = vint(1, 0) + ldelim(2, vint(1, 6) + vint(2, 1) + vint(3, 1))
    assert fields(raw_req(fwd.ep["core_sched"], upd)) == {4: [1]}
    bad = vint(1, 0) + ldelim(2, vint(1, 6) + vint(2, 1) + vint(3, 0xFFFFFFFF))  # int32 -1
    r = fields(raw_req(fwd.ep["core_sched"], bad))
    assert r[4] == [0] and r[5] == [8]                          # ERROR, BAD_CPU
    eal = fields(raw_req(fwd.ep["core_sched"], vint(1, 1)))
    assert eal[4] == [1] and eal[7] == [1]
    remove = vint(1, 1) + vint(3, 6)
    assert fields(raw_req(fwd.ep["port_control"], remove)) == {4: [1]}
