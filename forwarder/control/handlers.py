"""The four request handlers: port control, stats, config, core sched.

Each handler takes the request frame's bytes and returns the reply's bytes (or, for stats with a
`delay`, a `transport.Deferred`).  They call the forwarder's relay API (`forwarder.relays.
Forwarder`, thread-safe) and never touch the data plane themselves.

Error codes
===========
`PortControlResponse.error_code` and `CoreSchedResponse.error_code` (with `status = ERROR`) are
one table; `error_code_source` names the operation/stage that failed and the reason in words.

====  ==================  ===================================================================
code  name                when
====  ==================  ===================================================================
   1  BAD_ID              virtio_id / relay_number out of range 0..max_relays-1
   2  ALREADY_ADDED       ADD: the relay already has a (different) VF, or the VF is on another
                          relay; with conditional=false also the same VF on the same relay
   3  PROBE_FAILED        DPDK could not probe/start the device or create the bond
   4  NOT_ADDED           REMOVE: the relay has no VF (conditional=false), or not the VF named
   5  NO_FREE_RELAY       ADD_SOCK: every relay has a socket
   6  SOCKET_REGISTERED   ADD_SOCK: the path is already registered (conditional=false, or with
                          another VF)
   7  SOCKET_UNKNOWN      REMOVE_SOCK / QUERY_PCI: no relay has this socket path / VF
   8  BAD_CPU             core sched UPDATE: a CPU is not a worker (GET_EAL_CORES lists them)
   9  BAD_ARGS            a field is missing or wrong: no virtio_id for ADD/REMOVE, no PCI
                          address/devargs, PCI fields out of range, bond without a name, bond
                          of more than 8, mode not 0-6, no vhost_path, a relay twice in UPDATE
  10  NOT_DYNAMIC         ADD_SOCK / REMOVE_SOCK without dynamic sockets (-d)
  11  BUSY                the data plane did not answer in time (a worker did not hand over)
 100  BAD_MESSAGE         the frame is not a valid message (garbage, truncated, required field
                          missing, several frames)
 101  TOO_LARGE           the frame is larger than 64 KiB
 102  UNKNOWN_OP          an op this forwarder does not know
 103  INTERNAL            an unexpected failure (logged with a traceback)
====  ==================  ===================================================================

Codes 1-11 are `forwarder.relays.ErrorCode`; 100-103 belong to the control plane.  Stats and
config replies have no error code: they answer `EBADR` (bad request, any of 100-103 above),
`E2BIG` (stats: more relay ids than relays) or `ENOMEM`.

VFs over port control
=====================
`pci_addrs` carries PCI VFs (one = a VF, several + `name` = a bond, `mode` 0-6, default 1).
Devices that have no PCI address (DPDK vdevs, used by labs and tests) go in `name` when
`pci_addrs` is empty: DPDK devargs, e.g. ``net_tap0,iface=vf0``; several separated by spaces
form a bond named ``bond_<first device name>`` (e.g. ``net_null0 net_null1`` ->
``bond_net_null0``).  PCI addresses are normalised (lower-case hex, 4-digit domain) before they
are compared, so ``0000:0A:00.1`` and ``0:a:0.1`` are the same VF.
"""
from __future__ import annotations

import enum
import logging
import re
import time
from typing import Callable

from google.protobuf import unknown_fields
from google.protobuf.message import DecodeError, Message

from .. import config
from ..relays import ErrorCode, RelayError, RelayStatus
from . import virtioforwarder_pb2 as pb
from .transport import Deferred

log = logging.getLogger("vio4wd.control")

MAX_DELAY_MS = 10_000      # a longer stats window is a bad request (EBADR)


class CtlError(enum.IntEnum):
    """Control-plane error codes beyond `relays.ErrorCode` (see the table above)."""
    BAD_MESSAGE = 100
    TOO_LARGE = 101
    UNKNOWN_OP = 102
    INTERNAL = 103


# transport error names -> codes
_TRANSPORT = {"EBADMSG": CtlError.BAD_MESSAGE, "EMSGSIZE": CtlError.TOO_LARGE,
              "EIO": CtlError.INTERNAL}

ERROR_TABLE: dict[int, str] = {**{int(c): c.name for c in ErrorCode},
                               **{int(c): c.name for c in CtlError}}


class UnknownOp(DecodeError):
    """The `op` field (number 1) holds a value the Op enum does not know."""


def parse(cls: type[Message], data: bytes) -> Message:
    """Parse a proto2 message; DecodeError on garbage or truncation, also when a required field
    is missing (the upb runtime's ParseFromString does not check that itself); UnknownOp when
    `op` is an unknown enum value (proto2 keeps it as an unknown field)."""
    msg = cls()
    msg.ParseFromString(data)
    if not msg.IsInitialized():
        if "op" in cls.DESCRIPTOR.fields_by_name and not msg.HasField("op"):
            for f in unknown_fields.UnknownFieldSet(msg):
                if f.field_number == 1 and f.wire_type == 0:
                    raise UnknownOp(f"op {f.data} is not a known operation")
        raise DecodeError("required fields missing: " + ", ".join(msg.FindInitializationErrors()))
    return msg


def pci_str(a) -> str:
    """A PciAddress message -> 'dddd:bb:dd.f' (lower case); RelayError(BAD_ARGS) if a field is
    out of range."""
    if a.domain > 0xFFFF or a.bus > 0xFF or a.slot > 0x1F or a.function > 7:
        raise RelayError(ErrorCode.BAD_ARGS, f"PCI address domain={a.domain} bus={a.bus} "
                         f"slot={a.slot} function={a.function}: out of range (domain <= 0xffff, "
                         "bus <= 0xff, slot <= 0x1f, function <= 7)")
    return "%04x:%02x:%02x.%x" % (a.domain, a.bus, a.slot, a.function)


def vf_specs(req) -> tuple[list[str], str]:
    """The VF specs and bond name of a PortControlRequest (see 'VFs over port control')."""
    if req.pci_addrs:
        return [pci_str(a) for a in req.pci_addrs], req.name
    words = req.name.split()
    if not words:
        return [], ""
    bond = ""
    if len(words) > 1:
        bond = "bond_" + re.sub(r"[^A-Za-z0-9_]", "_", words[0].split(",")[0])
    return words, bond


def same_vfs(a: list[str], b: list[str]) -> bool:
    def norm(v: str) -> str:
        return config.normalise_pci(v) or v.strip()
    return sorted(map(norm, a)) == sorted(map(norm, b))


# ---------------------------------------------------------------------------------------------
# port control

class PortControl:
    def __init__(self, fwd):
        self.fwd = fwd

    @staticmethod
    def error(code: int, source: str) -> bytes:
        return pb.PortControlResponse(status=pb.PortControlResponse.ERROR, error_code=int(code),
                                      error_code_source=source).SerializeToString()

    def transport_error(self, name: str, source: str) -> bytes:
        return self.error(_TRANSPORT.get(name, CtlError.INTERNAL), source)

    def __call__(self, data: bytes) -> bytes:
        try:
            req = parse(pb.PortControlRequest, data)
        except UnknownOp as exc:
            return self.error(CtlError.UNKNOWN_OP, f"PortControlRequest: {exc}")
        except DecodeError as exc:
            return self.error(CtlError.BAD_MESSAGE, f"parse PortControlRequest: {exc}")
        op = pb.PortControlRequest.Op.Name(req.op)
        handler: Callable = getattr(self, f"op_{op.lower()}")
        try:
            reply = handler(req) or pb.PortControlResponse(status=pb.PortControlResponse.OK)
        except RelayError as exc:
            log.info("port control %s: %s", op, exc)
            return self.error(exc.code, f"{op}: {exc}")
        return reply.SerializeToString()

    def _relay_id(self, req, op: str) -> int:
        if not req.HasField("virtio_id"):
            raise RelayError(ErrorCode.BAD_ARGS, f"{op} needs virtio_id")
        if req.virtio_id >= self.fwd.max_relays:
            raise RelayError(ErrorCode.BAD_ID, f"virtio_id {req.virtio_id}: expected 0.."
                             f"{self.fwd.max_relays - 1}")
        return req.virtio_id

    def _mode(self, req) -> int:
        return req.mode if req.HasField("mode") else config.DEFAULT_BOND_MODE

    def op_add(self, req):
        rid = self._relay_id(req, "ADD")
        vfs, bond = vf_specs(req)
        if not vfs:
            raise RelayError(ErrorCode.BAD_ARGS, "ADD needs pci_addrs (or vdev devargs in name)")
        st = self.fwd.status(rid)
        if st.vf and same_vfs(st.vf.split(), vfs) and req.conditional:
            return None     # nothing would change
        self.fwd.add_vf(rid, vfs, bond, self._mode(req))
        return None

    def op_remove(self, req):
        rid = self._relay_id(req, "REMOVE")
        vfs, _ = vf_specs(req)
        st = self.fwd.status(rid)
        if not st.vf:
            if req.conditional:
                return None
            raise RelayError(ErrorCode.NOT_ADDED, f"relay {rid} has no VF")
        if vfs and not set(map(_norm, vfs)) <= set(map(_norm, st.vf.split())):
            raise RelayError(ErrorCode.NOT_ADDED, f"relay {rid} has VF {st.vf}, not "
                             f"{' '.join(vfs)}")
        self.fwd.remove_vf(rid)
        return None

    def op_add_sock(self, req):
        if not req.vhost_path:
            raise RelayError(ErrorCode.BAD_ARGS, "ADD_SOCK needs vhost_path")
        vfs, bond = vf_specs(req)
        if req.conditional:
            rid = self.fwd.relay_by_socket(req.vhost_path)
            if rid is not None:
                st = self.fwd.status(rid)
                if same_vfs(st.vf.split(), vfs):
                    return None
        self.fwd.add_socket(req.vhost_path, vfs or None, bond, self._mode(req))
        return None

    def op_remove_sock(self, req):
        vfs, _ = vf_specs(req)
        path = req.vhost_path or None
        if path is None and not vfs:
            raise RelayError(ErrorCode.BAD_ARGS, "REMOVE_SOCK needs vhost_path and/or a VF")
        try:
            self.fwd.remove_socket(path, vfs[0] if vfs else None)
        except RelayError as exc:
            if exc.code == ErrorCode.SOCKET_UNKNOWN and req.conditional:
                return None
            raise
        return None

    def op_query_pci(self, req):
        if not req.vhost_path:
            raise RelayError(ErrorCode.BAD_ARGS, "QUERY_PCI needs vhost_path")
        vf = self.fwd.query_vf(req.vhost_path)
        if vf is None:
            raise RelayError(ErrorCode.SOCKET_UNKNOWN, f"no relay has socket {req.vhost_path}")
        return pb.PortControlResponse(status=pb.PortControlResponse.OK, query_string=vf)


def _norm(v: str) -> str:
    return config.normalise_pci(v) or v.strip()


# ---------------------------------------------------------------------------------------------
# stats

VF2VM_FIELDS = ("pkts_rx_from_vf", "bytes_rx_from_vf", "pkts_tx_to_vm", "bytes_tx_to_vm",
                "pkts_dropped_vm_queue_full", "bytes_dropped_vm_queue_full",
                "pkts_dropped_vm_not_connected", "bytes_dropped_vm_not_connected")
VM2VF_FIELDS = ("pkts_rx_from_vm", "bytes_rx_from_vm", "pkts_tx_to_vf", "bytes_tx_to_vf",
                "pkts_dropped_vf_queue_full", "bytes_dropped_vf_queue_full",
                "pkts_dropped_vf_not_connected", "bytes_dropped_vf_not_connected")
DIR_STATS = ("rx_pkts", "rx_bytes", "tx_pkts", "tx_bytes", "drop_full_pkts", "drop_full_bytes",
             "drop_nc_pkts", "drop_nc_bytes")
# rate fields: (proto field, DirStats counter)
VF2VM_RATES = (("pkt_rate_rx_from_vf", "rx_pkts"), ("byte_rate_rx_from_vf", "rx_bytes"),
               ("pkt_rate_tx_to_vm", "tx_pkts"), ("byte_rate_tx_to_vm", "tx_bytes"))
VM2VF_RATES = (("pkt_rate_rx_from_vm", "rx_pkts"), ("byte_rate_rx_from_vm", "rx_bytes"),
               ("pkt_rate_tx_to_vf", "tx_pkts"), ("byte_rate_tx_to_vf", "tx_bytes"))


def relay_state(st: RelayStatus, before: RelayStatus | None = None,
                seconds: float = 0.0) -> pb.RelayState:
    """One RelayState; rates over `seconds` since `before` (this client's own baseline)."""
    rs = pb.RelayState(id=st.id, active=st.active, socket_id=max(st.numa_node, 0))
    rs.vhost.vhost_socket_name = st.socket
    if st.vf:
        rs.vf.pci_addr_str = st.vf
    if st.cpu[0] >= 0:
        rs.cpu.vf_to_vm = st.cpu[0]
    if st.cpu[1] >= 0:
        rs.cpu.vm_to_vf = st.cpu[1]
    for msg, stats, old, names, rates, active, state in (
            (rs.vf_to_vm, st.vf2vm, before.vf2vm if before else None, VF2VM_FIELDS, VF2VM_RATES,
             st.dpdk_state == "DPDK_READY", st.dpdk_state),
            (rs.vm_to_vf, st.vm2vf, before.vm2vf if before else None, VM2VF_FIELDS, VM2VF_RATES,
             st.virtio_state == "VIRTIO_READY", st.virtio_state)):
        msg.active = active
        msg.internal_state = state
        for name, counter in zip(names, DIR_STATS):
            setattr(msg, name, getattr(stats, counter))
        for name, counter in rates:
            rate = 0.0
            if old is not None and seconds > 0:
                rate = max(0, getattr(stats, counter) - getattr(old, counter)) / seconds
            setattr(msg, name, rate)
    return rs


class Stats:
    """Counters now, or rates over the client's `delay`: the first snapshot is taken when the
    request arrives, the reply is sent (with the second snapshot) when the window closes; the
    endpoint serves other clients meanwhile.  No state is shared between requests."""

    def __init__(self, fwd, clock: Callable[[], float] = time.monotonic):
        self.fwd = fwd
        self.clock = clock

    @staticmethod
    def error(status: int) -> bytes:
        return pb.StatsResponse(status=status).SerializeToString()

    def transport_error(self, name: str, source: str) -> bytes:
        return self.error(pb.StatsResponse.EBADR)

    def __call__(self, data: bytes):
        try:
            req = parse(pb.StatsRequest, data)
        except DecodeError:
            return self.error(pb.StatsResponse.EBADR)
        if len(req.relay) > self.fwd.max_relays:
            return self.error(pb.StatsResponse.E2BIG)
        if req.delay > MAX_DELAY_MS:
            return self.error(pb.StatsResponse.EBADR)
        ids = sorted(set(req.relay)) if req.relay else None
        include_inactive = req.include_inactive
        t0 = self.clock()
        first = {s.id: s for s in self.fwd.statuses(ids)}
        if req.delay == 0:
            return self._reply(first, None, 0.0, include_inactive)

        def finish() -> bytes:
            return self._reply({s.id: s for s in self.fwd.statuses(ids)}, first,
                               self.clock() - t0, include_inactive)
        return Deferred(t0 + req.delay / 1000.0, finish)

    @staticmethod
    def _reply(now: dict[int, RelayStatus], before: dict[int, RelayStatus] | None,
               seconds: float, include_inactive: bool) -> bytes:
        resp = pb.StatsResponse(status=pb.StatsResponse.OK)
        for rid in sorted(now):
            st = now[rid]
            if not include_inactive and not st.active:
                continue
            resp.relay.append(relay_state(st, before.get(rid) if before else None, seconds))
        return resp.SerializeToString()


# ---------------------------------------------------------------------------------------------
# config

class Config:
    def __init__(self, fwd):
        self.fwd = fwd

    def transport_error(self, name: str, source: str) -> bytes:
        return pb.ConfigResponse(status=pb.ConfigResponse.EBADR).SerializeToString()

    def __call__(self, data: bytes) -> bytes:
        try:
            parse(pb.ConfigRequest, data)
        except DecodeError:
            return pb.ConfigResponse(status=pb.ConfigResponse.EBADR).SerializeToString()
        resp = pb.ConfigResponse(status=pb.ConfigResponse.OK)
        for rid, (a, b) in sorted(self.fwd.cpu_map().items()):
            resp.relay_cpu_map.add(relay_number=rid, vf2virtio_cpu=a, virtio2vf_cpu=b)
        return resp.SerializeToString()


# ---------------------------------------------------------------------------------------------
# core sched

class CoreSched:
    def __init__(self, fwd):
        self.fwd = fwd

    @staticmethod
    def error(code: int, source: str) -> bytes:
        return pb.CoreSchedResponse(status=pb.CoreSchedResponse.ERROR, error_code=int(code),
                                    error_code_source=source).SerializeToString()

    def transport_error(self, name: str, source: str) -> bytes:
        return self.error(_TRANSPORT.get(name, CtlError.INTERNAL), source)

    def __call__(self, data: bytes) -> bytes:
        try:
            req = parse(pb.CoreSchedRequest, data)
        except UnknownOp as exc:
            return self.error(CtlError.UNKNOWN_OP, f"CoreSchedRequest: {exc}")
        except DecodeError as exc:
            return self.error(CtlError.BAD_MESSAGE, f"parse CoreSchedRequest: {exc}")
        if req.op == pb.CoreSchedRequest.GET_EAL_CORES:
            return pb.CoreSchedResponse(status=pb.CoreSchedResponse.OK,
                                        eal_cores=list(self.fwd.workers)).SerializeToString()
        if req.op != pb.CoreSchedRequest.UPDATE:
            return self.error(CtlError.UNKNOWN_OP, f"op {req.op}")
        try:
            mapping = validate_update(req.relay_cpu_map, self.fwd.max_relays, self.fwd.workers)
            self.fwd.move(mapping)
        except RelayError as exc:
            log.info("core sched UPDATE rejected: %s", exc)
            return self.error(exc.code, f"UPDATE: {exc}")
        log.info("core sched UPDATE: %s", mapping)
        return pb.CoreSchedResponse(status=pb.CoreSchedResponse.OK).SerializeToString()


def validate_update(entries, max_relays: int, workers: list[int]) -> dict[int, tuple[int, int]]:
    """Every entry checked before anything moves: relay id in range, once, both CPUs workers."""
    mapping: dict[int, tuple[int, int]] = {}
    for e in entries:
        if not 0 <= e.relay_number < max_relays:
            raise RelayError(ErrorCode.BAD_ID, f"relay_number {e.relay_number}: expected 0.."
                             f"{max_relays - 1}")
        if e.relay_number in mapping:
            raise RelayError(ErrorCode.BAD_ARGS, f"relay_number {e.relay_number} given twice")
        for cpu in (e.vf2virtio_cpu, e.virtio2vf_cpu):
            if cpu not in workers:
                raise RelayError(ErrorCode.BAD_CPU, f"relay {e.relay_number}: CPU {cpu} is not "
                                 f"a worker (workers: {workers})")
        mapping[e.relay_number] = (e.vf2virtio_cpu, e.virtio2vf_cpu)
    return mapping
