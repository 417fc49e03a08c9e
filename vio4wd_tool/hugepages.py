"""Hugepages per NUMA node and size, hugetlbfs mounts, vm.max_map_count: probes and checks."""
from __future__ import annotations

import re
from dataclasses import dataclass

from .actions import (ActionError, ActionResult, Change, emit, execute, file_change, require_root, run_cmd,
                      symlink, write_sysfs)
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


def forwarder_held(root: Root, pidfile: str) -> tuple[int | None, dict[tuple[int, int], int]]:
    """(pid, {(node, size_kB): pages}) of hugepages the running forwarder maps, from its pidfile and
    /proc/PID/numa_maps; (None, {}) when it does not run. Its own pages count towards its need."""
    text = root.read(pidfile) or ""
    pid = int(text.split()[0]) if text.split() and text.split()[0].isdigit() else None
    maps = root.read(f"/proc/{pid}/numa_maps") if pid else None
    if maps is None:
        return None, {}
    held: dict[tuple[int, int], int] = {}
    for line in maps.splitlines():
        if " huge" not in line:
            continue
        m = re.search(r"kernelpagesize_kB=(\d+)", line)
        if not m:
            continue
        for node, n in re.findall(r"\bN(\d+)=(\d+)", line):
            key = (int(node), int(m.group(1)))
            held[key] = held.get(key, 0) + int(n)
    return pid, held


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
    pid, held = forwarder_held(host.root, intent.pidfile)
    for n in nodes:
        p = hp.pool(SIZE_2M, n) or (hp.pool(SIZE_2M, None) if not hp.nodes() else None)
        if p is None:
            yield fail("the kernel offers no 2 MiB hugepages", "use a kernel with CONFIG_HUGETLBFS",
                       subject=f"node{n}")
            continue
        own = held.get((n, SIZE_2M), 0) if hp.nodes() else sum(v for (_, k), v in held.items() if k == SIZE_2M)
        mine = f" + {own} held by the running forwarder (pid {pid})" if own else ""
        short = need - p.free - own
        if short <= 0:
            yield ok(f"{p.free} free{mine} of {p.total} (need {need})", subject=f"node{n}")
            continue
        split = (f"; boot-time hugepages=N is split evenly across the {len(hp.nodes())} nodes, "
                 f"so reserve N = {need} x {len(hp.nodes())}") if multi else ""
        yield fail(f"{p.free} free{mine} of {p.total} on node {n}, need {need}{split}",
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


# ---------------------------------------------------------------- action: vio4wd-tool hugepages
#
# Runtime reservation per node and size, one hugetlbfs mount per size (persisted as systemd mount
# units), <mount>/libvirt owned by the qemu user and kvm, vm.max_map_count > 2 x pages.  In a
# captured tree (a non-live Root) the tree's files stand in for the kernel: nr_hugepages is
# written there and a mount is appended to its /proc/mounts, so the file-level logic and
# idempotence can be tested where the kernel is not involved.

SYSCTL_FILE = "/etc/sysctl.d/80-vio4wd-hugepages.conf"
UNIT_DIR = "/etc/systemd/system"
TMPFILES_FILE = "/etc/tmpfiles.d/vio4wd-hugepages.conf"
COMPACT_MEMORY = "/proc/sys/vm/compact_memory"
MAX_MAP_COUNT_DEFAULT = 65530
MANAGED = "# managed by vio4wd-tool hugepages: edits are overwritten\n"


def pool_file(size_kb: int, node: int | None) -> str:
    if node is None:
        return f"{GLOBAL_DIR}/hugepages-{size_kb}kB/nr_hugepages"
    return f"{NODE_DIR}/node{node}/hugepages/hugepages-{size_kb}kB/nr_hugepages"


def systemd_escape_path(path: str) -> str:
    """`systemd-escape --path`: /dev/hugepages-1G -> dev-hugepages\\x2d1G."""
    p = path.strip("/")
    if not p:
        return "-"
    out = []
    for i, ch in enumerate(p):
        if ch == "/":
            out.append("-")
        elif ch.isascii() and (ch.isalnum() or ch in ":_" or (ch == "." and i > 0)):
            out.append(ch)
        else:
            out.append("".join(f"\\x{b:02x}" for b in ch.encode()))
    return "".join(out)


def mount_unit_name(path: str) -> str:
    return systemd_escape_path(path) + ".mount"


def mount_unit_text(path: str, size_kb: int) -> str:
    return (MANAGED + "[Unit]\n"
            f"Description=Huge Pages File System ({size_label(size_kb)} pages) for vio4wd\n"
            "Documentation=https://docs.kernel.org/admin-guide/mm/hugetlbpage.html\n"
            "DefaultDependencies=no\nBefore=sysinit.target\n"
            f"ConditionPathExists={GLOBAL_DIR}/hugepages-{size_kb}kB\n"
            "ConditionCapability=CAP_SYS_ADMIN\nConditionVirtualization=!private-users\n\n"
            "[Mount]\nWhat=hugetlbfs\n"
            f"Where={path}\nType=hugetlbfs\nOptions=pagesize={size_label(size_kb)}\n\n"
            "[Install]\nWantedBy=sysinit.target\n")


@dataclass
class HugeRequest:
    """What `vio4wd-tool hugepages` should make true."""

    pages: dict  # (size_kb, node or None) -> pages
    mounts: dict  # size_kb -> mount point ({} = leave mounts alone)
    qemu_user: str | None = None  # "user[:group]"; None: libvirt-qemu/qemu and kvm when present
    retries: int = 5
    persist: bool = True
    persist_root: Root | None = None  # where units/sysctl.d/tmpfiles.d go (default: the host root)


def _node_dirs(root: Root) -> list[int]:
    return sorted(int(d.rsplit("node", 1)[1]) for d in root.glob(NODE_DIR, "node[0-9]*"))


def validate(root: Root, hp: HugeInfo, req: HugeRequest) -> None:
    """Refuse bad input before anything is touched; messages name the value and the fix."""

    nodes = _node_dirs(root)
    per_node_kb: dict = {}
    for (size, node), n in req.pages.items():
        flag = f"--pages-{size_label(size).lower()}"
        if n < 0:
            raise ActionError(f"{flag} {n}: a page count cannot be negative")
        if node is not None and node not in nodes:
            have = ", ".join(map(str, nodes)) or "none"
            raise ActionError(f"--node {node}: no such NUMA node (this host has node(s) {have})")
        if not root.exists(pool_file(size, node).rsplit("/", 1)[0]):
            why = " (the CPU lacks pdpe1gb?)" if size == SIZE_1G else ""
            raise ActionError(f"{flag}: the kernel offers no {size_label(size)} pages"
                              + (f" on node {node}" if node is not None else "") + why)
        per_node_kb[node] = per_node_kb.get(node, 0) + n * size
    for node, kb in per_node_kb.items():
        mem = hp.node_mem_kb.get(node) if node is not None else hp.mem_total_kb
        if mem and kb >= mem:
            raise ActionError(f"{kb // 1024} MiB of hugepages do not fit into the {mem // 1024} MiB of "
                              + (f"node {node}" if node is not None else "this host")
                              + ": lower --pages-2m/--pages-1g (or reserve on another --node)")
    for size, path in req.mounts.items():
        if not path.startswith("/") or path.rstrip("/") in ("", "/dev", "/proc", "/sys", "/run"):
            raise ActionError(f"mount point {path!r} for {size_label(size)} pages: give an absolute "
                              "directory of its own, like /dev/hugepages")
    if len(set(req.mounts.values())) != len(req.mounts):
        raise ActionError("the 2 MiB and 1 GiB mounts need different directories (one page size per "
                          "directory, or DPDK's EAL hangs)")


def _reserve(root: Root, size_kb: int, node: int | None, want: int, retries: int) -> int:
    """Write nr_hugepages, read it back; retry (compacting memory) a bounded number of times."""
    import time

    f = pool_file(size_kb, node)
    if not root.live:
        _tree_set_pool(root, size_kb, node, want)
        return root.read_int(f, 0)
    got = 0
    for attempt in range(max(retries, 1)):
        write_sysfs(root.path(f), f"{want}\n")
        got = root.read_int(f, 0)
        if got == want:
            return got
        if got > want:  # pages in use cannot be freed: the kernel keeps them as surplus
            return got
        try:
            write_sysfs(root.path(COMPACT_MEMORY), "1\n")
        except ActionError:
            pass
        time.sleep(0.2 * (attempt + 1))
    where = f" on node {node}" if node is not None else ""
    raise ActionError(f"reserved only {got} of {want} {size_label(size_kb)} pages{where} after {retries} "
                      f"tries (shortfall {want - got}): memory is fragmented or in use; free memory and "
                      "run again, or reserve at boot (vio4wd-tool grub)")


def _tree_set_pool(root: Root, size_kb: int, node: int | None, want: int) -> None:
    """A captured tree's stand-in for the kernel: set the pool, keep free/global counts consistent."""
    f = root.path(pool_file(size_kb, node))
    old = root.read_int(pool_file(size_kb, node), 0)
    delta = want - old
    f.write_text(f"{want}\n")
    dirs = [f.parent]
    if node is not None:
        dirs.append(root.path(f"{GLOBAL_DIR}/hugepages-{size_kb}kB"))
        g = dirs[-1] / "nr_hugepages"
        if g.exists():
            g.write_text(f"{max(int(g.read_text().strip() or 0) + delta, 0)}\n")
    for d in dirs:
        fr = d / "free_hugepages"
        if fr.exists():
            fr.write_text(f"{max(int(fr.read_text().strip() or 0) + delta, 0)}\n")


def _mount(root: Root, size_kb: int, path: str) -> None:

    real = root.path(path)
    real.mkdir(parents=True, exist_ok=True)
    if root.live:
        run_cmd(["mount", "-t", "hugetlbfs", "-o", f"pagesize={size_label(size_kb)}", "hugetlbfs", path])
    else:
        mounts = root.path(MOUNTS).resolve()
        mounts.parent.mkdir(parents=True, exist_ok=True)
        with open(mounts, "a") as f:
            f.write(f"hugetlbfs {path} hugetlbfs rw,relatime,pagesize={size_label(size_kb)} 0 0\n")


def _qemu_owner(root: Root, spec: str | None):
    """(user, group, uid, gid) of the qemu user and kvm group, or None when libvirt is absent."""
    from . import virt

    users, groups = {}, {}
    for line in (root.read(virt.PASSWD, "") or "").splitlines():
        f = line.split(":")
        if len(f) >= 4 and f[2].isdigit() and f[3].isdigit():
            users[f[0]] = (int(f[2]), int(f[3]))
    for line in (root.read(virt.GROUP, "") or "").splitlines():
        f = line.split(":")
        if len(f) >= 3 and f[2].isdigit():
            groups[f[0]] = int(f[2])
    if spec:
        user, _, group = spec.partition(":")
        group = group or virt.KVM_GROUP
        if user not in users:
            raise ActionError(f"--qemu-user {spec}: no user {user!r} in /etc/passwd")
        if group not in groups:
            raise ActionError(f"--qemu-user {spec}: no group {group!r} in /etc/group")
        return user, group, users[user][0], groups[group]
    for user in virt.QEMU_USERS:
        if user in users and virt.KVM_GROUP in groups:
            return user, virt.KVM_GROUP, users[user][0], groups[virt.KVM_GROUP]
    return None


def hugepages_action(root: Root, req: HugeRequest):
    """Plan (and, through `actions.execute`, apply) reservations, mounts and max_map_count."""

    hp = probe(root)
    validate(root, hp, req)
    proot = req.persist_root or root
    res = ActionResult("hugepages")
    reserved: dict = {}

    # 1. runtime reservations
    final: dict = {}
    for (size, node), want in sorted(req.pages.items(), key=lambda kv: (kv[0][0], -1 if kv[0][1] is None else kv[0][1])):
        p = hp.pool(size, node)
        cur = p.total if p else 0
        final[(size, node)] = want
        key = f"{size_label(size)}" + (f"/node{node}" if node is not None else "")
        reserved[key] = {"size_kb": size, "node": node, "pages": want, "before": cur}
        if cur == want:
            continue
        where = f" on node {node}" if node is not None else ""

        def apply(size=size, node=node, want=want, key=key):
            reserved[key]["after"] = _reserve(root, size, node, want, req.retries)

        res.changes.append(Change(f"{'reserve' if want > cur else 'release'} {size_label(size)} pages{where}: "
                                  f"{cur} -> {want} ({pool_file(size, node)})", apply=apply))
    if req.pages:
        res.notes.append("runtime reservation only: reserve at boot too with vio4wd-tool grub")
    res.data["pages"] = reserved

    # 2. hugetlbfs mounts, one per size, persisted as mount units; libvirt dirs
    owner = _qemu_owner(root, req.qemu_user) if req.mounts else None
    tmpfiles = []
    for size, path in sorted(req.mounts.items()):
        path = "/" + path.strip("/")
        here = [m for m in hp.hugetlbfs if m.target == path]
        sizes = {hp.mount_size(m) for m in here}
        elsewhere = [m.target for m in hp.hugetlbfs if m.target != path and hp.mount_size(m) == size]
        if len(here) > 1:
            raise ActionError(f"{path} is mounted {len(here)} times: DPDK's EAL deadlocks on its own flock; "
                              f"umount {path} until one mount is left, then run again")
        if here and sizes != {size}:
            raise ActionError(f"{path} is a hugetlbfs of {size_label(sizes.pop())} pages, not "
                              f"{size_label(size)}: umount {path} or choose another --mount-"
                              f"{size_label(size).lower()}")
        if not here and elsewhere:
            raise ActionError(f"{size_label(size)} pages are already mounted at {elsewhere[0]}: a second "
                              f"mount at {path} is refused; use it (--mount-{size_label(size).lower()} "
                              f"{elsewhere[0]}) or umount it first")
        if not here:
            res.changes.append(Change(f"mount hugetlbfs ({size_label(size)} pages) at {path}",
                                      apply=lambda s=size, p=path: _mount(root, s, p)))
        if req.persist:
            unit = f"{UNIT_DIR}/{mount_unit_name(path)}"
            c = file_change(proot, unit, mount_unit_text(path, size),
                            after=lambda: _daemon_reload(proot))
            if c:
                res.changes.append(c)
            link = f"{UNIT_DIR}/sysinit.target.wants/{mount_unit_name(path)}"
            if proot.link_name(link) != mount_unit_name(path):
                res.changes.append(Change(f"enable {mount_unit_name(path)} ({link})",
                                          apply=lambda l=link, u=unit: symlink(proot, l, u)))
        if owner:
            user, group, uid, gid = owner
            d = f"{path}/libvirt"
            st = root.stat(d)
            tmpfiles.append(f"d {d} 0755 {user} {group} -\n")
            if st is None or (st.st_uid, st.st_gid) != (uid, gid):
                res.changes.append(Change(f"{'create' if st is None else 'chown'} {d} owned by {user}:{group}",
                                          apply=lambda d=d, uid=uid, gid=gid: _owned_dir(root, d, uid, gid)))
    if req.mounts and owner is None:
        res.notes.append("no qemu user (libvirt-qemu/qemu) with group kvm: <mount>/libvirt dirs skipped "
                         "(install libvirt-daemon-system, or give --qemu-user)")
    if tmpfiles and req.persist:
        c = file_change(proot, TMPFILES_FILE, MANAGED + "".join(tmpfiles))
        if c:
            res.changes.append(c)

    # 3. vm.max_map_count > 2 x pages (DPDK maps every page)
    if req.pages:
        total = 0
        nodes = hp.nodes()
        for size in {p.size_kb for p in hp.pools} | {s for s, _ in final}:
            if nodes:
                for n in nodes:
                    p = hp.pool(size, n)
                    total += final.get((size, n), p.total if p else 0)
            else:
                p = hp.pool(size, None)
                total += final.get((size, None), p.total if p else 0)
        live = hp.max_map_count or MAX_MAP_COUNT_DEFAULT
        persisted = None
        text = proot.read(SYSCTL_FILE)
        if text:
            m = re.search(r"^\s*vm\.max_map_count\s*=\s*(\d+)", text, re.M)
            persisted = int(m.group(1)) if m else None
        res.data["max_map_count"] = {"pages": total, "need_above": 2 * total, "live": live}
        if not (live > 2 * total and (persisted is None or persisted > 2 * total)):
            want = max(live, 2 * total + 1)
            if live < want:
                res.changes.append(Change(f"sysctl vm.max_map_count: {live} -> {want}",
                                          apply=lambda w=want: write_sysfs(root.path(MAX_MAP_COUNT), f"{w}\n")))
            if req.persist:
                c = file_change(proot, SYSCTL_FILE, MANAGED + f"vm.max_map_count = {want}\n")
                if c:
                    res.changes.append(c)
    return res


def _daemon_reload(proot: Root) -> None:

    if proot.live and proot.is_dir("/run/systemd/system"):
        run_cmd(["systemctl", "daemon-reload"])



def _owned_dir(root: Root, d: str, uid: int, gid: int) -> None:
    import os

    real = root.path(d)
    real.mkdir(parents=True, exist_ok=True)
    os.chown(real, uid, gid)
    os.chmod(real, 0o755)


def request_from_plan(plan: dict) -> dict:
    """(size_kb, node) -> pages from a vio4wd.plan/1 plan."""
    pages = {}
    for key, size in (("hugepages_2m", SIZE_2M), ("hugepages_1g", SIZE_1G)):
        for node, n in (plan.get(key) or {}).items():
            pages[(size, int(node))] = int(n)
    return pages


def load_plan_file(path: str, root: Root | None = None) -> dict:
    """The saved plan (`plan.load_plan`: errors name the fix)."""
    from .plan import load_plan

    return load_plan(path, root)


DEFAULT_PLAN = "/etc/vio4wd/plan.json"


def register(sub) -> None:
    p = sub.add_parser("hugepages", help="reserve hugepages per NUMA node, mount hugetlbfs once per size, "
                       "libvirt dirs, vm.max_map_count",
                       description="Reserve hugepages at runtime per NUMA node and size, mount hugetlbfs "
                       "once per page size (persisted as systemd mount units), create <mount>/libvirt for "
                       "the qemu user, and keep vm.max_map_count above 2 x pages (persisted in "
                       "/etc/sysctl.d). Without options: everything the plan file asks for.")
    p.add_argument("--root", default="/", help="act on a captured tree instead of this host")
    p.add_argument("--node", type=int, help="NUMA node for --pages-2m/--pages-1g (default: the only node)")
    p.add_argument("--pages-2m", type=int, metavar="N", help="2 MiB pages to hold on the node (total, not added)")
    p.add_argument("--pages-1g", type=int, metavar="N", help="1 GiB pages to hold on the node")
    p.add_argument("--mounts", action="store_true", help="mount hugetlbfs per size (2 MiB; 1 GiB when the "
                   "kernel offers it), persist, create libvirt dirs")
    p.add_argument("--mount-2m", default=DEFAULT_MOUNTS[SIZE_2M], metavar="DIR")
    p.add_argument("--mount-1g", default=DEFAULT_MOUNTS[SIZE_1G], metavar="DIR")
    p.add_argument("--qemu-user", metavar="USER[:GROUP]", help="owner of <mount>/libvirt (default "
                   "libvirt-qemu or qemu, group kvm)")
    p.add_argument("--retries", type=int, default=5, help="reservation read-back attempts (default 5)")
    p.add_argument("--plan", metavar="PATH", help=f"take pages per node from a plan file (default "
                   f"{DEFAULT_PLAN} when no other option is given)")
    p.add_argument("--no-persist", dest="persist", action="store_false",
                   help="runtime only: no mount units, sysctl.d or tmpfiles.d files")
    p.add_argument("--persist-root", metavar="DIR", help="write the persistent files below DIR (an image)")
    p.add_argument("--check", action="store_true", help="show what would change (with diffs); change nothing")
    p.add_argument("--json", action="store_true", help="machine-readable result (vio4wd.action/1)")
    p.set_defaults(func=cmd_hugepages)


def cmd_hugepages(args) -> int:
    import os

    root = Root(args.root)
    pages: dict = {}
    plan_path = args.plan
    explicit = args.pages_2m is not None or args.pages_1g is not None or args.mounts
    if args.node is not None and args.pages_2m is None and args.pages_1g is None:
        raise ActionError(f"--node {args.node} needs --pages-2m N and/or --pages-1g N")
    if args.retries < 1:
        raise ActionError(f"--retries {args.retries}: give at least 1")
    if plan_path:
        pages.update(request_from_plan(load_plan_file(plan_path)))
    elif not explicit:
        if not os.path.exists(root.path(DEFAULT_PLAN)):
            raise ActionError("nothing to do: give --node N --pages-2m N, --pages-1g N, --mounts, or --plan "
                              f"PATH (no {DEFAULT_PLAN}: vio4wd-tool plan writes it)")
        plan_path = DEFAULT_PLAN
        pages.update(request_from_plan(load_plan_file(DEFAULT_PLAN, root)))
    if args.pages_2m is not None or args.pages_1g is not None:
        nodes = _node_dirs(root)
        node = args.node
        if node is None:
            if len(nodes) > 1:
                raise ActionError(f"this host has {len(nodes)} NUMA nodes: say which with --node N "
                                  "(vio4wd-tool plan tells the workers' node)")
            node = nodes[0] if nodes else None
        for size, n in ((SIZE_2M, args.pages_2m), (SIZE_1G, args.pages_1g)):
            if n is not None:
                pages[(size, node)] = n
    mounts = {}
    if args.mounts or (plan_path and not explicit):
        mounts[SIZE_2M] = args.mount_2m
        if root.exists(f"{GLOBAL_DIR}/hugepages-{SIZE_1G}kB"):
            mounts[SIZE_1G] = args.mount_1g
    req = HugeRequest(pages=pages, mounts=mounts, qemu_user=args.qemu_user, retries=args.retries,
                      persist=args.persist, persist_root=Root(args.persist_root) if args.persist_root else None)
    res = hugepages_action(root, req)
    if res.changes and not args.check and root.live:
        require_root("vio4wd-tool hugepages")
    return emit(execute(res, args.check), args.json)
