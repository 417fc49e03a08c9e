"""Shared paths and helpers of the lab: cache and state directories, progress, commands."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

CACHE_ENV = "VIO4WD_LAB_CACHE"
DEFAULT_CACHE = Path("/var/cache/vio4wd/lab")
STATE_ENV = "VIO4WD_LAB_STATE"
DEFAULT_STATE = Path("/run/vio4wd/lab")
QEMU = "qemu-system-x86_64"
QEMU_IMG = "qemu-img"
# TCG: this machine kind's /dev/kvm (KVM-PVM) cannot boot a Debian kernel.
QEMU_ACCEL = ["-accel", "tcg,thread=multi", "-cpu", "max"]


class LabError(RuntimeError):
    """A lab step failed; the message names the fix."""


def cache_dir() -> Path:
    path = Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE)
    path.mkdir(parents=True, exist_ok=True)
    return path


def state_dir() -> Path:
    path = Path(os.environ.get(STATE_ENV) or DEFAULT_STATE)
    path.mkdir(parents=True, exist_ok=True)
    return path


def say(msg: str) -> None:
    print(f"[lab {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def require(*programs: str, hint: str = "run scripts/setup.sh") -> None:
    missing = [p for p in programs if shutil.which(p) is None]
    if missing:
        raise LabError(f"missing program(s) {', '.join(missing)}: {hint}")


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    """Run a command, raising LabError with its output when it fails."""
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.STDOUT)
    kw.setdefault("text", True)
    proc = subprocess.run(cmd, **kw)
    if proc.returncode != 0:
        out = (proc.stdout or "")[-4000:]
        raise LabError(f"command failed ({proc.returncode}): {' '.join(map(str, cmd))}\n{out}")
    return proc


def digest(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()[:12]


def qemu_version() -> tuple[int, int]:
    require(QEMU)
    first = run([QEMU, "--version"]).stdout.split("\n")[0]
    major, minor = first.split("version ")[1].split(".")[:2]
    return int(major), int(minor)


def require_qemu10() -> None:
    if qemu_version() < (9, 2):
        raise LabError(
            "QEMU >= 9.2 is needed (Debian 12's 7.2 has no igb and crashes on vhost-user under TCG): "
            "apt-get install -t bookworm-backports qemu-system-x86 qemu-utils (scripts/setup.sh does it)"
        )


def debian_kernel() -> tuple[str, Path, Path]:
    """(version, vmlinuz, modules dir) of the newest Debian kernel package on disk."""
    found = []
    for vmlinuz in Path("/boot").glob("vmlinuz-*"):
        ver = vmlinuz.name[len("vmlinuz-"):]
        moddir = Path("/lib/modules") / ver
        if (moddir / "modules.dep").exists():
            found.append((ver, vmlinuz, moddir))
    if not found:
        raise LabError("no Debian kernel with modules under /boot: apt-get install linux-image-amd64")
    return sorted(found, key=lambda f: [int(x) if x.isdigit() else 0 for x in f[0].replace("-", ".").split(".")])[-1]
