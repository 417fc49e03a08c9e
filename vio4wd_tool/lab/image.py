"""The lab VM base image: Debian 12 (mmdebstrap minbase + kernel, GRUB, OpenSSH, Python), cached.

Recipe (lab-facts): mmdebstrap a tarball; one partition at sector 2048 on a raw disk; the host
kernel cannot see partitions on loop devices, so the filesystem (LABEL=rootfs) is made and filled
through `losetup -o 1MiB`; a first boot of the image's own kernel (QEMU -kernel/-initrd) installs
GRUB and powers off; then the disk becomes a qcow2. The cache name carries a hash of the recipe
(suite, mirrors, packages, customize hook, disk size, the lab SSH key), so a changed recipe builds
a new image and an unchanged one is reused. Downloaded .debs are kept in the lab cache for reruns.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from .common import QEMU, QEMU_ACCEL, QEMU_IMG, LabError, cache_dir, digest, require, require_qemu10, run, say

SUITE = "bookworm"
MIRRORS = (
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
)
PACKAGES = (
    "systemd-sysv", "udev", "dbus", "openssh-server", "python3", "python3-apt", "python3-venv", "sudo",
    "linux-image-amd64", "initramfs-tools", "grub-pc", "iproute2", "kmod", "pciutils", "procps",
    "iputils-ping", "ethtool", "numactl", "ca-certificates",
)
CUSTOMIZE = Path(__file__).with_name("image-customize.sh")
DISK_SIZE = 8 << 30
PART_OFFSET = 2048 * 512
FIRSTBOOT_OK = "VIO4WD-FIRSTBOOT-OK"
FIRSTBOOT_TIMEOUT = 900


def ssh_key() -> Path:
    """The lab's root SSH private key (generated once in the cache)."""
    key = cache_dir() / "lab_ed25519"
    if not key.exists():
        require("ssh-keygen", hint="apt-get install openssh-client")
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "vio4wd-lab", "-f", str(key)])
    return key


def recipe_key() -> str:
    pub = Path(str(ssh_key()) + ".pub").read_text()
    return digest(SUITE, *MIRRORS, *PACKAGES, CUSTOMIZE.read_text(), str(DISK_SIZE), pub)


def image_path() -> Path:
    return cache_dir() / f"base-{SUITE}-{recipe_key()}.qcow2"


def apt_cache() -> Path:
    path = cache_dir() / "apt-archives"
    path.mkdir(exist_ok=True)
    return path


@contextmanager
def _lock(name: str):
    with open(cache_dir() / f"{name}.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def ensure_image(force: bool = False) -> Path:
    """Path of the cached base qcow2, building it when the recipe changed (or force)."""
    with _lock("image"):
        out = image_path()
        if out.exists() and not force:
            return out
        require("mmdebstrap", "sfdisk", "losetup", "mkfs.ext4", "mount", "tar", QEMU_IMG)
        require_qemu10()
        if os.geteuid() != 0:
            raise LabError("building the lab image needs root (mmdebstrap, losetup, mount)")
        t0 = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="vio4wd-image-", dir=cache_dir()) as tmp:
            work = Path(tmp)
            _mmdebstrap(work / "rootfs.tar")
            kernel, initrd = _assemble(work / "rootfs.tar", work / "disk.raw", work)
            _first_boot(work / "disk.raw", kernel, initrd, work / "firstboot.log")
            say("converting the disk to qcow2")
            run([QEMU_IMG, "convert", "-O", "qcow2", str(work / "disk.raw"), str(work / "disk.qcow2")])
            for old in cache_dir().glob(f"base-{SUITE}-*.qcow2"):
                say(f"removing the outdated image {old.name}")
                old.unlink()
            (work / "disk.qcow2").rename(out)
        say(f"lab image ready in {time.monotonic() - t0:.0f} s: {out} ({out.stat().st_size >> 20} MiB)")
        return out


def _mmdebstrap(tarball: Path) -> None:
    say(f"mmdebstrap {SUITE} minbase + {len(PACKAGES)} packages (debs cached in {apt_cache()}), about 2-3 min")
    t0 = time.monotonic()
    cache = apt_cache()
    cmd = ["mmdebstrap", "--variant=minbase", "--mode=root", "--format=tar",
           f"--include={','.join(PACKAGES)}", "--skip=essential/unlink",
           "--setup-hook=mkdir -p \"$1\"/var/cache/apt/archives/",
           f"--setup-hook=sync-in {cache} /var/cache/apt/archives/",
           f"--customize-hook=sync-out /var/cache/apt/archives {cache}",
           f"--customize-hook={CUSTOMIZE}",
           SUITE, str(tarball), *MIRRORS]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        raise LabError(f"mmdebstrap failed (network to deb.debian.org?):\n{proc.stdout[-4000:]}")
    say(f"mmdebstrap done in {time.monotonic() - t0:.0f} s")


def _assemble(tarball: Path, disk: Path, work: Path) -> tuple[Path, Path]:
    """Partitioned raw disk with the rootfs at 1 MiB; returns (vmlinuz, initrd) copied out of it."""
    say("partitioning the disk and filling the filesystem (losetup offset, LABEL=rootfs)")
    with open(disk, "wb") as f:
        f.truncate(DISK_SIZE)
    run(["sfdisk", "-q", str(disk)], input="label: dos\nstart=2048, type=83, bootable\n")
    loop = run(["losetup", "-f", "--show", "-o", str(PART_OFFSET), "--sizelimit",
                str(DISK_SIZE - PART_OFFSET), str(disk)]).stdout.strip()
    mnt = work / "mnt"
    mnt.mkdir()
    try:
        run(["mkfs.ext4", "-q", "-L", "rootfs", loop])
        run(["mount", loop, str(mnt)])
        try:
            run(["tar", "-C", str(mnt), "--xattrs", "--xattrs-include=*", "--numeric-owner", "-xpf", str(tarball)])
            ssh = mnt / "root/.ssh"
            ssh.mkdir(mode=0o700, exist_ok=True)
            shutil.copy(str(ssh_key()) + ".pub", ssh / "authorized_keys")
            os.chmod(ssh / "authorized_keys", 0o600)
            kernel = sorted((mnt / "boot").glob("vmlinuz-*"))[-1]
            initrd = sorted((mnt / "boot").glob("initrd.img-*"))[-1]
            shutil.copy(kernel, work / "vmlinuz")
            shutil.copy(initrd, work / "initrd.img")
        finally:
            run(["umount", str(mnt)])
    finally:
        run(["losetup", "-d", loop])
    return work / "vmlinuz", work / "initrd.img"


def _first_boot(disk: Path, kernel: Path, initrd: Path, log: Path) -> None:
    say("first boot: the guest installs GRUB and powers off (about 1-2 min under TCG)")
    t0 = time.monotonic()
    cmd = [QEMU, "-machine", "q35", *QEMU_ACCEL, "-smp", "2", "-m", "2048", "-nodefaults",
           "-display", "none", "-no-reboot", "-serial", f"file:{log}",
           "-drive", f"file={disk},format=raw,if=virtio",
           "-kernel", str(kernel), "-initrd", str(initrd),
           "-append", "root=LABEL=rootfs rw console=ttyS0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        while proc.poll() is None:
            if time.monotonic() - t0 > FIRSTBOOT_TIMEOUT:
                raise LabError(f"first boot did not power off in {FIRSTBOOT_TIMEOUT} s; console: {log}\n"
                               + _tail(log))
            time.sleep(5)
            if int(time.monotonic() - t0) % 30 < 5:
                say(f"  first boot {time.monotonic() - t0:.0f} s: {_tail(log, 1).strip()[:100]}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if FIRSTBOOT_OK not in log.read_text(errors="replace"):
        raise LabError(f"first boot failed (QEMU: {proc.stdout.read().strip()}); console tail:\n{_tail(log)}")
    say(f"first boot done in {time.monotonic() - t0:.0f} s")


def _tail(path: Path, lines: int = 30) -> str:
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
