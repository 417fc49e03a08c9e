"""PCI devices, SR-IOV PFs/VFs, their net interfaces: probe and address syntax."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from .root import Root

PCI_DIR = "/sys/bus/pci/devices"
NET_DIR = "/sys/class/net"
ROUTE4 = "/proc/net/route"
ROUTE6 = "/proc/net/ipv6_route"
PCI_RE = re.compile(r"[0-9a-f]{4}:[0-9a-f]{2}:[0-1][0-9a-f]\.[0-7]")
ETH_CLASS = "0x0200"


class PciAddressError(ValueError):
    pass


def normalize_pci(text: str) -> str:
    """Strict `dddd:bb:dd.f` (hex, case-insensitive) -> lower case; raises PciAddressError."""
    t = text.strip().lower()
    if not PCI_RE.fullmatch(t):
        raise PciAddressError(f"bad PCI address {text!r}: expected domain:bus:slot.function "
                              "like 0000:05:10.1 (see `vio4wd-tool vfs status`)")
    return t


def is_pci(text: str) -> bool:
    return bool(PCI_RE.fullmatch(text.strip().lower()))


@dataclass
class NetIf:
    name: str
    mac: str
    operstate: str
    addresses: list[str] = field(default_factory=list)  # global-scope addresses
    routes: int = 0  # routes via this interface (beyond link-local/multicast)
    flags: int | None = None  # /sys/class/net/IF/flags (IFF_UP = 0x1); None when not read

    @property
    def admin_up(self) -> bool:
        """Administratively up (`ip link set IF up`), whether or not it has carrier."""
        if self.flags is not None:
            return bool(self.flags & 0x1)
        return self.operstate in ("up", "unknown", "dormant")

    @property
    def carries_traffic(self) -> bool:
        return bool(self.addresses or self.routes)


@dataclass
class PciDevice:
    addr: str
    cls: str
    vendor: str
    device: str
    numa_node: int
    driver: str | None
    driver_override: str | None
    iommu_group: int | None
    sriov_totalvfs: int | None
    sriov_numvfs: int | None
    physfn: str | None
    virtfns: list[str]
    net: list[NetIf]

    @property
    def is_vf(self) -> bool:
        return self.physfn is not None

    @property
    def is_pf(self) -> bool:
        return self.sriov_totalvfs is not None

    @property
    def mac(self) -> str | None:
        return self.net[0].mac if self.net else None


@dataclass
class PciInfo:
    devices: dict[str, PciDevice]

    def get(self, addr: str) -> PciDevice | None:
        return self.devices.get(addr.lower())

    def by_ifname(self, name: str) -> PciDevice | None:
        for d in self.devices.values():
            if any(n.name == name for n in d.net):
                return d
        return None


def _routes(root: Root) -> dict[str, int]:
    count: dict[str, int] = {}
    for line in (root.read(ROUTE4, "") or "").splitlines()[1:]:
        f = line.split()
        if f:
            count[f[0]] = count.get(f[0], 0) + 1
    for line in (root.read(ROUTE6, "") or "").splitlines():
        f = line.split()
        if len(f) < 10:
            continue
        dst = f[0]
        if dst.startswith("fe80") or dst.startswith("ff"):
            continue
        count[f[9]] = count.get(f[9], 0) + 1
    return count


def _addresses(root: Root) -> dict[str, list[str]]:
    text = root.command("ip-addr", ["ip", "-j", "addr", "show"])
    out: dict[str, list[str]] = {}
    try:
        data = json.loads(text) if text else []
    except ValueError:
        data = []
    for link in data:
        for a in link.get("addr_info", []):
            if a.get("scope") == "global":
                out.setdefault(link.get("ifname", ""), []).append(f"{a.get('local')}/{a.get('prefixlen')}")
    return out


def _hex(text: str | None) -> int | None:
    try:
        return int(text, 16) if text else None
    except ValueError:
        return None


def probe(root: Root) -> PciInfo:
    routes = _routes(root)
    addrs = _addresses(root)
    devices = {}
    for d in root.glob(PCI_DIR, "*"):
        addr = d.rsplit("/", 1)[1]
        nets = []
        # a virtio NIC's interface hangs below its virtioN child device
        ifnames = root.listdir(f"{d}/net") + [i for v in root.glob(d, "virtio[0-9]*") for i in root.listdir(f"{v}/net")]
        for ifname in ifnames:
            nets.append(NetIf(name=ifname, mac=(root.read(f"{NET_DIR}/{ifname}/address", "") or "").lower(),
                              operstate=root.read(f"{NET_DIR}/{ifname}/operstate", "unknown") or "unknown",
                              addresses=addrs.get(ifname, []), routes=routes.get(ifname, 0),
                              flags=_hex(root.read(f"{NET_DIR}/{ifname}/flags"))))
        virtfns = sorted((root.link_name(f"{d}/{v}") for v in root.listdir(d) if v.startswith("virtfn")),
                         key=lambda x: x or "")
        grp = root.link_name(f"{d}/iommu_group")
        override = root.read(f"{d}/driver_override")
        devices[addr] = PciDevice(
            addr=addr, cls=(root.read(f"{d}/class", "") or "")[:6], vendor=root.read(f"{d}/vendor", "") or "",
            device=root.read(f"{d}/device", "") or "", numa_node=max(root.read_int(f"{d}/numa_node", -1), 0),
            driver=root.link_name(f"{d}/driver"),
            driver_override=None if override in (None, "", "(null)") else override,
            iommu_group=int(grp) if grp and grp.isdigit() else None,
            sriov_totalvfs=root.read_int(f"{d}/sriov_totalvfs"), sriov_numvfs=root.read_int(f"{d}/sriov_numvfs"),
            physfn=root.link_name(f"{d}/physfn"), virtfns=[v for v in virtfns if v], net=nets)
    return PciInfo(devices)

# the vf.* doctor checks live in sriov.py, beside the VF actions
