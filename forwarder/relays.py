"""The forwarder's control-plane API: relays, sockets, counters and worker placement.

`Forwarder` owns the DPDK EAL of its process (one per process: DPDK cannot initialise twice) and
the C data plane (`forwarder._dataplane`).  Every public method is thread-safe (one lock), so the
ZeroMQ servers of the control plane may call it from their threads; no method is called per
packet.  Errors are `RelayError` with an `ErrorCode` the port-control protocol can report.

Relays: ids 0 .. max_relays-1 (max_relays = min(64, RTE_MAX_ETHPORTS of the DPDK build)).  A relay
is a VF side (one ethdev or a net_bonding of 2..8, named by PCI address or vdev devargs; see
`forwarder.config` for the syntax) and a VM side (a vhost-user socket).  Without dynamic sockets
every relay's socket `settings.socket_path(id)` exists from `start()` on; with dynamic sockets
they come and go with `add_socket()`/`remove_socket()`.

Directions: each relay has `VF2VM` (VF -> guest) and `VM2VF` (guest -> VF), each served by one
worker CPU.  `cpu_map()` is the live placement and `move()` changes it; a moved direction is
handed over between two bursts, never served by two workers at once.
"""
from __future__ import annotations

import enum
import grp
import logging
import os
import pwd
import threading
from dataclasses import dataclass, field
from pathlib import Path

from . import config
from .config import ConfigError, ForwarderSettings

log = logging.getLogger("virtio-forwarder")

VF2VM, VM2VF = 0, 1
MAX_BOND_VFS = 8
VF_RX_DESC = 1024           # per relay; divided among the members of a bond
SOCKET_MODE = 0o660         # server sockets: owner and group may connect
SYSFS_PCI = Path("/sys/bus/pci")


class ErrorCode(enum.IntEnum):
    """Why a control-plane request failed (the port-control `error_code`)."""
    BAD_ID = 1                  # relay id out of range
    ALREADY_ADDED = 2           # the relay already has a VF / the VF is already used
    PROBE_FAILED = 3            # DPDK could not probe or start the device
    NOT_ADDED = 4               # the relay has no VF
    NO_FREE_RELAY = 5           # dynamic sockets: every relay has a socket
    SOCKET_REGISTERED = 6       # the socket path (or the relay's socket) already exists
    SOCKET_UNKNOWN = 7          # no relay has this socket / VF
    BAD_CPU = 8                 # not a worker CPU
    BAD_ARGS = 9                # malformed request (VF spec, bond size or mode, ...)
    NOT_DYNAMIC = 10            # socket operations need dynamic sockets (-d)
    BUSY = 11                   # the data plane did not answer in time


class RelayError(Exception):
    def __init__(self, code: ErrorCode, message: str):
        super().__init__(message)
        self.code = code


@dataclass
class DirStats:
    """Counters of one direction, as the data plane counts them (monotonic)."""
    rx_pkts: int = 0
    rx_bytes: int = 0
    tx_pkts: int = 0
    tx_bytes: int = 0
    drop_full_pkts: int = 0
    drop_full_bytes: int = 0
    drop_nc_pkts: int = 0
    drop_nc_bytes: int = 0


@dataclass
class RelayStatus:
    """A snapshot of one relay."""
    id: int
    active: bool                # VF and guest both up
    socket: str                 # vhost-user socket path, "" without one
    connected: bool             # a vhost-user peer is connected (its device may be stopped)
    vf: str                     # PCI address / devargs (bond: members joined by ' '), "" none
    bond: str                   # bond name, "" when not a bond
    virtio_state: str           # VIRTIO_UNINIT|READY|REMOVING1|REMOVING2
    dpdk_state: str             # DPDK_UNINIT|ADDED|READY|REMOVING1|REMOVING2
    cpu: tuple[int, int]        # (VF->VM CPU, VM->VF CPU), -1 unassigned
    numa_node: int              # node of the relay's memory (guest's, else VF's), -1 unknown
    queue_pairs: int            # running guest's queue pairs, 0 when none
    rxq_enabled: int            # bitmask of enabled guest RX queues
    txq_enabled: int            # bitmask of enabled guest TX queues
    features: int               # negotiated virtio features
    vf2vm: DirStats = field(default_factory=DirStats)
    vm2vf: DirStats = field(default_factory=DirStats)


@dataclass
class _Relay:
    socket: str = ""
    vfs: list[str] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)   # the bond port and its members, or the VF
    port: int = -1                                   # port relayed (bond or VF)
    bond: str = ""
    virtio_state: str = "VIRTIO_UNINIT"
    dpdk_state: str = "DPDK_UNINIT"


def _lib():
    try:
        from . import _dataplane
    except ImportError as exc:
        raise RuntimeError("the data plane forwarder._dataplane is not built: run "
                           "`pip install -e .` or `python forwarder/_dataplane_build.py` "
                           f"(needs libdpdk-dev): {exc}") from None
    return _dataplane


class Forwarder:
    """The data plane of this process.  Create once; `start()`, then the methods; `stop()`.

    `eal_argv`: full EAL argv (default `config.eal_args(settings, host_numa_map())`).
    Worker CPUs are `settings.cpus` (EAL lcore id == CPU id).
    """

    def __init__(self, settings: ForwarderSettings, eal_argv: list[str] | None = None):
        dp = _lib()
        self._ffi, self._dp = dp.ffi, dp.lib
        self.settings = settings
        self._lock = threading.RLock()
        self._uid, self._gid = _owner(settings.socket_owner, settings.socket_group)
        self._node_of_cpu = config.host_numa_map()
        argv = eal_argv or config.eal_args(settings, self._node_of_cpu)
        self._argv_keep = [self._ffi.new("char[]", a.encode()) for a in argv]
        c_argv = self._ffi.new("char *[]", self._argv_keep)
        if self._dp.rte_eal_init(len(argv), c_argv) < 0:
            err = self._dp.rte_errno_get()
            raise RuntimeError("DPDK EAL init failed: " +
                               self._ffi.string(self._dp.rte_strerror(err)).decode() +
                               f" (args: {' '.join(argv)}); hugepages mounted and reserved? "
                               "another forwarder with the same --file-prefix?")
        main = self._dp.rte_get_main_lcore()
        self.workers = [c for c in settings.cpus
                        if c != main and self._dp.rte_lcore_is_enabled(c)]
        if not self.workers:
            raise ConfigError(f"no worker lcore among CPUs {settings.cpus} (main lcore {main}): "
                              "give -C/VIRTIOFWD_CPU_MASK CPUs other than the main one")
        self.max_relays = self._dp.dp_init(settings.max_relays, settings.jumbo,
                                           settings.mrgbuf, settings.tso)
        log.info("relays 0..%d (at most %d: RTE_MAX_ETHPORTS of this DPDK build), workers on "
                 "CPUs %s", self.max_relays - 1, self.max_relays, self.workers)
        self._relays = [_Relay() for _ in range(self.max_relays)]
        self._running = False
        self._stopped = False

    # -------------------------------------------------------------- life cycle

    def start(self) -> None:
        """Create the sockets (unless dynamic), place every relay's directions on workers
        (pins first, then least loaded), attach the static VFs, launch the workers."""
        with self._lock:
            s = self.settings
            if not s.dynamic_sockets:
                self._make_socket_dir()
                for rid in range(self.max_relays):
                    self._register(rid, s.socket_path(rid))
            for rid in range(self.max_relays):
                self._place(rid)
            for lcore in self.workers:
                if self._dp.dp_worker_launch(lcore) != 0:
                    raise RuntimeError(f"cannot launch the worker on lcore {lcore}")
            self._running = True
            for vf, rid in s.static_vfs:     # a missing VF must not stop the other relays
                try:
                    self.add_vf(rid, [vf])
                except RelayError as exc:
                    log.error("static VF %s=%d not attached: %s", vf, rid, exc)

    def stop(self) -> None:
        """Stop the workers, remove every VF and socket (server sockets are unlinked), release
        the EAL's memory.  The process cannot start DPDK again afterwards; a second call
        does nothing."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            if self._running:
                self._dp.dp_workers_stop()
                self._running = False
            for rid, r in enumerate(self._relays):
                if r.port >= 0:
                    self._remove_vf(rid)
                if r.socket:
                    self._unregister(rid)
            self._dp.rte_eal_cleanup()

    # -------------------------------------------------------------- VFs

    def add_vf(self, relay_id: int, vfs: list[str], bond_name: str = "",
               bond_mode: int = config.DEFAULT_BOND_MODE) -> None:
        """Attach a VF (one spec) or a bond (2..8 specs and a name) to a relay.

        Specs: PCI addresses or vdev devargs (see `forwarder.config`).  With
        `settings.bind_vfio_pci`, PCI VFs are bound to vfio-pci first.
        Errors: BAD_ID, BAD_ARGS, ALREADY_ADDED, PROBE_FAILED."""
        with self._lock:
            self._check_id(relay_id)
            specs = self._check_vfs(vfs, bond_name, bond_mode)
            r = self._relays[relay_id]
            if r.port >= 0:
                raise RelayError(ErrorCode.ALREADY_ADDED,
                                 f"relay {relay_id} already has VF {' '.join(r.vfs)}")
            for other, o in enumerate(self._relays):
                clash = set(o.vfs) & set(specs)
                if clash:
                    raise RelayError(ErrorCode.ALREADY_ADDED,
                                     f"VF {clash.pop()} is already on relay {other}")
            ports: list[int] = []
            try:
                for spec in specs:
                    if self.settings.bind_vfio_pci and config.normalise_pci(spec):
                        _bind_vfio(spec)
                    port = self._dp.dp_port_probe(spec.encode())
                    if port < 0:
                        raise RelayError(ErrorCode.PROBE_FAILED, f"cannot probe {spec}: "
                                         f"{self._strerror(-port)} (driver bound? devargs "
                                         "right?)")
                    ports.append(port)
                r.dpdk_state = "DPDK_ADDED"
                port = ports[0]
                bond_dev = ""
                if len(ports) > 1:
                    bond_dev = bond_name if bond_name.startswith("net_bonding") \
                        else f"net_bonding_{bond_name}"
                    members = ",".join(f"slave={self._port_name(p)}" for p in ports)
                    port = self._dp.dp_port_probe(f"{bond_dev},mode={bond_mode},{members}"
                                                  .encode())
                    if port < 0:
                        raise RelayError(ErrorCode.PROBE_FAILED,
                                         f"cannot create bond {bond_name} (mode {bond_mode}) "
                                         f"of {' '.join(specs)}")
                    ports.insert(0, port)   # removed first
                info = self._info(relay_id)
                node = info.numa_node if info.numa_node >= 0 else self._dp.dp_port_socket(port)
                pool = self._dp.dp_relay_pool(relay_id, node)
                if pool == self._ffi.NULL:
                    raise RelayError(ErrorCode.PROBE_FAILED, f"relay {relay_id}: no memory "
                                     "for its mempool (more hugepages?)")
                ret = self._dp.dp_port_start(port, 1, 1, max(128, VF_RX_DESC // len(specs)),
                                             pool)
                if ret != 0:
                    raise RelayError(ErrorCode.PROBE_FAILED, f"cannot start {' '.join(specs)}: "
                                     f"{self._strerror(-ret)}")
            except RelayError:
                for p in ports:
                    self._dp.dp_port_remove(p)
                r.dpdk_state = "DPDK_UNINIT"
                raise
            r.vfs, r.ports, r.port, r.bond = specs, ports, port, bond_name
            if self.settings.same_numa and relay_id not in self.settings.cpu_pins:
                self._place(relay_id, self._dp.dp_port_socket(port))
            self._dp.dp_relay_attach_vf(relay_id, port)
            r.dpdk_state = "DPDK_READY"
            log.info("relay %d: VF %s%s attached (port %d)", relay_id, " ".join(specs),
                     f" as bond {bond_name} mode {bond_mode}" if bond_dev else "", port)

    def remove_vf(self, relay_id: int) -> None:
        """Detach and close a relay's VF or bond (its socket stays).  Errors: BAD_ID,
        NOT_ADDED."""
        with self._lock:
            self._check_id(relay_id)
            if self._relays[relay_id].port < 0:
                raise RelayError(ErrorCode.NOT_ADDED, f"relay {relay_id} has no VF")
            self._remove_vf(relay_id)

    def _remove_vf(self, relay_id: int) -> None:
        r = self._relays[relay_id]
        r.dpdk_state = "DPDK_REMOVING1"
        self._dp.dp_relay_detach_vf(relay_id)     # workers no longer see it
        r.dpdk_state = "DPDK_REMOVING2"
        for p in r.ports:      # the bond (if any) first, then its members
            self._dp.dp_port_remove(p)
        log.info("relay %d: VF %s removed", relay_id, " ".join(r.vfs))
        r.vfs, r.ports, r.port, r.bond = [], [], -1, ""
        r.dpdk_state = "DPDK_UNINIT"

    # -------------------------------------------------------------- sockets

    def add_socket(self, path: str, vfs: list[str] | None = None, bond_name: str = "",
                   bond_mode: int = config.DEFAULT_BOND_MODE,
                   relay_id: int | None = None) -> int:
        """Dynamic sockets: take a free relay (the lowest, or `relay_id`), register `path`,
        attach `vfs` if given.  Returns the relay id.  Errors: NOT_DYNAMIC, SOCKET_REGISTERED,
        NO_FREE_RELAY, BAD_ID and those of `add_vf` (then the socket is removed again)."""
        with self._lock:
            if not self.settings.dynamic_sockets:
                raise RelayError(ErrorCode.NOT_DYNAMIC, "sockets are fixed: start the "
                                 "forwarder with -d / VIRTIOFWD_DYNAMIC_SOCKETS=true")
            path = os.path.abspath(path)
            if self.relay_by_socket(path) is not None:
                raise RelayError(ErrorCode.SOCKET_REGISTERED, f"{path} is already registered")
            if relay_id is None:
                free = [i for i, r in enumerate(self._relays) if not r.socket]
                if not free:
                    raise RelayError(ErrorCode.NO_FREE_RELAY,
                                     f"all {self.max_relays} relays have a socket")
                relay_id = free[0]
            self._check_id(relay_id)
            if self._relays[relay_id].socket:
                raise RelayError(ErrorCode.SOCKET_REGISTERED,
                                 f"relay {relay_id} already has socket "
                                 f"{self._relays[relay_id].socket}")
            self._register(relay_id, path)
            if vfs:
                try:
                    self.add_vf(relay_id, vfs, bond_name, bond_mode)
                except RelayError:
                    self._unregister(relay_id)
                    raise
            return relay_id

    def remove_socket(self, path: str | None = None, vf: str | None = None) -> int:
        """Remove the relay found by socket path and/or VF spec: its VF (if any) and its
        socket.  Returns the relay id.  Errors: NOT_DYNAMIC, SOCKET_UNKNOWN, BAD_ARGS."""
        with self._lock:
            if not self.settings.dynamic_sockets:
                raise RelayError(ErrorCode.NOT_DYNAMIC, "sockets are fixed: start the "
                                 "forwarder with -d / VIRTIOFWD_DYNAMIC_SOCKETS=true")
            if path is None and vf is None:
                raise RelayError(ErrorCode.BAD_ARGS, "give a socket path or a VF")
            candidates = set(range(self.max_relays))
            if path is not None:
                rid = self.relay_by_socket(path)
                candidates &= {rid} if rid is not None else set()
            if vf is not None:
                spec = self._spec(vf)
                candidates &= {i for i, r in enumerate(self._relays) if spec in r.vfs}
            if not candidates:
                raise RelayError(ErrorCode.SOCKET_UNKNOWN,
                                 f"no relay with socket {path} / VF {vf}")
            rid = min(candidates)
            if self._relays[rid].port >= 0:
                self._remove_vf(rid)
            if self._relays[rid].socket:
                self._unregister(rid)
            return rid

    def relay_by_socket(self, path: str) -> int | None:
        """The relay whose socket is `path` (compared as absolute paths), or None."""
        path = os.path.abspath(path)
        with self._lock:
            for i, r in enumerate(self._relays):
                if r.socket and r.socket == path:
                    return i
        return None

    def query_vf(self, path: str) -> str | None:
        """The VF of the relay with socket `path` ("" if it has none), None if unknown.
        Bonds: the member specs joined by spaces."""
        with self._lock:
            rid = self.relay_by_socket(path)
            return None if rid is None else " ".join(self._relays[rid].vfs)

    def _register(self, relay_id: int, path: str) -> None:
        r = self._relays[relay_id]
        client = self.settings.vhost_client
        if not client and os.path.exists(path):
            os.unlink(path)     # a stale socket of a previous run
        ret = self._dp.dp_vhost_register(relay_id, path.encode(), client)
        if ret != 0:
            raise RelayError(ErrorCode.SOCKET_REGISTERED if ret == -17 else ErrorCode.BAD_ARGS,
                             f"relay {relay_id}: cannot register vhost-user socket {path}: "
                             f"{os.strerror(-ret)} (directory exists and writable?)")
        if not client:      # QEMU runs as the socket's owner or group
            os.chown(path, self._uid, self._gid)
            os.chmod(path, SOCKET_MODE)
        r.socket = path

    def _unregister(self, relay_id: int) -> None:
        r = self._relays[relay_id]
        r.virtio_state = "VIRTIO_REMOVING1"
        ret = self._dp.dp_vhost_unregister(relay_id)
        r.virtio_state = "VIRTIO_REMOVING2"
        if ret != 0:
            r.virtio_state = "VIRTIO_UNINIT"
            raise RelayError(ErrorCode.BUSY, f"relay {relay_id}: cannot unregister "
                             f"{r.socket}: {os.strerror(-ret)}")
        r.socket = ""
        r.virtio_state = "VIRTIO_UNINIT"

    def _make_socket_dir(self) -> None:
        d = self.settings.socket_dir
        os.makedirs(d, exist_ok=True)
        if not self.settings.vhost_client and (self._uid != -1 or self._gid != -1):
            os.chown(d, self._uid, self._gid)

    # -------------------------------------------------------------- placement

    def cpu_map(self) -> dict[int, tuple[int, int]]:
        """Live relay id -> (VF->VM CPU, VM->VF CPU) of every relay (-1: unassigned)."""
        with self._lock:
            result = {}
            for rid in range(self.max_relays):
                info = self._info(rid)
                result[rid] = (info.want[VF2VM], info.want[VM2VF])
            return result

    def move(self, mapping: dict[int, tuple[int | None, int | None]]) -> None:
        """Move relay directions: {relay id: (VF->VM CPU, VM->VF CPU)}.  Every entry is checked
        first (BAD_ID; BAD_CPU: a CPU must be a worker) and nothing moves if one is wrong; each
        direction is then handed over between two bursts (BUSY if a worker does not answer
        within a second).  None parks a direction: no worker serves it, so its source queue
        fills up (the protocol's core-sched UPDATE has no way to ask for this)."""
        with self._lock:
            for rid, cpus in mapping.items():
                self._check_id(rid)
                if len(cpus) != 2:
                    raise RelayError(ErrorCode.BAD_ARGS, f"relay {rid}: give two CPUs")
                for cpu in cpus:
                    if cpu is not None and cpu not in self.workers:
                        raise RelayError(ErrorCode.BAD_CPU, f"relay {rid}: CPU {cpu} is not a "
                                         f"worker (workers: {self.workers})")
            for rid, cpus in mapping.items():
                for d in (VF2VM, VM2VF):
                    ret = self._dp.dp_assign(rid, d, -1 if cpus[d] is None else cpus[d])
                    if ret != 0:
                        raise RelayError(ErrorCode.BUSY, f"relay {rid}: worker did not hand "
                                         f"over direction {d}: {os.strerror(-ret)}")

    def _place(self, relay_id: int, node: int | None = None) -> None:
        """Pins first; else the least loaded workers (VF->VM weighs 12, VM->VF 10), on `node`
        when it has workers."""
        pin = self.settings.cpu_pins.get(relay_id)
        if pin is not None:
            a, b = pin
            cpus = (a, a if b is None else b)
        else:
            cs = self.settings.core_sched
            local = [w for w in self.workers if self._node_of_cpu.get(w) == node]
            candidates = local or self.workers
            load = {w: 0 for w in self.workers}
            for rid in range(self.max_relays):
                if rid == relay_id:
                    continue
                other = self._info(rid)
                for d, weight in ((VF2VM, cs.vf2vm_weight), (VM2VF, cs.vm2vf_weight)):
                    if other.want[d] in load:
                        load[other.want[d]] += weight
            a = min(candidates, key=lambda w: (load[w], w))
            load[a] += cs.vf2vm_weight
            b = min(candidates, key=lambda w: (load[w], w))
            cpus = (a, b)
        for d in (VF2VM, VM2VF):
            self._dp.dp_assign(relay_id, d, cpus[d])

    # -------------------------------------------------------------- observation

    def status(self, relay_id: int) -> RelayStatus:
        """Snapshot of one relay: states, placement, NUMA node, queues and counters."""
        with self._lock:
            self._check_id(relay_id)
            r = self._relays[relay_id]
            info = self._info(relay_id)
            st = self._ffi.new("struct dp_dir_stats[2]")
            self._dp.dp_relay_stats(relay_id, st)
            virtio = r.virtio_state
            if virtio == "VIRTIO_UNINIT" and info.vid >= 0:
                virtio = "VIRTIO_READY"
            return RelayStatus(
                id=relay_id, active=info.vid >= 0 and info.vf_port >= 0, socket=r.socket,
                connected=bool(info.connected),
                vf=" ".join(r.vfs), bond=r.bond, virtio_state=virtio, dpdk_state=r.dpdk_state,
                cpu=(info.want[VF2VM], info.want[VM2VF]), numa_node=info.numa_node,
                queue_pairs=info.nr_queue_pairs, rxq_enabled=info.rxq_enabled,
                txq_enabled=info.txq_enabled, features=info.features,
                vf2vm=_dir_stats(st[VF2VM]), vm2vf=_dir_stats(st[VM2VF]))

    def statuses(self, relay_ids: list[int] | None = None) -> list[RelayStatus]:
        """Snapshots of the given relays (default all); unknown ids are left out."""
        ids = range(self.max_relays) if relay_ids is None else relay_ids
        with self._lock:
            return [self.status(i) for i in ids if 0 <= i < self.max_relays]

    def numa_node(self, relay_id: int) -> int:
        """NUMA node of the relay's memory (the guest's once connected), -1 unknown."""
        with self._lock:
            self._check_id(relay_id)
            return self._info(relay_id).numa_node

    def worker_loops(self) -> dict[int, int]:
        """Worker CPU -> loop passes so far (a liveness counter)."""
        return {w: self._dp.dp_worker_loops(w) for w in self.workers}

    def worker_cycles(self) -> dict[int, tuple[int, int]]:
        """Worker -> (busy, total) TSC cycles since it started: busy counts the loop passes that
        moved packets (like testpmd's --record-core-cycles), so busy deltas / packet deltas are the
        cost per packet and busy / total the worker's load. `tsc_hz()` converts to seconds."""
        busy = self._ffi.new("uint64_t *")
        total = self._ffi.new("uint64_t *")
        out = {}
        for w in self.workers:
            self._dp.dp_worker_cycles(w, busy, total)
            out[w] = (int(busy[0]), int(total[0]))
        return out

    def tsc_hz(self) -> int:
        return int(self._dp.dp_tsc_hz())

    # -------------------------------------------------------------- helpers

    def _info(self, relay_id: int):
        info = self._ffi.new("struct dp_relay_info *")
        self._dp.dp_relay_info(relay_id, info)
        return info

    def _check_id(self, relay_id: int) -> None:
        if not isinstance(relay_id, int) or not 0 <= relay_id < self.max_relays:
            raise RelayError(ErrorCode.BAD_ID, f"relay id {relay_id}: expected 0.."
                             f"{self.max_relays - 1}")

    @staticmethod
    def _spec(vf: str) -> str:
        try:
            return config.parse_vf_spec("VF", vf)
        except ConfigError as exc:
            raise RelayError(ErrorCode.BAD_ARGS, str(exc)) from None

    def _check_vfs(self, vfs: list[str], bond_name: str, bond_mode: int) -> list[str]:
        specs = [self._spec(v) for v in vfs]
        if not specs:
            raise RelayError(ErrorCode.BAD_ARGS, "no VF given")
        if len(set(specs)) != len(specs):
            raise RelayError(ErrorCode.BAD_ARGS, f"a VF is given twice: {' '.join(specs)}")
        if len(specs) > 1:
            if len(specs) > MAX_BOND_VFS:
                raise RelayError(ErrorCode.BAD_ARGS, f"a bond has 2..{MAX_BOND_VFS} VFs, "
                                 f"not {len(specs)}")
            if not bond_name or not all(c.isalnum() or c == "_" for c in bond_name):
                raise RelayError(ErrorCode.BAD_ARGS, "a bond needs a name of letters, digits "
                                 "and _")
            if bond_mode not in config.BOND_MODES:
                raise RelayError(ErrorCode.BAD_ARGS, f"bond mode {bond_mode}: expected 0-6")
        return specs

    def _port_name(self, port: int) -> str:
        name = self._ffi.new("char[]", 64)
        self._dp.rte_eth_dev_get_name_by_port(port, name)
        return self._ffi.string(name).decode()

    def _strerror(self, err: int) -> str:
        return self._ffi.string(self._dp.rte_strerror(err)).decode()


def _dir_stats(c) -> DirStats:
    return DirStats(c.rx_pkts, c.rx_bytes, c.tx_pkts, c.tx_bytes, c.drop_full_pkts,
                    c.drop_full_bytes, c.drop_nc_pkts, c.drop_nc_bytes)


def _owner(user: str, group: str) -> tuple[int, int]:
    try:
        uid = pwd.getpwnam(user).pw_uid if user else -1
    except KeyError:
        raise ConfigError(f"socket owner {user!r} does not exist: set VIRTIOFWD_SOCKET_OWNER / -u "
                          "to an existing user or '' to keep the daemon's") from None
    try:
        gid = grp.getgrnam(group).gr_gid if group else -1
    except KeyError:
        raise ConfigError(f"socket group {group!r} does not exist: set VIRTIOFWD_SOCKET_GROUP / "
                          "-g to an existing group or '' to keep the daemon's") from None
    return uid, gid


def _bind_vfio(pci: str) -> None:
    """Bind a PCI device to vfio-pci (driver_override), as VIRTIOFWD_BIND_VFIO_PCI asks."""
    dev = SYSFS_PCI / "devices" / pci
    if not dev.exists():
        raise RelayError(ErrorCode.PROBE_FAILED, f"PCI device {pci} does not exist")
    drv = dev / "driver"
    if drv.exists() and drv.resolve().name == "vfio-pci":
        return
    try:
        (dev / "driver_override").write_text("vfio-pci")
        if drv.exists():
            (drv / "unbind").write_text(pci)
        (SYSFS_PCI / "drivers_probe").write_text(pci)
    except OSError as exc:
        raise RelayError(ErrorCode.PROBE_FAILED, f"cannot bind {pci} to vfio-pci: {exc} "
                         "(modprobe vfio-pci; IOMMU on?)") from None
    if not drv.exists() or drv.resolve().name != "vfio-pci":
        raise RelayError(ErrorCode.PROBE_FAILED, f"{pci} did not bind to vfio-pci "
                         "(modprobe vfio-pci; IOMMU on?)")
