"""CPUs: topology probe (online, siblings, NUMA node, flags), CPU-list syntax, doctor checks."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from .checks import check, fail, ok, skip
from .root import Root

CPU_DIR = "/sys/devices/system/cpu"
NODE_DIR = "/sys/devices/system/node"
CPUINFO = "/proc/cpuinfo"

# Debian 12's DPDK 22.11 is built for x86-64 with -march=corei7: SSE4.2 (and SSSE3 that DPDK needs)
REQUIRED_FLAGS = {"ssse3": "DPDK's vector paths", "sse4_2": "Debian 12's DPDK build (-march=corei7)"}


def parse_cpulist(text: str) -> list[int]:
    """'0-3,8,10-11' -> [0, 1, 2, 3, 8, 10, 11]; raises ValueError naming the bad part."""
    cpus: set[int] = set()
    text = text.strip()
    if not text:
        return []
    for part in text.split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)(?:-(\d+))?(?::(\d+)/(\d+))?", part)
        if not m:
            raise ValueError(f"bad CPU list element {part!r} in {text!r} (expected e.g. 2-5,8)")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) else lo
        if hi < lo:
            raise ValueError(f"bad CPU range {part!r} (end before start)")
        if m.group(3):
            used, grp = int(m.group(3)), int(m.group(4))
            for base in range(lo, hi + 1, grp):
                cpus.update(c for c in range(base, min(base + used, hi + 1)))
        else:
            cpus.update(range(lo, hi + 1))
    return sorted(cpus)


def format_cpulist(cpus) -> str:
    """[0, 1, 2, 5] -> '0-2,5'."""
    cpus = sorted(set(cpus))
    out, i = [], 0
    while i < len(cpus):
        j = i
        while j + 1 < len(cpus) and cpus[j + 1] == cpus[j] + 1:
            j += 1
        out.append(str(cpus[i]) if i == j else f"{cpus[i]}-{cpus[j]}")
        i = j + 1
    return ",".join(out)


def parse_mask(text: str) -> list[int]:
    """Kernel/irqbalance hex mask ('ff,00000001' or '0x3') -> CPU list."""
    t = text.strip().lower().replace(",", "")
    if t.startswith("0x"):
        t = t[2:]
    if not t or not re.fullmatch(r"[0-9a-f]+", t):
        raise ValueError(f"bad CPU mask {text!r} (expected hex, e.g. 0x3c)")
    v = int(t, 16)
    return [i for i in range(v.bit_length()) if v >> i & 1]


def format_mask(cpus) -> str:
    v = 0
    for c in cpus:
        v |= 1 << c
    return f"{v:x}"


@dataclass
class Cpu:
    id: int
    online: bool
    node: int
    core: int | None
    package: int | None
    siblings: list[int]


@dataclass
class CpuInfo:
    cpus: dict[int, Cpu]
    nodes: dict[int, list[int]]  # NUMA node -> CPUs
    flags: set[str] = field(default_factory=set)
    model: str = ""
    vendor: str = ""

    @property
    def online(self) -> list[int]:
        return [c.id for c in self.cpus.values() if c.online]

    def node_of(self, cpu: int) -> int | None:
        c = self.cpus.get(cpu)
        return c.node if c else None

    def siblings_of(self, cpu: int) -> list[int]:
        c = self.cpus.get(cpu)
        return [s for s in (c.siblings if c else []) if s != cpu]


def probe(root: Root) -> CpuInfo:
    present = parse_cpulist(root.read(f"{CPU_DIR}/present", "") or root.read(f"{CPU_DIR}/possible", "0"))
    online = set(parse_cpulist(root.read(f"{CPU_DIR}/online", "") or ""))
    nodes: dict[int, list[int]] = {}
    for d in root.glob(NODE_DIR, "node[0-9]*"):
        n = int(d.rsplit("node", 1)[1])
        nodes[n] = parse_cpulist(root.read(f"{d}/cpulist", "") or "")
    node_of = {c: n for n, cs in nodes.items() for c in cs}
    cpus = {}
    for c in present:
        base = f"{CPU_DIR}/cpu{c}/topology"
        sib = root.read(f"{base}/thread_siblings_list")
        cpus[c] = Cpu(id=c, online=c in online, node=node_of.get(c, 0),
                      core=root.read_int(f"{base}/core_id"),
                      package=root.read_int(f"{base}/physical_package_id"),
                      siblings=parse_cpulist(sib) if sib else [c])
    if not nodes:
        nodes = {0: sorted(cpus)}
    first: dict[str, str] = {}
    for line in (root.read(CPUINFO, "") or "").splitlines():
        if not line.strip():
            break  # the first processor's block is enough
        key, _, val = line.partition(":")
        first.setdefault(key.strip(), val.strip())
    return CpuInfo(cpus=cpus, nodes=nodes, flags=set(first.get("flags", "").split()),
                   model=first.get("model name", ""), vendor=first.get("vendor_id", ""))


@check("cpu.flags", "CPU", "Checking CPU instruction sets for DPDK",
       "SSSE3 for DPDK and SSE4.2 for Debian 12's DPDK 22.11 build")
def check_flags(host, intent):
    flags = host.cpu.flags
    if not flags:
        return skip("no CPU flags in /proc/cpuinfo")
    missing = [f"{f} ({why})" for f, why in REQUIRED_FLAGS.items() if f not in flags]
    if missing:
        return fail("missing " + ", ".join(missing),
                    "run on a CPU (or a VM CPU model, e.g. QEMU -cpu host) that exposes these flags")
    return ok("ssse3 and sse4_2 present")
