"""What the operator intends for this host: from command-line options, else the forwarder config.

The forwarder's own parser (`forwarder.config`) reads `/etc/default/virtioforwarder`, so doctor,
plan and the daemon agree on every variable.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from .root import Root

FORWARDER_CONFIG = "/etc/default/virtioforwarder"
DRIVERS = ("igb_uio", "vfio-pci")
DEFAULT_SOCKET_DIR = "/tmp/virtio-forwarder"
DEFAULT_SOCKET_PATTERN = "virtio-forwarder%u.sock"
DEFAULT_HUGE_DIR = "/dev/hugepages"
DEFAULT_PID_DIR = "/var/run/virtio-forwarder"


@dataclass
class Intent:
    driver: str = "igb_uio"
    jumbo: bool = False
    relays: int | None = None
    numa_node: int | None = None
    workers: list[int] = field(default_factory=list)
    main_lcore: int | None = None
    static_vfs: dict[int, str] = field(default_factory=dict)  # relay id -> VF spec
    extra_vfs: list[str] = field(default_factory=list)  # --vf without a relay id
    huge_dir: str = DEFAULT_HUGE_DIR
    vhost_client: bool = False
    socket_dir: str = DEFAULT_SOCKET_DIR
    socket_pattern: str = DEFAULT_SOCKET_PATTERN
    guest_1g_pages: int | None = None
    pid_dir: str = DEFAULT_PID_DIR
    source: str = "defaults"

    @property
    def pidfile(self) -> str:
        return f"{self.pid_dir.rstrip('/')}/virtio-forwarder.pid"

    @property
    def vfs(self) -> list[str]:
        return list(self.static_vfs.values()) + self.extra_vfs

    def socket_path(self, relay: int) -> str:
        return f"{self.socket_dir.rstrip('/')}/{self.socket_pattern.replace('%u', str(relay))}"

    def socket_glob(self) -> str:
        return self.socket_path(0).replace("0", "N") if "%u" in self.socket_pattern else self.socket_path(0)

    def relay_of_socket(self, path: str) -> int | None:
        pat = re.escape(f"{self.socket_dir.rstrip('/')}/{self.socket_pattern}").replace("%u", r"(\d+)")
        m = re.fullmatch(pat, path)
        return int(m.group(1)) if m else None

    def vf_of_relay(self, relay: int) -> str | None:
        return self.static_vfs.get(relay)

    def worker_nodes(self, host) -> list[int]:
        if self.workers:
            return sorted({host.cpu.node_of(c) for c in self.workers if host.cpu.node_of(c) is not None})
        if self.numa_node is not None:
            return [self.numa_node]
        return []

    def resolve(self, host) -> "Intent":
        """Fill what the host itself tells (1 GiB guest pages from guest XMLs)."""
        if self.guest_1g_pages is None:
            self.guest_1g_pages = sum(-(-d.memory_kb // 1048576) for d in host.virt.domains if d.uses_1g)
        return self

    def to_json(self) -> dict:
        return {"source": self.source, "driver": self.driver, "jumbo": self.jumbo, "relays": self.relays,
                "numa_node": self.numa_node, "workers": self.workers, "main_lcore": self.main_lcore,
                "vfs": {str(k): v for k, v in self.static_vfs.items()}, "unassigned_vfs": self.extra_vfs,
                "huge_dir": self.huge_dir, "vhost_client": self.vhost_client,
                "socket": self.socket_path(0).replace("0", "%u") if "%u" in self.socket_pattern
                else self.socket_path(0),
                "guest_1g_pages": self.guest_1g_pages}


def from_config(root: Root, path: str = FORWARDER_CONFIG) -> Intent:
    """Intent from the forwarder's config file in `root` (defaults when it does not exist)."""
    from forwarder import config as fc

    if root.read(path) is None:  # also records the file for `capture`
        return Intent()
    env = fc.read_env_file(root.path(path))
    s = fc.ForwarderSettings.from_env(env)
    return Intent(driver="vfio-pci" if s.bind_vfio_pci else "igb_uio", jumbo=bool(s.jumbo or s.tso),
                  relays=len(set(rid for _, rid in s.static_vfs) | set(s.cpu_pins)) or None, workers=list(s.cpus), main_lcore=s.master_lcore,
                  static_vfs={rid: vf for vf, rid in s.static_vfs}, huge_dir=s.huge_dir,
                  vhost_client=s.vhost_client, socket_dir=s.socket_dir, socket_pattern=s.socket_pattern,
                  pid_dir=s.pid_dir, source=path)
