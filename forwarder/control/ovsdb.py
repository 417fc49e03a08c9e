"""OVSDB monitor: attach/detach relays' VFs from the Open_vSwitch `Interface` table.

Used instead of the port-control endpoint when an OVSDB socket is given (`-O`,
VIRTIOFWD_OVSDB_SOCK_PATH; see `forwarder.control`).  Speaks OVSDB's JSON-RPC (RFC 7047) over
the unix socket itself: `monitor` on the Interface table, answering the server's `echo`s;
reconnects (and re-syncs) when ovsdb-server restarts.

An interface row is a relay's VF when its `external_ids` carry ``virtio_forwarder=<relay id>``
and a VF can be found for it, from the first of:

1. ``external_ids:virtio_forwarder_pci`` - a PCI address or DPDK devargs (any NIC, labs);
2. ``options:dpdk-devargs`` - when it is a PCI address;
3. ``status:bus_info`` - the kernel's bus-info of the interface (ethtool -i), if a PCI address;
4. ``/sys/class/net/<name>/device`` - the PCI device of the interface's netdev.

(The original only understood Netronome NFP representors' bus-info.)  The row appearing (or
getting those keys) attaches the VF; the row going away (or losing them) detaches it.  Only
relays this monitor attached are ever detached by it.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import threading

from .. import config
from ..relays import RelayError

log = logging.getLogger("vio4wd.control.ovsdb")

COLUMNS = ["name", "external_ids", "options", "status"]
SYSFS_NET = "/sys/class/net"


def _map(value) -> dict[str, str]:
    """OVSDB JSON map ["map", [[k, v], ...]] -> dict."""
    if isinstance(value, list) and len(value) == 2 and value[0] == "map":
        return {str(k): str(v) for k, v in value[1]}
    return {}


def vf_of(row: dict, sysfs_net: str = SYSFS_NET) -> tuple[int, str] | None:
    """(relay id, VF spec) of an Interface row, or None when it is not a relay's VF."""
    ext = _map(row.get("external_ids"))
    rid = ext.get("virtio_forwarder")
    if rid is None or not rid.strip().isdigit():
        return None
    candidates = [ext.get("virtio_forwarder_pci"), _map(row.get("options")).get("dpdk-devargs"),
                  _map(row.get("status")).get("bus_info")]
    name = row.get("name")
    if isinstance(name, str) and name and "/" not in name:
        dev = os.path.join(sysfs_net, name, "device")
        if os.path.islink(dev):
            candidates.append(os.path.basename(os.readlink(dev)))
    for i, c in enumerate(candidates):
        if not c:
            continue
        pci = config.normalise_pci(c)
        if pci:
            return int(rid), pci
        if i == 0:   # devargs only where explicitly given
            try:
                return int(rid), config.parse_vf_spec("external_ids:virtio_forwarder_pci", c)
            except config.ConfigError:
                log.warning("interface %s: virtio_forwarder_pci=%r is neither a PCI address "
                            "nor devargs", name, c)
    return None


class OvsdbMonitor(threading.Thread):
    def __init__(self, fwd, sock_path: str, retry: float = 1.0):
        super().__init__(name="ovsdb-monitor", daemon=True)
        self.fwd = fwd
        self.path = sock_path[len("unix:"):] if sock_path.startswith("unix:") else sock_path
        self.retry = retry
        self._halt = threading.Event()
        self._sock: socket.socket | None = None
        self.rows: dict[str, dict] = {}
        self.attached: dict[int, str] = {}     # relay id -> VF spec attached by us
        self.connected = threading.Event()

    # -- life cycle ----------------------------------------------------------------------
    def stop(self, timeout: float = 3.0) -> None:
        self._halt.set()
        s = self._sock
        if s is not None:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self.is_alive():
            self.join(timeout)

    def run(self) -> None:
        warned = False
        while not self._halt.is_set():
            try:
                self._session()
                warned = False
            except OSError as exc:
                if not warned:
                    log.warning("OVSDB %s: %s; retrying every %.0f s", self.path, exc,
                                self.retry)
                    warned = True
            except Exception:  # noqa: BLE001 - keep watching
                log.exception("OVSDB monitor failed; reconnecting")
            self.connected.clear()
            self._halt.wait(self.retry)

    # -- one connection ------------------------------------------------------------------
    def _session(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock = s
        try:
            s.connect(self.path)
            s.settimeout(0.5)
            self._send(s, {"id": "vio4wd-monitor", "method": "monitor",
                           "params": ["Open_vSwitch", "vio4wd", {"Interface": {"columns": COLUMNS}}]})
            dec = json.JSONDecoder()
            buf = ""
            while not self._halt.is_set():
                try:
                    chunk = s.recv(65536)
                except socket.timeout:
                    continue
                if not chunk:
                    raise OSError("ovsdb-server closed the connection")
                buf += chunk.decode("utf-8", "replace")
                while True:
                    buf = buf.lstrip()
                    if not buf:
                        break
                    try:
                        msg, end = dec.raw_decode(buf)
                    except json.JSONDecodeError:
                        break       # incomplete
                    buf = buf[end:]
                    self._handle(s, msg)
        finally:
            self._sock = None
            s.close()

    @staticmethod
    def _send(s: socket.socket, msg: dict) -> None:
        s.sendall(json.dumps(msg).encode())

    def _handle(self, s: socket.socket, msg: dict) -> None:
        method = msg.get("method")
        if method == "echo":
            self._send(s, {"id": msg.get("id"), "result": msg.get("params", []), "error": None})
        elif msg.get("id") == "vio4wd-monitor":
            if msg.get("error"):
                raise OSError(f"monitor refused: {msg['error']}")
            self.rows = {}
            self._apply(msg.get("result") or {})
            log.info("OVSDB %s: watching %d interfaces", self.path, len(self.rows))
            self.connected.set()
        elif method == "update":
            params = msg.get("params") or [None, {}]
            self._apply(params[1] if len(params) > 1 else {})

    def _apply(self, updates: dict) -> None:
        for uuid, change in (updates.get("Interface") or {}).items():
            new = change.get("new")
            if new is None:
                self.rows.pop(uuid, None)
            else:
                self.rows[uuid] = {**self.rows.get(uuid, {}), **new}
        self.reconcile()

    # -- relays ----------------------------------------------------------------------------
    def reconcile(self) -> None:
        """Make the relays match the rows: detach what went away, attach what is new."""
        want: dict[int, str] = {}
        for row in self.rows.values():
            found = vf_of(row)
            if found is not None:
                rid, vf = found
                if rid in want and want[rid] != vf:
                    log.warning("OVSDB: relay %d claimed by %s and %s; keeping %s", rid,
                                want[rid], vf, want[rid])
                    continue
                want[rid] = vf
        for rid, vf in list(self.attached.items()):
            if want.get(rid) != vf:
                try:
                    self.fwd.remove_vf(rid)
                    log.info("OVSDB: relay %d: VF %s detached", rid, vf)
                except RelayError as exc:
                    log.warning("OVSDB: relay %d: cannot detach %s: %s", rid, vf, exc)
                del self.attached[rid]
        for rid, vf in want.items():
            if rid in self.attached:
                continue
            try:
                self.fwd.add_vf(rid, [vf])
                self.attached[rid] = vf
                log.info("OVSDB: relay %d: VF %s attached", rid, vf)
            except RelayError as exc:
                log.warning("OVSDB: relay %d: cannot attach %s: %s", rid, vf, exc)

