"""Kernel modules for the VF driver (uio + igb_uio, or vfio-pci): what is loaded, what is on disk."""
from __future__ import annotations

import lzma
import os
import re
from dataclasses import dataclass

from .actions import ActionError, ActionResult, Change, emit, execute, file_change, require_root, run_cmd
from .checks import check, fail, ok, skip
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


# ---------------------------------------------------------------- action: vio4wd-tool igb-uio
#
# Build igb_uio from Debian's dpdk-kmods-dkms (dkms) for a kernel with its headers installed,
# verify the module's vermagic, `modprobe uio` then `modprobe igb_uio`, persist through
# /etc/modules-load.d.  Elsewhere, `--source DIR` builds DPDK's dpdk-kmods checkout with kbuild.

DKMS_PACKAGE = "dpdk-kmods-dkms"
DKMS_MODULE = "dpdk-kmods"
MODULES_LOAD = "/etc/modules-load.d/vio4wd-igb_uio.conf"
SECUREBOOT_VAR = "/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"
DKMS_MOK = "/var/lib/dkms/mok.pub"
RELEASE_RE = re.compile(r"[A-Za-z0-9._+~-]+")


def secure_boot(root: Root) -> bool:
    data = root.read_bytes(SECUREBOOT_VAR)
    return bool(data) and len(data) >= 5 and data[4] == 1


def secure_boot_fix() -> str:
    return (f"Secure Boot is on: the kernel loads only signed modules. Enroll DKMS's signing key "
            f"(mokutil --import {DKMS_MOK}, reboot, confirm in MokManager), or use --driver vfio-pci")


def dkms_source(root: Root) -> str | None:
    """The dpdk-kmods version dkms knows from /usr/src (dpdk-kmods-VERSION), newest first."""
    vers = [d.split(f"{DKMS_MODULE}-", 1)[1] for d in root.listdir("/usr/src") if d.startswith(f"{DKMS_MODULE}-")]
    return sorted(vers)[-1] if vers else None


def module_file(root: Root, release: str) -> ModuleFile | None:
    files = [f for f in probe(root, release).files.get("igb_uio", []) if f.release == release]
    return files[0] if files else None


def verify_module(root: Root, release: str) -> ModuleFile:
    """The igb_uio.ko for `release`, built for it (vermagic); ActionError naming the fix otherwise."""

    f = module_file(root, release)
    if f is None:
        raise ActionError(f"no igb_uio.ko for {release} under /lib/modules/{release}: the build did not install "
                          f"it; see dkms status and /var/lib/dkms/{DKMS_MODULE}/*/build/make.log")
    built = (f.vermagic or "").split()[0] if f.vermagic else None
    if built != release:
        raise ActionError(f"wrong vermagic: {f.path} was built for {built or 'an unknown kernel'}, not {release}; "
                          f"rebuild it: vio4wd-tool igb-uio --rebuild (dkms install {DKMS_MODULE} -k {release} --force)")
    return f


def explain_modprobe(err: str, root: Root) -> str:
    e = err.lower()
    if "key was rejected" in e or "required key not available" in e or secure_boot(root):
        return secure_boot_fix()
    if "exec format error" in e or "invalid module format" in e:
        return "wrong vermagic: the module does not match the running kernel; vio4wd-tool igb-uio --rebuild"
    if "not found" in e:
        return "the module is not installed for the running kernel: vio4wd-tool igb-uio"
    return "see dmesg"


def run_progress(argv: list[str], what: str, timeout: float = 1800) -> None:
    """Run a build step, its output shown line by line on stderr (progress), errors named."""
    import subprocess
    import sys
    import time

    print(f"igb-uio: {what}: {' '.join(argv)}", file=sys.stderr, flush=True)
    try:
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             stdin=subprocess.DEVNULL)
    except FileNotFoundError as e:
        raise ActionError(f"{argv[0]} not found: apt-get install {argv[0]}") from e
    tail: list[str] = []
    end = time.monotonic() + timeout
    assert p.stdout is not None
    for line in p.stdout:
        line = line.rstrip()
        tail = (tail + [line])[-20:]
        print(f"igb-uio:   {line}", file=sys.stderr, flush=True)
        if time.monotonic() > end:
            p.kill()
            raise ActionError(f"{what} timed out after {timeout:.0f} s")
    if p.wait() != 0:
        raise ActionError(f"{what} failed ({p.returncode}): " + " | ".join(tail[-5:]))


def igb_uio_action(root: Root, release: str | None = None, load: bool = True, rebuild: bool = False,
                   source: str | None = None, persist: bool = True, persist_root: Root | None = None):
    from .kernel import probe as kprobe

    running = kprobe(root).release
    release = release or running
    if not RELEASE_RE.fullmatch(release or ""):
        raise ActionError(f"--kernel {release!r}: not a kernel release (like 6.1.0-18-amd64)")
    if release != running and not root.is_dir(f"{MODULES_DIR}/{release}"):
        raise ActionError(f"--kernel {release}: no /lib/modules/{release}: install that kernel first")
    if source is not None and not os.path.isfile(os.path.join(source, "linux", "igb_uio", "igb_uio.c")):
        raise ActionError(f"--source {source}: not a dpdk-kmods checkout (no linux/igb_uio/igb_uio.c)")
    res = ActionResult("igb-uio")
    res.data = {"kernel": release, "running": running, "secure_boot": secure_boot(root)}
    if res.data["secure_boot"]:
        res.notes.append(secure_boot_fix() + " (when modprobe is refused)")
    f = module_file(root, release)
    stale = f is not None and (f.vermagic or "").split()[:1] != [release]
    need_build = f is None or stale or rebuild
    if need_build:
        if not root.exists(f"{MODULES_DIR}/{release}/build/Makefile"):
            pkg = f"linux-headers-{release}"
            raise ActionError(f"no kernel headers for {release} ({MODULES_DIR}/{release}/build is missing): "
                              f"apt-get install {pkg} (a kernel without a headers package, like a custom or "
                              "cloud-provider build, needs its build tree there)")
        if stale:
            res.notes.append(f"{f.path} was built for {(f.vermagic or '?').split()[0]}, not {release}: rebuilding")
        if source:
            kdir = str(root.path(f"{MODULES_DIR}/{release}/build"))
            src = os.path.join(source, "linux", "igb_uio")

            def build_src():
                _need_live(root, "building igb_uio")
                run_progress(["make", "-C", kdir, f"M={src}", "modules"], "build igb_uio from --source")
                run_progress(["make", "-C", kdir, f"M={src}", "INSTALL_MOD_DIR=extra", "modules_install"],
                             "install igb_uio")
                run_cmd(["depmod", release])
                verify_module(root, release)

            res.changes.append(Change(f"build igb_uio for {release} from {source} (kbuild)", apply=build_src))
        else:
            ver = dkms_source(root)
            if ver is None:
                def install_pkg():
                    _need_live(root, f"installing {DKMS_PACKAGE}")
                    run_progress(["apt-get", "install", "-y", "--no-install-recommends", DKMS_PACKAGE],
                                 f"install {DKMS_PACKAGE}")

                res.changes.append(Change(f"install {DKMS_PACKAGE} (Debian's dpdk-kmods for dkms)", apply=install_pkg))

            def build_dkms():
                _need_live(root, "building igb_uio")
                v = dkms_source(root)
                if v is None:
                    raise ActionError(f"{DKMS_PACKAGE} is not installed (no /usr/src/{DKMS_MODULE}-*): apt-get "
                                      f"install {DKMS_PACKAGE}, or give --source DIR (DPDK's dpdk-kmods)")
                argv = ["dkms", "install", f"{DKMS_MODULE}/{v}", "-k", release]
                run_progress(argv + (["--force"] if (stale or rebuild) else []), f"dkms build for {release}")
                verify_module(root, release)

            res.changes.append(Change(f"{'rebuild' if f else 'build'} igb_uio for {release} with dkms "
                                      f"({DKMS_MODULE}/{ver or '<from ' + DKMS_PACKAGE + '>'})", apply=build_dkms))
    elif f is not None:
        res.data["module"] = f.path
    if load and release == running:
        res.changes += load_changes(root, ["uio", "igb_uio"], release, persist=False)
    elif load:
        res.notes.append(f"built for {release}, not loaded: the running kernel is {running}")
    if persist:
        res.changes += persist_changes(persist_root or root, ["uio", "igb_uio"], MODULES_LOAD)
    return res


def load_changes(root: Root, modules: list[str], release: str, persist: bool = True,
                 persist_root: Root | None = None) -> list:
    """Changes that modprobe each of `modules` not yet loaded (in order) and, with `persist`, list
    them in /etc/modules-load.d/vio4wd-<last>.conf so they load at boot."""

    info = probe(root, release)
    out = []
    for m in modules:
        if info.present(m):
            continue

        def do_load(m=m):
            _need_live(root, f"modprobe {m}")
            try:
                run_cmd(["modprobe", m], timeout=60)
            except ActionError as e:
                raise ActionError(f"modprobe {m} failed: {e}; {explain_modprobe(str(e), root)}") from e

        out.append(Change(f"modprobe {m}", apply=do_load))
    if persist:
        out += persist_changes(persist_root or root, modules, f"/etc/modules-load.d/vio4wd-{modules[-1]}.conf")
    return out


def persist_changes(root: Root, modules: list[str], conf: str) -> list:
    c = file_change(root, conf, "# managed by vio4wd-tool: load the DPDK VF driver at boot\n"
                    + "".join(f"{m}\n" for m in modules))
    return [c] if c else []


def _need_live(root: Root, what: str) -> None:

    if not root.live:
        raise ActionError(f"{what} needs the live host, not the captured tree {root.prefix}")


def register(sub) -> None:
    p = sub.add_parser("igb-uio", help="build igb_uio (dpdk-kmods-dkms) for the kernel, load it, persist",
                       description="Build igb_uio from Debian's dpdk-kmods-dkms with dkms for the running kernel "
                       "(or --kernel), check its vermagic, modprobe uio then igb_uio, and load both at boot "
                       f"({MODULES_LOAD}).")
    p.add_argument("--root", default="/", help="act on a captured tree (check only)")
    p.add_argument("--kernel", metavar="RELEASE", help="build for this kernel release (default: the running one)")
    p.add_argument("--source", metavar="DIR", help="DPDK's dpdk-kmods checkout, built with kbuild (non-Debian)")
    p.add_argument("--rebuild", action="store_true", help="rebuild even when a matching module exists")
    p.add_argument("--no-load", dest="load", action="store_false", help="build only, do not modprobe")
    p.add_argument("--no-persist", dest="persist", action="store_false", help=f"do not write {MODULES_LOAD}")
    p.add_argument("--persist-root", metavar="DIR", help="write the persistent file below DIR")
    p.add_argument("--check", action="store_true", help="show what would change; change nothing")
    p.add_argument("--json", action="store_true", help="machine-readable result (vio4wd.action/1)")
    p.set_defaults(func=cmd_igb_uio)


def cmd_igb_uio(args) -> int:

    root = Root(args.root)
    res = igb_uio_action(root, args.kernel, args.load, args.rebuild, args.source, args.persist,
                         Root(args.persist_root) if args.persist_root else None)
    if res.changes and not args.check and root.live:
        require_root("vio4wd-tool igb-uio")
    return emit(execute(res, args.check), args.json)
