"""Clients of the running forwarder's ZeroMQ control plane (wire-compatible with virtio-forwarder).

Sub-commands (each takes `--endpoint` to override the forwarder's endpoint and `--timeout`):

* `vio4wd-tool ports add|remove|add-sock|remove-sock|query-pci` - port control;
* `vio4wd-tool stats` - counters and rates: flat `relay_<id>.<section>.<field>=<value>` lines as
  the original's `virtioforwarder_stats.py` prints them (default), `--table`, `--json`, and
  `--watch [SECONDS]` redrawing with live rates;
* `vio4wd-tool fwd-config` - the forwarder's live relay -> CPU map (the ConfigRequest);
* `vio4wd-tool relay-pin` - move relay directions between worker CPUs (CoreSchedRequest UPDATE),
  `relay-pin --cores` lists the worker CPUs (GET_EAL_CORES).

Naming: `config` and `pin` are host actions of vio4wd-tool already (rendering
/etc/default/virtioforwarder, IRQ pinning), so the forwarder's config query is `fwd-config` and
relay CPU moves are `relay-pin`.

Endpoints default to VIRTIOFWD_ZMQ_*_EP of /etc/default/virtioforwarder when set there, else
`ipc:///var/run/virtio-forwarder/{config,port_control,stats,core_sched}`.

VF arguments: a PCI address (`0000:05:08.1`, `5:8.1`) or DPDK devargs of a virtual device
(`net_tap0,iface=vf0`); several VFs make a bond (`--bond-name`, `--mode`).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ENV_FILE = Path("/etc/default/virtioforwarder")
ENDPOINT_VARS = {"config": "VIRTIOFWD_ZMQ_CONFIG_EP", "port_control": "VIRTIOFWD_ZMQ_PORT_CONTROL_EP",
                 "stats": "VIRTIOFWD_ZMQ_STATS_EP", "core_sched": "VIRTIOFWD_ZMQ_CORE_SCHED_EP"}
EXIT_FAILED = 1        # the forwarder answered with an error
EXIT_UNREACHABLE = 3   # the forwarder is not running / not answering


class ControlError(Exception):
    """The forwarder answered a request with an error."""


class Unreachable(Exception):
    """No forwarder answers on the endpoint."""


def pb():
    from forwarder.control import virtioforwarder_pb2
    return virtioforwarder_pb2


def default_endpoint(kind: str, env_file: Path = ENV_FILE) -> str:
    from forwarder.config import DEFAULT_ZMQ, read_env_file
    try:
        env = read_env_file(env_file) if env_file.exists() else {}
    except (OSError, ValueError):
        env = {}
    value = env.get(ENDPOINT_VARS[kind])
    return value if isinstance(value, str) and value else DEFAULT_ZMQ[kind]


class Client:
    """One request, one reply over a REQ socket; a fresh socket per request (a REQ socket that
    timed out cannot be reused)."""

    def __init__(self, endpoint: str, timeout: float = 2.0):
        self.endpoint = endpoint
        self.timeout = timeout

    def request(self, msg, reply_cls, extra_wait: float = 0.0):
        import zmq

        if self.endpoint.startswith("ipc://"):
            path = self.endpoint[len("ipc://"):]
            if not os.path.exists(path):
                raise Unreachable(f"the forwarder is not running: no socket {path} "
                                  "(systemctl status virtio-forwarder; --endpoint to use another)")
        ctx = zmq.Context.instance()
        sock = ctx.socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        try:
            sock.connect(self.endpoint)
            sock.send(msg.SerializeToString())
            if not sock.poll(int((self.timeout + extra_wait) * 1000)):
                raise Unreachable(f"the forwarder does not answer on {self.endpoint} within "
                                  f"{self.timeout + extra_wait:.1f} s (not running? wrong "
                                  "--endpoint? permission on the socket?)")
            data = sock.recv()
        except zmq.ZMQError as exc:
            raise Unreachable(f"{self.endpoint}: {exc}") from None
        finally:
            sock.close(0)
        reply = reply_cls()
        reply.ParseFromString(data)
        return reply


# ---------------------------------------------------------------------------------------------
# requests (used by the commands and usable as a library)

def pci_message(addr: str, msg) -> None:
    from forwarder.config import PCI_RE
    m = PCI_RE.match(addr.strip())
    msg.domain = int(m["dom"] or "0", 16)
    msg.bus = int(m["bus"], 16)
    msg.slot = int(m["dev"], 16)
    msg.function = int(m["fn"])


def port_request(op: str, vfs: list[str] = (), relay: int | None = None, bond_name: str = "",
                 mode: int | None = None, vhost_path: str = "", conditional: bool = True):
    """A PortControlRequest; PCI VFs go in pci_addrs, devargs in `name` (see handlers' doc)."""
    from forwarder.config import normalise_pci
    P = pb()
    req = P.PortControlRequest(op=P.PortControlRequest.Op.Value(op.upper().replace("-", "_")),
                               conditional=conditional)
    if relay is not None:
        req.virtio_id = relay
    if vfs and all(normalise_pci(v) for v in vfs):
        for v in vfs:
            pci_message(v, req.pci_addrs.add())
        if bond_name:
            req.name = bond_name
    elif vfs:
        if any(normalise_pci(v) for v in vfs):
            raise ValueError("a bond is either of PCI VFs or of virtual devices, not both")
        req.name = " ".join(vfs)
    if mode is not None:
        req.mode = mode
    if vhost_path:
        req.vhost_path = vhost_path
    return req


def port_control(client: Client, req):
    P = pb()
    reply = client.request(req, P.PortControlResponse)
    if reply.status != P.PortControlResponse.OK:
        from forwarder.control.handlers import ERROR_TABLE
        name = ERROR_TABLE.get(reply.error_code, "?")
        raise ControlError(f"error {reply.error_code} ({name}): {reply.error_code_source}")
    return reply


def stats(client: Client, relays: list[int] = (), include_inactive: bool = True,
          delay_ms: int = 0):
    P = pb()
    req = P.StatsRequest(relay=list(relays), include_inactive=include_inactive, delay=delay_ms)
    reply = client.request(req, P.StatsResponse, extra_wait=delay_ms / 1000.0)
    if reply.status != P.StatsResponse.OK:
        raise ControlError(f"stats: {P.StatsResponse.Status.Name(reply.status)}")
    return reply


def relay_cpu_map(client: Client) -> dict[int, tuple[int, int]]:
    P = pb()
    reply = client.request(P.ConfigRequest(), P.ConfigResponse)
    if reply.status != P.ConfigResponse.OK:
        raise ControlError(f"config: {P.ConfigResponse.Status.Name(reply.status)}")
    return {e.relay_number: (e.vf2virtio_cpu, e.virtio2vf_cpu) for e in reply.relay_cpu_map}


def core_sched(client: Client, mapping: dict[int, tuple[int, int]] | None = None):
    """UPDATE with `mapping`, or GET_EAL_CORES without: returns the worker CPUs then."""
    P = pb()
    if mapping is None:
        req = P.CoreSchedRequest(op=P.CoreSchedRequest.GET_EAL_CORES)
    else:
        req = P.CoreSchedRequest(op=P.CoreSchedRequest.UPDATE)
        for rid, (a, b) in mapping.items():
            req.relay_cpu_map.add(relay_number=rid, vf2virtio_cpu=a, virtio2vf_cpu=b)
    reply = client.request(req, P.CoreSchedResponse)
    if reply.status != P.CoreSchedResponse.OK:
        from forwarder.control.handlers import ERROR_TABLE
        name = ERROR_TABLE.get(reply.error_code, "?")
        raise ControlError(f"error {reply.error_code} ({name}): {reply.error_code_source}")
    return list(reply.eal_cores)


# ---------------------------------------------------------------------------------------------
# output

def _set_fields(m) -> set[str]:
    return {f.name for f, _ in m.ListFields()}


def flat_lines(reply, suppress_zero: bool = False) -> list[str]:
    """The original's flat format: relay_<id>[.section[.cpu_<n>]].<field>=<value>; the counters
    of a direction carry the `cpu_<n>` segment of the CPU serving it, as the original prints."""
    out: list[str] = []
    for r in reply.relay:
        head = f"relay_{r.id}"

        def emit(msg, field, middle):
            if field not in _set_fields(msg):
                return
            v = getattr(msg, field)
            if suppress_zero and isinstance(v, int) and not isinstance(v, bool) and v == 0:
                return
            if isinstance(v, bool):
                v = str(v)
            out.append(".".join([head, *middle, f"{field}={v}"]))

        emit(r, "active", [])
        emit(r.cpu, "vf_to_vm", ["cpu"])
        emit(r.cpu, "vm_to_vf", ["cpu"])
        emit(r.vf, "pci_addr_str", ["vf"])
        emit(r.vhost, "vhost_socket_name", ["vhost"])
        emit(r, "socket_id", [])
        cpus = _set_fields(r.cpu)
        for section, msg in (("vf_to_vm", r.vf_to_vm), ("vm_to_vf", r.vm_to_vf)):
            emit(msg, "active", [section])
            emit(msg, "internal_state", [section])
            middle = [section] + ([f"cpu_{getattr(r.cpu, section)}"] if section in cpus else [])
            for f in msg.DESCRIPTOR.fields:
                if f.name not in ("active", "internal_state"):
                    emit(msg, f.name, middle)
    return out


def as_dict(reply) -> dict:
    from google.protobuf.json_format import MessageToDict
    return MessageToDict(reply, preserving_proto_field_name=True,
                         always_print_fields_with_no_presence=True)


def _si(x: float) -> str:
    for unit in ("", "k", "M", "G"):
        if abs(x) < 1000:
            return f"{x:.1f}{unit}" if unit else f"{x:.0f}"
        x /= 1000.0
    return f"{x:.1f}T"


def table(reply) -> str:
    head = ("relay", "state", "cpus", "node", "vf", "socket", "vf>vm pkts", "vf>vm pps",
            "vm>vf pkts", "vm>vf pps", "drops")
    rows = [head]
    for r in reply.relay:
        cpus = "/".join(str(getattr(r.cpu, f)) if r.cpu.HasField(f) else "-"
                        for f in ("vf_to_vm", "vm_to_vf"))
        up, down = r.vf_to_vm, r.vm_to_vf
        drops = (up.pkts_dropped_vm_queue_full + up.pkts_dropped_vm_not_connected +
                 down.pkts_dropped_vf_queue_full + down.pkts_dropped_vf_not_connected)
        state = "active" if r.active else ("vf" if up.active else "") + \
            ("+vm" if down.active else "") or "idle"
        rows.append((str(r.id), state, cpus, str(r.socket_id), r.vf.pci_addr_str or "-",
                     os.path.basename(r.vhost.vhost_socket_name) or "-",
                     str(up.pkts_tx_to_vm), _si(up.pkt_rate_rx_from_vf),
                     str(down.pkts_tx_to_vf), _si(down.pkt_rate_rx_from_vm), str(drops)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows)


# ---------------------------------------------------------------------------------------------
# commands

def _client(args, kind: str) -> Client:
    return Client(args.endpoint or default_endpoint(kind), args.timeout)


def _usage(msg: str):
    from .cli import UsageError
    return UsageError(msg)


def _check_vfs(vfs: list[str]) -> list[str]:
    from forwarder.config import ConfigError, parse_vf_spec
    try:
        return [parse_vf_spec("VF", v) for v in vfs]
    except ConfigError as exc:
        raise _usage(str(exc)) from None


def _run(fn) -> int:
    try:
        return fn() or 0
    except Unreachable as exc:
        print(f"vio4wd-tool: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except ControlError as exc:
        print(f"vio4wd-tool: the forwarder refused: {exc}", file=sys.stderr)
        return EXIT_FAILED


def cmd_ports(args) -> int:
    vfs = _check_vfs(getattr(args, "vf", None) or [])
    op = args.port_op
    if op in ("add", "remove") and args.relay is None:
        raise _usage(f"ports {op} needs --relay ID")
    if op == "add" and not vfs:
        raise _usage("ports add needs a VF (PCI address or devargs)")
    if op == "add" and len(vfs) > 1 and all(_is_pci(v) for v in vfs) and not args.bond_name:
        raise _usage("a bond of PCI VFs needs --bond-name")
    if op == "remove-sock" and not (args.path or vfs):
        raise _usage("ports remove-sock needs a socket PATH and/or --vf")
    try:
        req = port_request(op, vfs, relay=getattr(args, "relay", None),
                           bond_name=getattr(args, "bond_name", "") or "",
                           mode=getattr(args, "mode", None),
                           vhost_path=os.path.abspath(args.path) if getattr(args, "path", None)
                           else "", conditional=not getattr(args, "strict", False))
    except ValueError as exc:
        raise _usage(str(exc)) from None

    def go():
        reply = port_control(_client(args, "port_control"), req)
        if op == "query-pci":
            print(reply.query_string)
        return 0
    return _run(go)


def _is_pci(v: str) -> bool:
    from forwarder.config import normalise_pci
    return normalise_pci(v) is not None


def cmd_stats(args) -> int:
    client = _client(args, "stats")
    delay = args.delay if args.delay is not None else (1000 if args.watch else 200)

    def once() -> str:
        reply = stats(client, args.relay or [], not args.active_only, delay)
        if args.json:
            return json.dumps(as_dict(reply), indent=1)
        if args.table or args.watch is not None and not args.flat:
            return table(reply)
        return "\n".join(flat_lines(reply, args.suppress_zero))

    def go():
        if args.watch is None:
            print(once())
            return 0
        n = 0
        while args.count is None or n < args.count:
            text = once()
            if sys.stdout.isatty():
                sys.stdout.write("\x1b[H\x1b[2J")
            print(time.strftime("%H:%M:%S"), f"rates over {delay} ms")
            print(text, flush=True)
            n += 1
            if args.count is None or n < args.count:
                time.sleep(max(0.0, args.watch - delay / 1000.0))
        return 0
    return _run(go)


def cmd_fwd_config(args) -> int:
    def go():
        m = relay_cpu_map(_client(args, "config"))
        if args.json:
            print(json.dumps({"relay_cpu_map": [{"relay": r, "vf_to_vm": a, "vm_to_vf": b}
                                                for r, (a, b) in sorted(m.items())]}, indent=1))
        else:
            for r, (a, b) in sorted(m.items()):
                print(f"relay_{r}: vf_to_vm cpu {a}, vm_to_vf cpu {b}")
        return 0
    return _run(go)


def cmd_relay_pin(args) -> int:
    client = _client(args, "core_sched")
    if args.cores:
        return _run(lambda: print(" ".join(map(str, core_sched(client)))))
    if not args.pins:
        raise _usage("relay-pin needs RELAY:CPU[,CPU] pins (or --cores)")
    from forwarder.config import ConfigError, parse_cpu_pin
    mapping = {}
    for item in args.pins:
        try:
            rid, (a, b) = parse_cpu_pin("relay-pin", item, 1 << 31)
        except ConfigError as exc:
            raise _usage(str(exc)) from None
        mapping[rid] = (a, a if b is None else b)

    def go():
        core_sched(client, mapping)
        for rid, (a, b) in sorted(mapping.items()):
            print(f"relay_{rid}: vf_to_vm cpu {a}, vm_to_vf cpu {b}")
        return 0
    return _run(go)


def _common(p: argparse.ArgumentParser, kind: str) -> None:
    p.add_argument("--endpoint", metavar="EP", help=f"the forwarder's {kind} endpoint (default: "
                   f"{ENDPOINT_VARS[kind]} of {ENV_FILE}, else "
                   f"ipc:///var/run/virtio-forwarder/{kind})")
    p.add_argument("--timeout", type=float, default=2.0, metavar="S",
                   help="seconds to wait for the answer (default 2)")


def register(sub) -> None:
    p = sub.add_parser("ports", help="attach/detach VFs and sockets of the running forwarder")
    ps = p.add_subparsers(dest="port_op", metavar="OP")
    ps.required = True
    a = ps.add_parser("add", help="attach a VF (or a bond of several) to a relay")
    a.add_argument("vf", nargs="+", help="PCI address or DPDK devargs (several: a bond)")
    a.add_argument("--relay", type=int, help="relay (virtio) id")
    a.add_argument("--bond-name", help="name of the bond (several PCI VFs)")
    a.add_argument("--mode", type=int, choices=range(7), metavar="0-6",
                   help="bond mode (default 1, active-backup)")
    r = ps.add_parser("remove", help="detach a relay's VF")
    r.add_argument("vf", nargs="*", help="only if the relay has this VF")
    r.add_argument("--relay", type=int, help="relay (virtio) id")
    s = ps.add_parser("add-sock", help="dynamic sockets: register a socket on a free relay")
    s.add_argument("path", help="vhost-user socket path")
    s.add_argument("vf", nargs="*", help="VF(s) to attach (several: a bond)")
    s.add_argument("--bond-name")
    s.add_argument("--mode", type=int, choices=range(7), metavar="0-6")
    rs = ps.add_parser("remove-sock", help="dynamic sockets: remove a socket and its VF")
    rs.add_argument("path", nargs="?", help="vhost-user socket path")
    rs.add_argument("--vf", action="append", default=[], help="find the relay by its VF")
    q = ps.add_parser("query-pci", help="print the VF of the relay with this socket")
    q.add_argument("path")
    for x in (a, r, s, rs, q):
        x.add_argument("--strict", action="store_true", help="fail on requests that change "
                       "nothing (conditional=false) instead of ignoring them")
        _common(x, "port_control")
        x.set_defaults(func=cmd_ports)

    st = sub.add_parser("stats", help="the forwarder's relay counters and rates")
    st.add_argument("--relay", type=int, action="append", metavar="ID",
                    help="only this relay (repeatable)")
    st.add_argument("--active-only", action="store_true", help="leave inactive relays out")
    st.add_argument("--delay", type=int, metavar="MS",
                    help="rate window in ms (default 200; 1000 with --watch)")
    fmt = st.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true")
    fmt.add_argument("--table", action="store_true")
    fmt.add_argument("--flat", action="store_true",
                     help="relay_<id>.<section>.<field>=<value> lines (default)")
    st.add_argument("-z", "--suppress-zero", action="store_true",
                    help="flat: leave out counters that are zero")
    st.add_argument("--watch", type=float, nargs="?", const=2.0, metavar="S",
                    help="repeat every S seconds (default 2) with live rates (table by default)")
    st.add_argument("--count", type=int, help=argparse.SUPPRESS)
    _common(st, "stats")
    st.set_defaults(func=cmd_stats)

    c = sub.add_parser("fwd-config", help="the running forwarder's live relay -> CPU map")
    c.add_argument("--json", action="store_true")
    _common(c, "config")
    c.set_defaults(func=cmd_fwd_config)

    pin = sub.add_parser("relay-pin", help="move relay directions between the forwarder's "
                         "worker CPUs")
    pin.add_argument("pins", nargs="*", metavar="RELAY:CPU[,CPU]",
                     help="first CPU serves VF->VM, second VM->VF (default: the same)")
    pin.add_argument("--cores", action="store_true", help="list the worker CPUs")
    _common(pin, "core_sched")
    pin.set_defaults(func=cmd_relay_pin)
