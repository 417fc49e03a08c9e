"""SR-IOV VFs: create them, set MAC/trust/spoofchk, bind them to a DPDK driver, replay at boot,
`vfs status`; and the vf.* doctor checks.

Every kernel interaction goes through a `Root`.  On the live host (`Root("/")`) the kernel does
the work (sysfs writes, `ip link`, a pyudev monitor for new VF devices).  In a captured tree the
tree's files stand in for the kernel (`TreeKernel`): numvfs and driver_override are written
there, a "bind" moves the driver symlink, VF settings land in the `ip-link-PF` fact; so the
file-level logic, the rollback and idempotence can be tested where no SR-IOV NIC exists.
"""
from __future__ import annotations

import json
import os
import re
import sys
import time

from .actions import (ActionError, ActionResult, Change, emit, execute, file_change, require_root, run_cmd,
                      symlink, write_sysfs)
from . import kmod
from .checks import check, fail, ok, skip, warn
from .kernel import probe as probe_kernel
from .pci import NET_DIR, PCI_DIR, PciDevice, PciInfo, is_pci, normalize_pci, probe as probe_pci
from .root import Root

DRIVERS_DIR = "/sys/bus/pci/drivers"
DRIVERS_PROBE = "/sys/bus/pci/drivers_probe"
STATE_FILE = "/etc/vio4wd/vfs.json"
STATE_SCHEMA = "vio4wd.vfs/1"
UNIT_DIR = "/etc/systemd/system"
UNIT_NAME = "vio4wd-vfs.service"
DPDK_DRIVERS = ("igb_uio", "vfio-pci", "uio_pci_generic")
MAC_RE = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
DRIVER_RE = re.compile(r"[A-Za-z0-9_-]+")
DEFAULT_TIMEOUT = 30.0


# ---------------------------------------------------------------- input

def parse_mac(text: str) -> str:
    m = text.strip().lower().replace("-", ":")
    if not MAC_RE.fullmatch(m):
        raise ActionError(f"bad MAC address {text!r}: expected six hex pairs like 02:00:00:00:00:01")
    if int(m[:2], 16) & 1:
        raise ActionError(f"MAC {text!r} is a multicast address: a VF needs a unicast MAC "
                          "(first octet even, e.g. 02:...)")
    if m == "00:00:00:00:00:00":
        raise ActionError("MAC 00:00:00:00:00:00 is not a usable VF address")
    return m


def pci_addr(text: str) -> str:
    """Strict dddd:bb:dd.f, as an ActionError (exit 2, no traceback) when bad."""
    try:
        return normalize_pci(text)
    except ValueError as e:
        raise ActionError(str(e)) from None


def resolve_pf(pci: PciInfo, spec: str) -> PciDevice:
    """A PF named by PCI address or interface name."""
    dev = pci.get(normalize_pci(spec)) if is_pci(spec) else pci.by_ifname(spec)
    if dev is None:
        if ":" in spec and not is_pci(spec):
            pci_addr(spec)  # raises the strict-syntax error
        raise ActionError(f"--pf {spec}: no such interface or PCI device (see vio4wd-tool vfs status)")
    if not dev.is_pf:
        raise ActionError(f"--pf {spec}: {dev.addr} is not an SR-IOV physical function (no sriov_totalvfs"
                          + ("; it is itself a VF" if dev.is_vf else "") + ")")
    return dev


def normalize_driver(name: str) -> str:
    """The sysfs driver directory name (vfio_pci -> vfio-pci)."""
    if not DRIVER_RE.fullmatch(name or ""):
        raise ActionError(f"bad driver name {name!r}: expected igb_uio or vfio-pci")
    return "vfio-pci" if name in ("vfio_pci", "vfio-pci") else name


# ---------------------------------------------------------------- the kernel (live) or its stand-in (tree)

class Kernel:
    """Kernel operations of the live host."""

    def __init__(self, root: Root):
        self.root = root

    def write(self, path: str, value: str) -> None:
        write_sysfs(self.root.path(path), value)

    def set_numvfs(self, pf: str, n: int) -> None:
        self.write(f"{PCI_DIR}/{pf}/sriov_numvfs", f"{n}\n")

    def set_override(self, addr: str, driver: str | None) -> None:
        self.write(f"{PCI_DIR}/{addr}/driver_override", f"{driver or ''}\n")

    def unbind(self, addr: str, driver: str) -> None:
        self.write(f"{DRIVERS_DIR}/{driver}/unbind", addr)

    def probe(self, addr: str) -> None:
        try:
            self.write(DRIVERS_PROBE, addr)
        except ActionError:
            pass  # no driver accepting the device is an outcome checked by the caller

    def link_up(self, ifname: str) -> None:
        run_cmd(["ip", "link", "set", "dev", ifname, "up"], timeout=30)

    def vf_set(self, pfif: str, vf: int, **kv) -> None:
        argv = ["ip", "link", "set", "dev", pfif, "vf", str(vf)]
        for k, v in kv.items():
            argv += [k, v if isinstance(v, str) else ("on" if v else "off")]
        run_cmd(argv, timeout=30)

    def wait_vfs(self, pf: str, n: int, timeout: float) -> bool:
        """Wait for the PF's n VF devices with a pyudev monitor; polling when pyudev is missing."""
        def present() -> bool:
            return vfs_present(self.root, pf, n)

        try:
            import pyudev
        except ImportError:
            return _poll(present, timeout)
        try:
            ctx = pyudev.Context()
            mon = pyudev.Monitor.from_netlink(ctx)
            mon.filter_by(subsystem="pci")
            mon.start()
        except (OSError, ValueError):
            return _poll(present, timeout)
        end = time.monotonic() + timeout
        while not present():
            left = end - time.monotonic()
            if left <= 0:
                return present()
            mon.poll(timeout=min(left, 0.5))  # an 'add' of a pci device wakes us; re-check sysfs
        return True


class TreeKernel(Kernel):
    """A captured tree's stand-in for the kernel: the same operations on the tree's files."""

    def write(self, path: str, value: str) -> None:
        real = self.root.path(path)
        if real.is_symlink():
            real = real.resolve()
        if not real.parent.exists():
            raise ActionError(f"writing {value.strip()!r} to {path} failed: No such file or directory")
        real.write_text(value)

    def unbind(self, addr: str, driver: str) -> None:
        link = self.root.path(f"{PCI_DIR}/{addr}/driver")
        if link.is_symlink():
            link.unlink()
        net = self.root.path(f"{PCI_DIR}/{addr}/net")
        if net.exists():  # the kernel netdev goes with its driver
            os.rename(net, net.with_name(".vio4wd-unbound-net"))

    def probe(self, addr: str) -> None:
        dev = self.root.path(f"{PCI_DIR}/{addr}").resolve()
        override = self.root.read(f"{PCI_DIR}/{addr}/driver_override")
        drv = override if override not in (None, "", "(null)") else None  # no modalias matching here
        if not drv or not self.root.is_dir(f"{DRIVERS_DIR}/{drv}") or (dev / "driver").is_symlink():
            return
        os.symlink(os.path.relpath(self.root.path(f"{DRIVERS_DIR}/{drv}"), dev), dev / "driver")
        saved = dev / ".vio4wd-unbound-net"
        if saved.exists() and drv not in DPDK_DRIVERS:
            os.rename(saved, dev / "net")

    def link_up(self, ifname: str) -> None:
        net = self.root.path(f"{NET_DIR}/{ifname}")
        flags = self.root.read(f"{NET_DIR}/{ifname}/flags")
        (net / "flags").write_text(f"{hex(int(flags or '0x1002', 16) | 1)}\n")
        (net / "operstate").write_text("up\n")

    def vf_set(self, pfif: str, vf: int, **kv) -> None:
        fact = self.root.path(f"/.vio4wd/facts/ip-link-{pfif}")
        data = json.loads(fact.read_text()) if fact.exists() else [{"ifname": pfif, "vfinfo_list": []}]
        vfs = data[0].setdefault("vfinfo_list", [])
        ent = next((v for v in vfs if v.get("vf") == vf), None)
        if ent is None:
            ent = {"vf": vf}
            vfs.append(ent)
        for k, v in kv.items():
            ent["address" if k == "mac" else k] = v
        fact.parent.mkdir(parents=True, exist_ok=True)
        fact.write_text(json.dumps(data))

    def wait_vfs(self, pf: str, n: int, timeout: float) -> bool:
        return _poll(lambda: vfs_present(self.root, pf, n), timeout)  # file-tree fallback


IN_TREE_DRIVERS = ("vfio-pci", "uio_pci_generic")


def kernel_for(root: Root) -> Kernel:
    return Kernel(root) if root.live else TreeKernel(root)


def _poll(pred, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while True:
        if pred():
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(0.1)


def vfs_present(root: Root, pf: str, n: int) -> bool:
    links = [v for v in root.listdir(f"{PCI_DIR}/{pf}") if v.startswith("virtfn")]
    if len(links) != n:
        return False
    return all(root.link_name(f"{PCI_DIR}/{pf}/virtfn{i}") and
               root.is_dir(f"{PCI_DIR}/{root.link_name(f'{PCI_DIR}/{pf}/virtfn{i}')}") for i in range(n))


def vf_addr(root: Root, pf: str, index: int) -> str | None:
    return root.link_name(f"{PCI_DIR}/{pf}/virtfn{index}")


def vf_index(root: Root, vf: PciDevice) -> int | None:
    for name in root.listdir(f"{PCI_DIR}/{vf.physfn}"):
        if name.startswith("virtfn") and root.link_name(f"{PCI_DIR}/{vf.physfn}/{name}") == vf.addr:
            return int(name[6:])
    return None


def vf_settings(root: Root, pfif: str) -> dict[int, dict]:
    """VF index -> {"mac", "trust", "spoofchk"} as `ip -j link show` reports them."""
    text = root.command(f"ip-link-{pfif}", ["ip", "-j", "link", "show", "dev", pfif])
    try:
        data = json.loads(text) if text else []
    except ValueError:
        data = []
    out = {}
    for link in data:
        for v in link.get("vfinfo_list", []) or []:
            if "vf" in v:
                out[int(v["vf"])] = {"mac": (v.get("address") or "").lower(), "trust": v.get("trust"),
                                     "spoofchk": v.get("spoofchk")}
    return out


def vf_mac(root: Root, pci: PciInfo, addr: str) -> str | None:
    """The MAC a VF answers to: what its PF's driver set for it (`ip link show PF`, valid whatever
    driver the VF is bound to), else the VF's own kernel interface; None when neither knows one."""
    dev = pci.get(addr)
    if dev is None:
        return None
    pf = pci.get(dev.physfn) if dev.physfn else None
    if pf is not None and pf.net:
        idx = vf_index(root, dev)
        mac = vf_settings(root, pf.net[0].name).get(idx, {}).get("mac") if idx is not None else None
        if mac and mac != "00:00:00:00:00:00":
            return mac
    return dev.mac


# ---------------------------------------------------------------- persistence: state file + oneshot unit

def load_state(proot: Root) -> dict:
    text = proot.read(STATE_FILE)
    if not text:
        return {"schema": STATE_SCHEMA, "pfs": {}, "bindings": {}}
    try:
        st = json.loads(text)
    except ValueError as e:
        raise ActionError(f"{STATE_FILE} is not JSON ({e}): fix or remove it") from e
    if st.get("schema") != STATE_SCHEMA:
        raise ActionError(f"{STATE_FILE} is not a {STATE_SCHEMA} file: fix or remove it")
    st.setdefault("pfs", {})
    st.setdefault("bindings", {})
    return st


def tool_command() -> str:
    return f"{sys.executable} -m vio4wd_tool"


def unit_text() -> str:
    return ("# managed by vio4wd-tool vfs: edits are overwritten\n[Unit]\n"
            "Description=vio4wd: re-create SR-IOV VFs and replay their driver binding\n"
            "After=systemd-modules-load.service systemd-udev-settle.service network-pre.target\n"
            "Wants=network-pre.target\nBefore=virtioforwarder.service vio4wd-forwarder.service libvirtd.service\n"
            f"ConditionPathExists={STATE_FILE}\n\n"
            "[Service]\nType=oneshot\nRemainAfterExit=yes\n"
            f"ExecStart={tool_command()} vfs replay --state {STATE_FILE}\n\n"
            "[Install]\nWantedBy=multi-user.target\n")


def persist_changes(proot: Root, state: dict) -> list[Change]:
    out = []
    c = file_change(proot, STATE_FILE, json.dumps(state, indent=2, sort_keys=True) + "\n")
    if c:
        out.append(c)
    unit = f"{UNIT_DIR}/{UNIT_NAME}"
    c = file_change(proot, unit, unit_text())
    if c:
        out.append(c)
    link = f"{UNIT_DIR}/multi-user.target.wants/{UNIT_NAME}"
    if proot.link_name(link) != UNIT_NAME:
        out.append(Change(f"enable {UNIT_NAME} ({link})", apply=lambda: symlink(proot, link, unit)))
    return out



# ---------------------------------------------------------------- create

def create_action(root: Root, pf_spec: str, count: int, macs: dict[int, str] | None = None,
                  trust: bool | None = None, spoofchk: bool | None = None, timeout: float = DEFAULT_TIMEOUT,
                  persist: bool = True, persist_root: Root | None = None) -> ActionResult:
    pci = probe_pci(root)
    pf = resolve_pf(pci, pf_spec)
    total = pf.sriov_totalvfs or 0
    if count < 0 or count > total:
        raise ActionError(f"--count {count}: {pf.addr} supports 0..{total} VFs (sriov_totalvfs)")
    macs = {int(k): parse_mac(v) for k, v in (macs or {}).items()}
    for i in macs:
        if not 0 <= i < count:
            raise ActionError(f"--mac {i}=...: VF index {i} out of range (0..{count - 1} with --count {count})")
    if len(set(macs.values())) != len(macs):
        raise ActionError("--mac: two VFs would get the same MAC address")
    if timeout <= 0:
        raise ActionError(f"--timeout {timeout}: give a positive number of seconds")
    pfif = pf.net[0].name if pf.net else None
    if (macs or trust is not None or spoofchk is not None) and not pfif:
        raise ActionError(f"{pf.addr} has no net interface: VF MAC/trust/spoofchk are set through the PF's "
                          "kernel driver; bind the PF to it first")
    k = kernel_for(root)
    res = ActionResult("vfs")
    cur = pf.sriov_numvfs or 0
    if cur != count:
        def apply(cur=cur):
            if cur != 0 and count != 0:
                k.set_numvfs(pf.addr, 0)  # a direct change of a non-zero count gives EBUSY
            k.set_numvfs(pf.addr, count)
            if count and not k.wait_vfs(pf.addr, count, timeout):
                raise ActionError(f"{count} VFs of {pf.addr} did not appear within {timeout:g} s: check "
                                  f"dmesg; the PF driver may need max_vfs or firmware support")

        res.changes.append(Change(f"{'create' if count else 'remove'} VFs on {pf.addr}"
                                  + (f" ({pfif})" if pfif else "") + f": {cur} -> {count}"
                                  + (" (via 0: a direct change gives EBUSY)" if cur and count else ""), apply=apply))
    # VFs pass traffic only while their PF is up
    pfnet = pf.net[0] if pf.net else None
    if count and pfnet is not None and not pfnet.admin_up:
        res.changes.append(Change(f"set {pfif} up: its VFs have no link while the PF is down",
                                  apply=lambda: k.link_up(pfif)))
    # VF MAC / trust / spoofchk
    have = vf_settings(root, pfif) if pfif and cur == count else {}
    for i in range(count):
        want = {}
        if i in macs:
            want["mac"] = macs[i]
        if trust is not None:
            want["trust"] = trust
        if spoofchk is not None:
            want["spoofchk"] = spoofchk
        now = have.get(i, {})
        diff = {kk: v for kk, v in want.items() if now.get(kk) != v}
        if diff:
            desc = ", ".join(f"{kk} {v if isinstance(v, str) else ('on' if v else 'off')}" for kk, v in diff.items())
            res.changes.append(Change(f"set VF {i} of {pfif}: {desc}",
                                      apply=lambda i=i, diff=diff: k.vf_set(pfif, i, **diff)))
    if persist:
        proot = persist_root or root
        st = load_state(proot)
        ent = {"count": count}
        if macs:
            ent["macs"] = {str(i): m for i, m in sorted(macs.items())}
        if trust is not None:
            ent["trust"] = trust
        if spoofchk is not None:
            ent["spoofchk"] = spoofchk
        st["pfs"][pf.addr] = ent
        res.changes += persist_changes(proot, st)
    res.data = {"pf": pf.addr, "ifname": pfif, "count": count, "totalvfs": total}
    return res


# ---------------------------------------------------------------- bind

def _verify_bound(root: Root, addr: str, driver: str) -> bool:
    return root.link_name(f"{PCI_DIR}/{addr}/driver") == driver


def bind_one(root: Root, k: Kernel, addr: str, driver: str, old: str | None, old_override: str | None) -> None:
    """driver_override + unbind + drivers_probe; back to the old driver when the new one fails."""
    try:
        k.set_override(addr, driver)
        if old:
            k.unbind(addr, old)
        k.probe(addr)
        if not _verify_bound(root, addr, driver):
            raise ActionError(f"{driver} did not take {addr} (see dmesg)")
    except ActionError as e:
        # roll back: old override, old driver
        try:
            k.set_override(addr, old_override)
            cur = root.link_name(f"{PCI_DIR}/{addr}/driver")
            if cur and cur != old:
                k.unbind(addr, cur)
            if old and not _verify_bound(root, addr, old):
                k.set_override(addr, old)
                k.probe(addr)
                k.set_override(addr, old_override)
        except ActionError as e2:
            raise ActionError(f"binding {addr} to {driver} failed ({e}); rollback failed too ({e2}): "
                              f"bind it by hand: echo {addr} > {DRIVERS_DIR}/{old}/bind") from e
        back = root.link_name(f"{PCI_DIR}/{addr}/driver")
        raise ActionError(f"binding {addr} to {driver} failed ({e}); rolled back to {back or 'no driver'}") from e


def bind_action(root: Root, addrs: list[str], driver: str, force: bool = False, persist: bool = True,
                persist_root: Root | None = None) -> ActionResult:
    if not addrs:
        raise ActionError("name the devices to bind (PCI addresses like 0000:05:10.1; see vio4wd-tool vfs status)")
    addrs = [pci_addr(a) for a in addrs]
    driver = normalize_driver(driver)
    pci = probe_pci(root)
    k = kernel_for(root)
    res = ActionResult("vfs")
    if not root.is_dir(f"{DRIVERS_DIR}/{driver}"):
        if driver not in IN_TREE_DRIVERS:  # igb_uio is built and loaded by its own action
            fix = "vio4wd-tool igb-uio" if driver == "igb_uio" else f"modprobe {driver}"
            raise ActionError(f"driver {driver} is not loaded ({DRIVERS_DIR}/{driver} missing): {fix}")
        # an in-tree DPDK driver: load it now and at every boot
        res.changes += kmod.load_changes(root, [driver.replace("-", "_")], probe_kernel(root).release, persist=persist,
                                         persist_root=persist_root)
    devs = []
    for a in addrs:
        dev = pci.get(a)
        if dev is None:
            raise ActionError(f"{a}: no such PCI device (create VFs first: vio4wd-tool vfs create --pf IFACE "
                              "--count N; list devices: vio4wd-tool vfs status)")
        busy = [n for n in dev.net if n.carries_traffic]
        if busy and not force and dev.driver != driver:
            n = busy[0]
            what = ", ".join(n.addresses) or f"{n.routes} route(s)"
            raise ActionError(f"{a} is {n.name} with {what}: binding it would cut that traffic; move them "
                              f"off (ip addr flush dev {n.name}) or use --force")
        if dev.is_pf and dev.sriov_numvfs and not force and dev.driver != driver:
            raise ActionError(f"{a} is a PF with {dev.sriov_numvfs} VFs: unbinding its driver removes them; "
                              "bind a VF instead, or use --force")
        if driver == "vfio-pci" and dev.iommu_group is None:
            raise ActionError(f"{a} has no IOMMU group: vfio-pci needs the IOMMU on (intel_iommu=on iommu=pt: "
                              "vio4wd-tool grub), or use --driver igb_uio")
        devs.append(dev)
    for dev in devs:
        if dev.driver == driver and dev.driver_override in (driver, None):
            if dev.driver_override is None:
                res.changes.append(Change(f"pin {dev.addr} to {driver} (driver_override)",
                                          apply=lambda a=dev.addr: k.set_override(a, driver)))
            continue
        res.changes.append(Change(f"bind {dev.addr} to {driver} (was {dev.driver or 'no driver'})",
                                  apply=lambda d=dev: bind_one(root, k, d.addr, driver, d.driver, d.driver_override)))
    if persist:
        proot = persist_root or root
        st = load_state(proot)
        for a in addrs:
            st["bindings"][a] = driver
        res.changes += persist_changes(proot, st)
    res.data = {"driver": driver, "devices": addrs}
    return res


# ---------------------------------------------------------------- replay (the oneshot unit)

def replay(root: Root, state: dict, timeout: float = DEFAULT_TIMEOUT, check: bool = False) -> ActionResult:
    """Re-create the saved VFs, then bind the saved devices (the boot-time unit runs this)."""
    res = ActionResult("vfs", check=check)
    for pf, ent in sorted(state["pfs"].items()):
        r = execute(create_action(root, pf, int(ent.get("count", 0)), ent.get("macs"), ent.get("trust"),
                                  ent.get("spoofchk"), timeout, persist=False), check)
        res.changes += r.changes
        if r.error:
            res.error = r.error
            return res
    by_driver: dict[str, list[str]] = {}
    for addr, drv in sorted(state["bindings"].items()):
        by_driver.setdefault(drv, []).append(addr)
    pci = probe_pci(root)
    for drv, addrs in sorted(by_driver.items()):
        if check and any(pci.get(a) is None for a in addrs):
            res.changes.append(Change(f"bind {', '.join(addrs)} to {drv} (once the VFs exist)"))
            continue
        r = execute(bind_action(root, addrs, drv, force=True, persist=False), check)
        res.changes += r.changes
        if r.error:
            res.error = r.error
            return res
    return res


def _load_state_file(path: str) -> dict:
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        raise ActionError(f"--state {path}: {e.strerror}") from e
    try:
        st = json.loads(text)
    except ValueError as e:
        raise ActionError(f"--state {path}: not JSON ({e})") from e
    if st.get("schema") != STATE_SCHEMA:
        raise ActionError(f"--state {path}: not a {STATE_SCHEMA} file")
    st.setdefault("pfs", {})
    st.setdefault("bindings", {})
    return st


# ---------------------------------------------------------------- status

_PCI_IDS: dict | None = None


def pci_name(vendor: str, device: str) -> str:
    global _PCI_IDS
    if _PCI_IDS is None:
        _PCI_IDS = {}
        for p in ("/usr/share/misc/pci.ids", "/usr/share/hwdata/pci.ids"):
            try:
                with open(p, encoding="utf-8", errors="replace") as f:
                    ven = None
                    for line in f:
                        if line.startswith("#") or not line.strip():
                            continue
                        if not line.startswith("\t"):
                            ven = line[:4].lower()
                            _PCI_IDS[ven] = line[6:].strip()
                        elif not line.startswith("\t\t") and ven:
                            _PCI_IDS[f"{ven}:{line[1:5].lower()}"] = line[7:].strip()
                break
            except OSError:
                continue
    v, d = vendor.lower().removeprefix("0x"), device.lower().removeprefix("0x")
    return _PCI_IDS.get(f"{v}:{d}") or f"Device {d}"


def status(root: Root) -> dict:
    pci = probe_pci(root)
    rows = []
    for dev in sorted(pci.devices.values(), key=lambda d: d.addr):
        if not dev.cls.startswith("0x02") and not dev.is_vf and dev.driver not in DPDK_DRIVERS:
            continue  # network class, VFs, or anything on a DPDK driver
        rows.append({
            "addr": dev.addr, "vendor": dev.vendor.removeprefix("0x"), "device": dev.device.removeprefix("0x"),
            "name": pci_name(dev.vendor, dev.device), "class": dev.cls, "driver": dev.driver,
            "driver_override": dev.driver_override, "numa_node": dev.numa_node, "iommu_group": dev.iommu_group,
            "ifname": dev.net[0].name if dev.net else None, "mac": dev.mac,
            "active": any(n.carries_traffic for n in dev.net), "pf": dev.physfn,
            "vf_index": vf_index(root, dev) if dev.is_vf else None,
            "sriov_numvfs": dev.sriov_numvfs, "sriov_totalvfs": dev.sriov_totalvfs,
            "dpdk": dev.driver in DPDK_DRIVERS})
    return {"schema": "vio4wd.vfs-status/1", "devices": rows}


def render_status(st: dict) -> str:
    groups = (("Network devices using DPDK-compatible driver", lambda r: r["dpdk"]),
              ("Network devices using kernel driver", lambda r: not r["dpdk"] and r["driver"]),
              ("Other Network devices", lambda r: not r["driver"]))
    out = []
    for title, pred in groups:
        out += [title, "=" * len(title)]
        rows = [r for r in st["devices"] if pred(r)]
        for r in rows:
            line = f"{r['addr']} '{r['name']} {r['device']}' numa={r['numa_node']}"
            if r["ifname"]:
                line += f" if={r['ifname']}"
            if r["driver"]:
                line += f" drv={r['driver']}"
            if r["driver_override"]:
                line += f" override={r['driver_override']}"
            if r["sriov_totalvfs"] is not None:
                line += f" vfs={r['sriov_numvfs'] or 0}/{r['sriov_totalvfs']}"
            if r["pf"]:
                line += f" pf={r['pf']} vf={r['vf_index']}"
            if r["active"]:
                line += " *Active*"
            out.append(line)
        out += (["<none>"] if not rows else []) + [""]
    return "\n".join(out).rstrip() + "\n"


# ---------------------------------------------------------------- doctor checks

@check("vf.present", "SR-IOV", "Checking configured VFs exist and use the chosen driver",
       "each configured VF exists and is bound to the chosen driver (igb_uio or vfio-pci)")
def check_vfs(host, intent):
    if not intent.vfs:
        return skip("no VFs configured (VIRTIOFWD_STATIC_VFS or --vf)")
    out = []
    for spec in intent.vfs:
        if not is_pci(spec):
            out.append(skip(f"{spec} is a DPDK vdev, not a PCI VF", subject=spec))
            continue
        addr = normalize_pci(spec)
        dev = host.pci.get(addr)
        if dev is None:
            out.append(fail(f"{addr} does not exist", "create VFs: vio4wd-tool vfs create --pf IFACE "
                            "--count N (role var vio4wd_sriov_vfs)", subject=addr))
        elif dev.driver != intent.driver.replace("-", "_") and dev.driver != intent.driver:
            out.append(fail(f"{addr} is bound to {dev.driver or 'no driver'}, not {intent.driver}",
                            f"vio4wd-tool vfs bind {addr} --driver {intent.driver}", subject=addr))
        else:
            out.append(ok(f"{addr} bound to {dev.driver}", subject=addr))
    return out


@check("vf.not_in_use", "SR-IOV", "Checking VFs carry no host traffic",
       "a VF handed to the forwarder is not an interface with addresses or routes")
def check_not_in_use(host, intent):
    out = []
    for spec in intent.vfs:
        if not is_pci(spec):
            continue
        dev = host.pci.get(normalize_pci(spec))
        if dev is None:
            continue
        busy = [n for n in dev.net if n.carries_traffic]
        if busy:
            n = busy[0]
            what = ", ".join(n.addresses) or f"{n.routes} route(s)"
            out.append(fail(f"{dev.addr} is {n.name} with {what}: binding it would cut that traffic",
                            f"move the addresses/routes off {n.name} (ip addr flush dev {n.name}) or "
                            "pick another VF", subject=dev.addr))
        else:
            out.append(ok(f"{dev.addr} carries no addresses or routes", subject=dev.addr))
    return out or skip("no PCI VFs configured")


@check("vf.pf_up", "SR-IOV", "Checking the VFs' physical functions are up",
       "the PF of every configured VF is administratively and operationally up")
def check_pf_up(host, intent):
    out = []
    seen = set()
    for spec in intent.vfs:
        if not is_pci(spec):
            continue
        dev = host.pci.get(normalize_pci(spec))
        if dev is None or dev.physfn is None or dev.physfn in seen:
            continue
        seen.add(dev.physfn)
        pf = host.pci.get(dev.physfn)
        if pf is None or not pf.net:
            out.append(warn(f"PF {dev.physfn} has no net interface to check", "bind the PF to its kernel "
                            "driver so VFs get link", subject=dev.physfn))
            continue
        n = pf.net[0]
        if not n.admin_up:
            out.append(fail(f"PF {dev.physfn} ({n.name}) is set down: its VFs have no link",
                            f"vio4wd-tool vfs create --pf {n.name} --count N (sets it up and replays at boot), "
                            f"or ip link set {n.name} up", subject=dev.physfn))
        elif n.operstate != "up":
            out.append(fail(f"PF {dev.physfn} ({n.name}) is up but {n.operstate} (no carrier): its VFs have no link",
                            "check the cable and the switch port", subject=dev.physfn))
        else:
            out.append(ok(f"PF {dev.physfn} ({n.name}) is up", subject=dev.physfn))
    return out or skip("no PCI VFs with a PF configured")


# ---------------------------------------------------------------- CLI: vio4wd-tool vfs ...

def _common(p, persist=True) -> None:
    p.add_argument("--root", default="/", help="act on a captured tree instead of this host")
    if persist:
        p.add_argument("--no-persist", dest="persist", action="store_false",
                       help=f"do not record the change in {STATE_FILE} / the {UNIT_NAME} boot unit")
        p.add_argument("--persist-root", metavar="DIR", help="write the persistent files below DIR")
    p.add_argument("--check", action="store_true", help="show what would change; change nothing")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def _onoff(text: str) -> bool:
    t = text.lower()
    if t in ("on", "yes", "true", "1"):
        return True
    if t in ("off", "no", "false", "0"):
        return False
    raise ActionError(f"bad switch value {text!r}: expected on or off")


def register(sub) -> None:
    p = sub.add_parser("vfs", help="SR-IOV VFs: create, bind to a DPDK driver, status",
                       description="Create SR-IOV VFs, bind them to igb_uio or vfio-pci, replay both at boot.")
    vs = p.add_subparsers(dest="vfs_command", metavar="{create,bind,status,replay}")
    vs.required = True
    c = vs.add_parser("create", help="create N VFs on a PF (write 0 then N), set MAC/trust/spoofchk")
    c.add_argument("--pf", required=True, help="PF interface name or PCI address")
    c.add_argument("--count", type=int, required=True, help="number of VFs (0 removes them)")
    c.add_argument("--mac", action="append", default=[], metavar="VF=MAC", help="VF MAC, e.g. 0=02:00:00:00:00:01")
    c.add_argument("--trust", help="on/off for every VF")
    c.add_argument("--spoofchk", help="on/off for every VF")
    c.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds to wait for the VF devices")
    _common(c)
    c.set_defaults(func=cmd_create)
    b = vs.add_parser("bind", help="bind devices to a driver (driver_override + unbind + drivers_probe)")
    b.add_argument("devices", nargs="+", metavar="PCI", help="PCI addresses dddd:bb:dd.f")
    b.add_argument("--driver", required=True, help="igb_uio or vfio-pci (or a kernel driver to go back)")
    b.add_argument("--force", action="store_true", help="bind even when the interface has addresses/routes")
    _common(b)
    b.set_defaults(func=cmd_bind)
    s = vs.add_parser("status", help="network devices and their drivers (like dpdk-devbind --status)")
    s.add_argument("--root", default="/")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_status)
    r = vs.add_parser("replay", help=f"re-create VFs and bindings from {STATE_FILE} (the boot unit)")
    r.add_argument("--state", default=None, metavar="PATH", help=f"state file (default {STATE_FILE})")
    r.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT)
    _common(r, persist=False)
    r.set_defaults(func=cmd_replay)


def _finish(root: Root, res: ActionResult, args, what: str) -> int:
    if res.changes and not args.check and root.live:
        require_root(what)
    return emit(execute(res, args.check), args.json)


def cmd_create(args) -> int:
    root = Root(args.root)
    macs = {}
    for spec in args.mac:
        i, sep, mac = spec.partition("=")
        if not sep or not i.isdigit():
            raise ActionError(f"--mac {spec!r}: expected VF=MAC like 0=02:00:00:00:00:01")
        macs[int(i)] = mac
    trust = _onoff(args.trust) if args.trust is not None else None
    spoof = _onoff(args.spoofchk) if args.spoofchk is not None else None
    res = create_action(root, args.pf, args.count, macs, trust, spoof, args.timeout, args.persist,
                        Root(args.persist_root) if args.persist_root else None)
    return _finish(root, res, args, "vio4wd-tool vfs create")


def cmd_bind(args) -> int:
    root = Root(args.root)
    res = bind_action(root, args.devices, args.driver, args.force, args.persist,
                      Root(args.persist_root) if args.persist_root else None)
    return _finish(root, res, args, "vio4wd-tool vfs bind")


def cmd_status(args) -> int:
    st = status(Root(args.root))
    print(json.dumps(st, indent=2) if args.json else render_status(st), end="" if not args.json else "\n")
    return 0


def cmd_replay(args) -> int:
    root = Root(args.root)
    state = _load_state_file(args.state) if args.state else load_state(root)
    if not args.check and root.live:
        require_root("vio4wd-tool vfs replay")
    res = replay(root, state, args.timeout, args.check)
    return emit(res, args.json)
