"""QEMU, libvirt and guest domains: versions, hugepage dirs, domain XMLs, and guest checks."""
from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from .checks import check, fail, ok, skip, warn
from .cpu import parse_cpulist
from .root import Root

QEMU_BINARIES = ("qemu-system-x86_64", "/usr/libexec/qemu-kvm", "qemu-kvm")
LIBVIRT_XML_DIR = "/etc/libvirt/qemu"
QEMU_CONF = "/etc/libvirt/qemu.conf"
PASSWD = "/etc/passwd"
GROUP = "/etc/group"
QEMU_USERS = ("libvirt-qemu", "qemu")
KVM_GROUP = "kvm"

QEMU_MIN = (2, 5)
QEMU_MIN_CLIENT = (2, 7)  # QEMU as vhost-user server (forwarder in client mode)
LIBVIRT_MIN = (1, 2, 6)
MAX_QUEUES = 32


def parse_version(text: str | None) -> tuple[int, ...] | None:
    m = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", text or "")
    return tuple(int(x) for x in m.groups() if x is not None) if m else None


def vstr(v) -> str:
    return ".".join(map(str, v))


@dataclass
class VhostIf:
    mac: str
    path: str
    mode: str  # QEMU's side: 'client' or 'server'
    queues: int


@dataclass
class Domain:
    name: str
    memory_kb: int
    hugepage_sizes_kb: list[int]  # [] = no hugepage backing; [0] = backing with default size
    numa_shared: bool
    numa_cells: int
    vhost: list[VhostIf]
    vcpu_pins: dict[int, list[int]]
    mem_nodes: list[int]

    @property
    def uses_1g(self) -> bool:
        return 1048576 in self.hugepage_sizes_kb


def _size_kb(el) -> int:
    if el is None:
        return 0
    unit = (el.get("unit") or "KiB").lower()
    n = int(el.get("size") or (el.text or "0").strip() or 0)
    mult = {"b": 1 / 1024, "bytes": 1 / 1024, "k": 1, "kib": 1, "kb": 1, "m": 1024, "mib": 1024, "mb": 1024,
            "g": 1048576, "gib": 1048576, "gb": 1048576}.get(unit, 1)
    return int(n * mult)


def parse_domain(xml: str) -> Domain:
    root = ET.fromstring(xml)
    mb = root.find("memoryBacking")
    sizes = []
    if mb is not None and mb.find("hugepages") is not None:
        sizes = [_size_kb(p) for p in mb.findall("hugepages/page")] or [0]
    cells = root.findall("cpu/numa/cell")
    vhost = []
    for itf in root.findall("devices/interface"):
        if itf.get("type") != "vhostuser":
            continue
        src = itf.find("source")
        drv = itf.find("driver")
        mac = itf.find("mac")
        vhost.append(VhostIf(mac=(mac.get("address") if mac is not None else "").lower(),
                             path=src.get("path", "") if src is not None else "",
                             mode=src.get("mode", "client") if src is not None else "client",
                             queues=int(drv.get("queues", "1")) if drv is not None else 1))
    pins = {}
    for p in root.findall("cputune/vcpupin"):
        try:
            pins[int(p.get("vcpu"))] = parse_cpulist(p.get("cpuset", ""))
        except ValueError:
            pass
    mem_nodes = []
    mem = root.find("numatune/memory")
    if mem is not None and mem.get("nodeset"):
        mem_nodes = parse_cpulist(mem.get("nodeset"))
    return Domain(name=root.findtext("name", "?"), memory_kb=_size_kb(root.find("memory")),
                  hugepage_sizes_kb=sizes,
                  numa_shared=bool(cells) and all(c.get("memAccess") == "shared" for c in cells),
                  numa_cells=len(cells), vhost=vhost, vcpu_pins=pins, mem_nodes=mem_nodes)


@dataclass
class User:
    name: str
    uid: int
    gid: int


@dataclass
class VirtInfo:
    qemu: tuple[int, ...] | None
    libvirt: tuple[int, ...] | None
    kvm: str | None  # 'ok' or the error
    domains: list[Domain]
    domain_errors: dict[str, str]
    qemu_conf: dict[str, str]
    users: dict[str, User]
    groups: dict[str, int]

    def qemu_user(self) -> User | None:
        for n in QEMU_USERS:
            if n in self.users:
                return self.users[n]
        return None


def _kvm_usable() -> str:
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        return f"{e.strerror}"
    os.close(fd)
    return "ok"


def parse_qemu_conf(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        k, eq, v = line.partition("=")
        if eq:
            out[k.strip()] = v.strip()
    return out


def probe(root: Root) -> VirtInfo:
    qemu = None
    for b in QEMU_BINARIES:
        qemu = parse_version(root.command(f"qemu-version-{os.path.basename(b)}", [b, "--version"]))
        if qemu:
            break
    # the daemon, not the virsh client, tells whether this host runs libvirt guests
    libvirt = parse_version(root.command("libvirtd-version", ["libvirtd", "--version"])) or \
        parse_version(root.command("virtqemud-version", ["virtqemud", "--version"]))
    xmls: dict[str, str] = {}
    names = root.command("virsh-list", ["virsh", "-c", "qemu:///system", "list", "--all", "--name"])
    if names is not None:
        for n in (x.strip() for x in names.splitlines()):
            if n:
                x = root.command(f"virsh-dumpxml-{n}", ["virsh", "-c", "qemu:///system", "dumpxml", n])
                if x:
                    xmls[n] = x
    else:
        for p in root.glob(LIBVIRT_XML_DIR, "*.xml"):
            xmls[p] = root.read(p, "") or ""
    domains, errors = [], {}
    for src, x in xmls.items():
        try:
            domains.append(parse_domain(x))
        except (ET.ParseError, ValueError) as e:
            errors[src] = str(e)
    users = {}
    for line in (root.read(PASSWD, "") or "").splitlines():
        f = line.split(":")
        if len(f) >= 4 and f[2].isdigit() and f[3].isdigit():
            users[f[0]] = User(f[0], int(f[2]), int(f[3]))
    groups = {}
    for line in (root.read(GROUP, "") or "").splitlines():
        f = line.split(":")
        if len(f) >= 3 and f[2].isdigit():
            groups[f[0]] = int(f[2])
    return VirtInfo(qemu=qemu, libvirt=libvirt, kvm=root.fact("dev-kvm", _kvm_usable), domains=domains,
                    domain_errors=errors, qemu_conf=parse_qemu_conf(root.read(QEMU_CONF, "") or ""),
                    users=users, groups=groups)


# ---------------------------------------------------------------- checks

@check("virt.qemu", "QEMU", "Checking QEMU version",
       "QEMU >= 2.5 for vhost-user; >= 2.7 when the forwarder runs in vhost-user client mode")
def check_qemu(host, intent):
    v = host.virt.qemu
    if v is None:
        return warn("QEMU not found", "apt-get install qemu-system-x86 (guests need QEMU >= 2.5)")
    need = QEMU_MIN_CLIENT if intent.vhost_client else QEMU_MIN
    if v < need:
        why = " (QEMU as vhost-user server for the forwarder's client mode)" if intent.vhost_client else ""
        return fail(f"QEMU {vstr(v)} < {vstr(need)}{why}", f"upgrade QEMU to >= {vstr(need)}")
    return ok(f"QEMU {vstr(v)} >= {vstr(need)}")


@check("virt.libvirt", "QEMU", "Checking libvirt version", "libvirt >= 1.2.6 (vhostuser interfaces)")
def check_libvirt(host, intent):
    v = host.virt.libvirt
    if v is None:
        return skip("libvirt not installed")
    if v < LIBVIRT_MIN:
        return fail(f"libvirt {vstr(v)} < {vstr(LIBVIRT_MIN)}", "upgrade libvirt to >= 1.2.6")
    return ok(f"libvirt {vstr(v)}")


@check("virt.kvm", "QEMU", "Checking /dev/kvm is usable", "guests run with KVM acceleration")
def check_kvm(host, intent):
    st = host.virt.kvm
    if st == "ok":
        return ok("/dev/kvm opens read-write")
    return warn(f"/dev/kvm unusable: {st}", "enable VT-x/AMD-V in firmware and load kvm_intel/kvm_amd; "
                "add the QEMU user to group kvm")


@check("virt.libvirt_dirs", "QEMU", "Checking hugetlbfs libvirt directories",
       "<mount>/libvirt exists on each hugetlbfs mount, owned by the qemu user and group kvm")
def check_libvirt_dirs(host, intent):
    if host.virt.libvirt is None:
        return skip("libvirt not installed")
    user = host.virt.qemu_user()
    kvm = host.virt.groups.get(KVM_GROUP)
    if user is None or kvm is None:
        return fail("no qemu user (libvirt-qemu/qemu) or no kvm group", "install libvirt-daemon-system")
    out = []
    for m in host.huge.hugetlbfs:
        d = f"{m.target}/libvirt"
        st = host.root.stat(d)
        if st is None:
            out.append(fail(f"{d} missing", "vio4wd-tool hugepages --mounts creates it", subject=d))
        elif (st.st_uid, st.st_gid) != (user.uid, kvm):
            out.append(fail(f"{d} owned by {st.st_uid}:{st.st_gid}, not {user.name}:{KVM_GROUP}",
                            f"chown {user.name}:{KVM_GROUP} {d}", subject=d))
        else:
            out.append(ok(f"{d} owned by {user.name}:{KVM_GROUP}", subject=d))
    return out or skip("no hugetlbfs mounted")


@check("virt.qemu_conf", "QEMU", "Checking qemu.conf hugetlbfs_mount",
       "qemu.conf hugetlbfs_mount lists the 1 GiB mount when guests use 1 GiB pages")
def check_qemu_conf(host, intent):
    if host.virt.libvirt is None:
        return skip("libvirt not installed")
    if not intent.guest_1g_pages:
        return skip("no guest uses 1 GiB pages")
    from .hugepages import SIZE_1G
    g1 = [m.target for m in host.huge.hugetlbfs if host.huge.mount_size(m) == SIZE_1G]
    conf = host.virt.qemu_conf.get("hugetlbfs_mount", "")
    if not g1:
        return fail("no 1 GiB hugetlbfs mounted", "vio4wd-tool hugepages --mounts")
    if g1[0] not in conf:
        return fail(f"qemu.conf hugetlbfs_mount ({conf or 'unset'}) lacks {g1[0]}",
                    f'set hugetlbfs_mount = ["/dev/hugepages", "{g1[0]}"] in {QEMU_CONF} and restart libvirtd')
    return ok(f"hugetlbfs_mount includes {g1[0]}")


def vhost_domains(host):
    return [d for d in host.virt.domains if d.vhost]


@check("guest.memory", "Guests", "Checking guest memory backing for vhost-user",
       "vhost-user guests use hugepage memoryBacking and a NUMA cell with memAccess='shared'")
def check_guest_memory(host, intent):
    doms = vhost_domains(host)
    if not doms:
        return skip("no guest with vhostuser interfaces")
    out = []
    for d in doms:
        probs = []
        if not d.hugepage_sizes_kb:
            probs.append("no <memoryBacking><hugepages/>")
        if not d.numa_shared:
            probs.append("no NUMA cell with memAccess='shared'")
        if probs:
            out.append(fail(f"{d.name}: " + "; ".join(probs) + ": the forwarder cannot map guest memory",
                            f"vio4wd-tool vm --libvirt renders the XML (virsh edit {d.name})", subject=d.name))
        else:
            out.append(ok(f"{d.name}: hugepages and shared NUMA memory", subject=d.name))
    return out


@check("guest.vhost", "Guests", "Checking guest vhost-user interfaces",
       "vhostuser sockets match the forwarder's socket pattern and pair with its mode; queues <= 32")
def check_guest_vhost(host, intent):
    doms = vhost_domains(host)
    if not doms:
        return skip("no guest with vhostuser interfaces")
    want_mode = "server" if intent.vhost_client else "client"
    out = []
    for d in doms:
        for itf in d.vhost:
            subj = f"{d.name}:{itf.mac or itf.path}"
            rid = intent.relay_of_socket(itf.path)
            if rid is None:
                out.append(fail(f"{d.name}: socket {itf.path} does not match {intent.socket_glob()}",
                                f"use {intent.socket_path(0)} style paths (one per relay)", subject=subj))
            elif itf.mode != want_mode:
                out.append(fail(f"{d.name}: relay {rid} socket mode {itf.mode}, the forwarder is in "
                                f"{'client' if intent.vhost_client else 'server'} mode",
                                f"set <source mode='{want_mode}'/> for {itf.path}", subject=subj))
            elif itf.queues > MAX_QUEUES:
                out.append(fail(f"{d.name}: {itf.queues} queues > {MAX_QUEUES}",
                                f"<driver queues='{MAX_QUEUES}'/> or fewer", subject=subj))
            else:
                out.append(ok(f"{d.name}: relay {rid}, mode {itf.mode}, {itf.queues} queue(s)", subject=subj))
    return out


@check("guest.mac", "Guests", "Checking guest MACs equal their VFs' MACs",
       "the guest MAC equals its VF's MAC: the forwarder rewrites no MACs")
def check_guest_mac(host, intent):
    doms = vhost_domains(host)
    if not doms:
        return skip("no guest with vhostuser interfaces")
    out = []
    for d in doms:
        for itf in d.vhost:
            rid = intent.relay_of_socket(itf.path)
            vf = intent.vf_of_relay(rid) if rid is not None else None
            if vf is None:
                continue
            from .pci import is_pci, normalize_pci
            from .sriov import vf_mac as _vf_mac
            vf_mac = _vf_mac(host.root, host.pci, normalize_pci(vf)) if is_pci(vf) else None
            subj = f"{d.name}:relay{rid}"
            if not vf_mac:
                out.append(skip(f"{d.name}: VF {vf} has no MAC set by its PF and no kernel interface to read one", subject=subj))
            elif vf_mac != itf.mac:
                out.append(fail(f"{d.name}: guest MAC {itf.mac} != VF {vf} MAC {vf_mac}: frames will be "
                                "dropped by the VF's MAC filter",
                                f"set <mac address='{vf_mac}'/> in {d.name}, or ip link set PF vf N mac {itf.mac}",
                                subject=subj))
            else:
                out.append(ok(f"{d.name}: MAC {itf.mac} matches VF {vf}", subject=subj))
    return out or skip("no guest interface maps to a configured VF")
