"""Kernel modules for the VF driver (uio + igb_uio, or vfio-pci): what is loaded, what is on disk."""
from __future__ import annotations

import lzma
import re
from dataclasses import dataclass

from .checks import check, fail, ok, skip, warn
from .root import Root

SYS_MODULE = "/sys/module"
MODULES_DIR = "/lib/modules"
# where dkms / make install put out-of-tree modules, relative to /lib/modules/<release>
OOT_DIRS = ("updates/dkms", "updates", "extra", "kernel/drivers/uio")
DRIVER_MODULES = {"igb_uio": ["uio", "igb_uio"], "vfio-pci": ["vfio", "vfio_pci"],
                  "uio_pci_generic": ["uio", "uio_pci_generic"]}


def module_name(name: str) -> str:
    return name.replace("-", "_")


@dataclass
class ModuleFile:
    path: str
    release: str  # the /lib/modules/<release> it lives in
    vermagic: str | None


@dataclass
class ModInfo:
    loaded: set[str]  # /sys/module entries with refcnt or initstate (really loaded, not built-in params)
    builtin: set[str]
    files: dict[str, list[ModuleFile]]  # module name -> igb_uio.ko files found

    def present(self, name: str) -> bool:
        n = module_name(name)
        return n in self.loaded or n in self.builtin


def vermagic_of(data: bytes) -> str | None:
    if data[:6] == b"\xfd7zXZ\x00":
        try:
            data = lzma.decompress(data)
        except lzma.LZMAError:
            return None
    m = re.search(rb"vermagic=([^\x00]*)", data)
    return m.group(1).decode(errors="replace") if m else None


def probe(root: Root, release: str, names=("igb_uio",)) -> ModInfo:
    loaded = set()
    for d in root.listdir(SYS_MODULE):
        # a module that is loaded has initstate; a built-in one only has parameters
        if root.exists(f"{SYS_MODULE}/{d}/initstate"):
            loaded.add(d)
    builtin = set()
    for line in (root.read(f"{MODULES_DIR}/{release}/modules.builtin", "") or "").splitlines():
        builtin.add(module_name(line.rsplit("/", 1)[-1].split(".ko")[0]))
    files: dict[str, list[ModuleFile]] = {}
    for rel in root.listdir(MODULES_DIR):
        for sub in OOT_DIRS:
            for n in names:
                for ext in (".ko", ".ko.xz"):
                    p = f"{MODULES_DIR}/{rel}/{sub}/{n}{ext}"
                    if root.exists(p):
                        data = root.read_bytes(p) or b""
                        files.setdefault(n, []).append(ModuleFile(p, rel, vermagic_of(data)))
    return ModInfo(loaded, builtin, files)


@check("kmod.driver", "Kernel", "Checking the VF driver's kernel modules",
       "uio and igb_uio loaded for igb_uio (or vfio and vfio_pci for vfio-pci)")
def check_loaded(host, intent):
    mods = DRIVER_MODULES.get(intent.driver)
    if not mods:
        return skip(f"unknown driver {intent.driver}")
    missing = [m for m in mods if not host.modules.present(m)]
    if not missing:
        return ok(" and ".join(mods) + " loaded")
    if intent.driver == "igb_uio":
        fix = ("vio4wd-tool igb-uio (builds dpdk-kmods-dkms for this kernel, then modprobe uio; "
               "modprobe igb_uio) or role vio4wd_igb_uio")
    else:
        fix = f"modprobe {module_name(intent.driver)}"
    return fail(", ".join(missing) + " not loaded", fix)


@check("kmod.igb_uio_file", "Kernel", "Checking igb_uio.ko matches the running kernel",
       "an igb_uio.ko on disk is built for the running kernel (vermagic)")
def check_igb_uio_file(host, intent):
    if intent.driver != "igb_uio":
        return skip(f"driver is {intent.driver}")
    rel = host.kernel.release
    files = host.modules.files.get("igb_uio", [])
    mine = [f for f in files if f.release == rel]
    others = sorted({f.release for f in files if f.release != rel})
    if not mine:
        if host.modules.present("igb_uio"):
            return ok("igb_uio loaded (no module file found in the usual places)")
        hint = f"; found only for {', '.join(others)}" if others else ""
        return fail(f"no igb_uio.ko for the running kernel {rel}{hint}",
                    f"apt-get install linux-headers-{rel} dpdk-kmods-dkms (or vio4wd-tool igb-uio)")
    bad = [f for f in mine if f.vermagic and f.vermagic.split()[0] != rel]
    if bad:
        return fail(f"{bad[0].path} was built for {bad[0].vermagic.split()[0]}, the kernel is {rel}",
                    f"rebuild: dkms install dpdk-kmods -k {rel} (or vio4wd-tool igb-uio)")
    return ok(f"{mine[0].path} built for {rel}")
