"""Hugepages per NUMA node and size, hugetlbfs mounts, vm.max_map_count: probes and checks."""
from __future__ import annotations

import re
from dataclasses import dataclass

from .checks import check, fail, ok, skip, warn
from .root import Root

NODE_DIR = "/sys/devices/system/node"
GLOBAL_DIR = "/sys/kernel/mm/hugepages"
MEMINFO = "/proc/meminfo"
MOUNTS = "/proc/mounts"
MAX_MAP_COUNT = "/proc/sys/vm/max_map_count"

SIZE_2M = 2048  # kB
SIZE_1G = 1048576
# what the forwarder's EAL needs on each node hosting workers, in 2 MiB pages (original's advice)
NEED_2M_JUMBO = 1375  # 2750 MB: jumbo frames / TSO mempools
NEED_2M_PLAIN = 384
DEFAULT_MOUNTS = {SIZE_2M: "/dev/hugepages", SIZE_1G: "/dev/hugepages-1G"}


def size_label(kb: int) -> str:
    return f"{kb // 1048576}G" if kb >= 1048576 else f"{kb // 1024}M"


def parse_size(text: str) -> int:
    """'2M', '2048k', '1G', '1024M', '2097152' (bytes) -> kB."""
    m = re.fullmatch(r"\s*(\d+)\s*([kKmMgG]?)[bB]?\s*", text)
    if not m:
        raise ValueError(f"bad page size {text!r} (expected e.g. 2M or 1G)")
    n, unit = int(m.group(1)), m.group(2).lower()
    return {"k": n, "m": n * 1024, "g": n * 1048576, "": n // 1024}[unit]


@dataclass
class Pool:
    node: int | None  # None: the global pool
    size_kb: int
    total: int
    free: int
    surplus: int
    reserved: int = 0  # only known globally


@dataclass
class Mount:
    source: str
    target: str
    fstype: str
    options: dict[str, str]

    @property
    def pagesize_kb(self) -> int | None:
        ps = self.options.get("pagesize")
        return parse_size(ps) if ps else None


@dataclass
class HugeInfo:
    pools: list[Pool]
    default_kb: int
    mem_total_kb: int
    node_mem_kb: dict[int, int]
    mounts: list[Mount]
    max_map_count: int | None

    def pool(self, size_kb: int, node: int | None = None) -> Pool | None:
        for p in self.pools:
            if p.size_kb == size_kb and p.node == node:
                return p
        return None

    def nodes(self) -> list[int]:
        return sorted({p.node for p in self.pools if p.node is not None})

    @property
    def hugetlbfs(self) -> list[Mount]:
        return [m for m in self.mounts if m.fstype == "hugetlbfs"]

    def mount_size(self, m: Mount) -> int:
        return m.pagesize_kb or self.default_kb

    def total_pages(self) -> int:
        return sum(p.total for p in self.pools if p.node is None)


def _pool(root: Root, d: str, node: int | None) -> Pool:
    size = int(d.rsplit("-", 1)[1].rstrip("kB"))
    return Pool(node=node, size_kb=size, total=root.read_int(f"{d}/nr_hugepages", 0),
                free=root.read_int(f"{d}/free_hugepages", 0),
                surplus=root.read_int(f"{d}/surplus_hugepages", 0),
                reserved=root.read_int(f"{d}/resv_hugepages", 0) if node is None else 0)


def parse_mounts(text: str) -> list[Mount]:
    out = []
    for line in text.splitlines():
        f = line.split()
        if len(f) < 4:
            continue
        dec = lambda s: re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), s)
        opts = {}
        for o in f[3].split(","):
            k, _, v = o.partition("=")
            opts[k] = v
        out.append(Mount(dec(f[0]), dec(f[1]), f[2], opts))
    return out


def probe(root: Root) -> HugeInfo:
    pools = [_pool(root, d, None) for d in root.glob(GLOBAL_DIR, "hugepages-*kB")]
    node_mem = {}
    for nd in root.glob(NODE_DIR, "node[0-9]*"):
        n = int(nd.rsplit("node", 1)[1])
        pools += [_pool(root, d, n) for d in root.glob(f"{nd}/hugepages", "hugepages-*kB")]
        m = re.search(r"MemTotal:\s+(\d+)", root.read(f"{nd}/meminfo", "") or "")
        if m:
            node_mem[n] = int(m.group(1))
    meminfo = root.read(MEMINFO, "") or ""
    m = re.search(r"Hugepagesize:\s+(\d+)", meminfo)
    t = re.search(r"MemTotal:\s+(\d+)", meminfo)
    return HugeInfo(pools=pools, default_kb=int(m.group(1)) if m else SIZE_2M,
                    mem_total_kb=int(t.group(1)) if t else 0, node_mem_kb=node_mem,
                    mounts=parse_mounts(root.read(MOUNTS, "") or ""),
                    max_map_count=root.read_int(MAX_MAP_COUNT))


# ---------------------------------------------------------------- checks

def need_2m(intent) -> int:
    return NEED_2M_JUMBO if intent.jumbo else NEED_2M_PLAIN


@check("hugepages.2m", "Memory", "Checking 2 MiB hugepages on worker NUMA nodes",
       "free 2 MiB hugepages on every NUMA node that hosts forwarder workers >= 1375 "
       "(2750 MB, jumbo/TSO) or 384 without jumbo")
def check_2m(host, intent):
    hp = host.huge
    need = need_2m(intent)
    nodes = intent.worker_nodes(host) or hp.nodes() or [0]
    multi = len(hp.nodes()) > 1
    for n in nodes:
        p = hp.pool(SIZE_2M, n) or (hp.pool(SIZE_2M, None) if not hp.nodes() else None)
        if p is None:
            yield fail("the kernel offers no 2 MiB hugepages", "use a kernel with CONFIG_HUGETLBFS",
                       subject=f"node{n}")
            continue
        short = need - p.free
        if short <= 0:
            yield ok(f"{p.free} free of {p.total} (need {need})", subject=f"node{n}")
            continue
        split = (f"; boot-time hugepages=N is split evenly across the {len(hp.nodes())} nodes, "
                 f"so reserve N = {need} x {len(hp.nodes())}") if multi else ""
        yield fail(f"{p.free} free of {p.total} on node {n}, need {need}{split}",
                   f"vio4wd-tool hugepages --node {n} --pages-2m {p.total + short} "
                   f"(or role var vio4wd_host_hugepages_2m)", subject=f"node{n}")


@check("hugepages.1g", "Memory", "Checking 1 GiB hugepages for guest memory",
       "guests configured for 1 GiB pages need pdpe1gb and enough free 1 GiB pages")
def check_1g(host, intent):
    want = intent.guest_1g_pages
    if not want:
        return skip("no guest uses 1 GiB pages")
    if "pdpe1gb" not in host.cpu.flags:
        return fail("CPU lacks pdpe1gb: no 1 GiB pages possible",
                    "use 2 MiB pages for guests, or a CPU model with pdpe1gb")
    pools = [p for p in host.huge.pools if p.size_kb == SIZE_1G and p.node is None]
    free = pools[0].free if pools else 0
    if free < want:
        return fail(f"{free} free 1 GiB pages, guests need {want}",
                    f"add 'hugepagesz=1G hugepages={want}' to the kernel args: vio4wd-tool grub "
                    f"--pages-1g {want} (1 GiB pages are reliably reserved only at boot)")
    return ok(f"{free} free 1 GiB pages (need {want})")


@check("hugetlbfs.mounts", "Memory", "Checking hugetlbfs mounts",
       "exactly one hugetlbfs mount per page size in use; no path mounted twice; no directory "
       "with two page sizes (each deadlocks DPDK's EAL on its own flock)")
def check_mounts(host, intent):
    hp = host.huge
    by_path: dict[str, list] = {}
    for m in hp.hugetlbfs:
        by_path.setdefault(m.target, []).append(m)
    problems = False
    for path, ms in by_path.items():
        sizes = sorted({hp.mount_size(m) for m in ms})
        if len(sizes) > 1:
            problems = True
            yield fail(f"{path} carries hugetlbfs mounts of two page sizes ("
                       + ", ".join(size_label(s) for s in sizes) + "): DPDK's EAL hangs",
                       f"umount {path} until none is left, then mount one size per directory: "
                       f"vio4wd-tool hugepages --mounts", subject=path)
        elif len(ms) > 1:
            problems = True
            yield fail(f"{path} is mounted {len(ms)} times: DPDK's EAL deadlocks on its own flock",
                       f"umount {path} (repeat until one mount is left); check fstab and mount units",
                       subject=path)
    by_size: dict[int, list[str]] = {}
    for path, ms in by_path.items():
        for s in {hp.mount_size(m) for m in ms}:
            by_size.setdefault(s, []).append(path)
    for s, paths in by_size.items():
        if len(paths) > 1:
            yield warn(f"{size_label(s)} pages are mounted at {len(paths)} places: " + ", ".join(paths),
                       "keep one mount per page size (vio4wd-tool hugepages --mounts)",
                       subject=size_label(s))
    huge_dir = intent.huge_dir
    mine = by_path.get(huge_dir)
    if not mine:
        yield fail(f"the forwarder's huge dir {huge_dir} is not a hugetlbfs mount",
                   f"mount -t hugetlbfs -o pagesize=2M nodev {huge_dir} (persistent: "
                   f"vio4wd-tool hugepages --mounts)", subject=huge_dir)
    elif any(hp.mount_size(m) != SIZE_2M for m in mine):
        yield fail(f"the forwarder's huge dir {huge_dir} is not a 2 MiB hugetlbfs mount",
                   f"mount a 2 MiB hugetlbfs at {huge_dir} or point VIRTIOFWD_HUGETLBFS_MOUNT_POINT "
                   "at one", subject=huge_dir)
    elif not problems:
        yield ok(f"one mount per size; {huge_dir} is 2 MiB hugetlbfs", subject=huge_dir)
    if intent.guest_1g_pages and SIZE_1G not in by_size:
        yield fail("guests use 1 GiB pages but no 1 GiB hugetlbfs is mounted",
                   "mount -t hugetlbfs -o pagesize=1G nodev /dev/hugepages-1G "
                   "(vio4wd-tool hugepages --mounts)", subject="1G")


@check("sysctl.max_map_count", "Memory", "Checking vm.max_map_count",
       "vm.max_map_count > 2 x total hugepages (DPDK maps each page)")
def check_max_map_count(host, intent):
    hp = host.huge
    total = hp.total_pages()
    need = max(total, need_2m(intent)) * 2
    v = hp.max_map_count
    if v is None:
        return skip("vm.max_map_count not readable")
    if v <= need:
        return fail(f"vm.max_map_count={v}, must exceed 2 x {need // 2} pages",
                    f"sysctl -w vm.max_map_count={need + 1} and persist in /etc/sysctl.d "
                    "(vio4wd-tool hugepages does both)")
    return ok(f"vm.max_map_count={v} > {need}")
