"""A small QEMU guest with virtio-net over vhost-user, for forwarder tests and the lab.

The guest is the host's Debian kernel (``/boot/vmlinuz-*``) with a busybox initramfs carrying the
virtio_pci / virtio_net modules (cached under the lab cache, keyed by kernel version and init
script). Its init configures eth0 from the kernel command line and serves commands on a second
serial port connected to a unix socket that this module listens on.

    with VhostGuest("/tmp/vf0.sock", ip_cidr="10.0.0.2/24") as guest:
        print(guest.run("ping -c 3 10.0.0.1"))

Client mode (``server=False``, default): the vhost-user peer (the forwarder) is the server and QEMU
connects, retrying every second, so the peer may start later or restart. Server mode: QEMU listens
on ``socket_path``. Either way QEMU does not start the guest before the peer is connected, so
entering the context manager waits for both the peer and the boot.

Multiqueue: with ``queues > 1`` the device has that many queue pairs; Linux enables
min(queues, vCPUs) of them, so pass ``smp=queues`` to use them all.
"""

from __future__ import annotations

import base64
import lzma
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from .common import QEMU, QEMU_ACCEL, LabError, cache_dir, debian_kernel, digest, require, require_qemu10, say

INIT_SCRIPT = Path(__file__).with_name("guest-init.sh")
BUSYBOX = Path("/bin/busybox")
GUEST_MODULES = ("virtio_pci", "virtio_net")
READY = b"VIO4WD-READY\n"
BOOT_TIMEOUT = 180.0


def _module_order(moddir: Path, wanted: tuple[str, ...]) -> list[str]:
    """Relative module paths in load order (dependencies first), from modules.dep."""
    deps: dict[str, list[str]] = {}
    by_name: dict[str, str] = {}
    for line in (moddir / "modules.dep").read_text().splitlines():
        path, _, rest = line.partition(":")
        deps[path] = rest.split()
        by_name[Path(path).name.split(".ko")[0].replace("-", "_")] = path
    order: list[str] = []

    def visit(path: str) -> None:
        if path in order:
            return
        for dep in deps[path]:
            visit(dep)
        order.append(path)

    for name in wanted:
        if name not in by_name:
            raise LabError(f"module {name} not in {moddir}: is {moddir.name} a Debian kernel?")
        visit(by_name[name])
    return order


def build_initramfs() -> tuple[Path, Path]:
    """(vmlinuz, initramfs) of the test guest, building the initramfs once per kernel and recipe."""
    require("cpio", "gzip")
    if not BUSYBOX.exists():
        raise LabError(f"{BUSYBOX} missing: apt-get install busybox-static")
    ver, vmlinuz, moddir = debian_kernel()
    if not os.access(vmlinuz, os.R_OK):
        raise LabError(f"{vmlinuz} is not readable: run as root")
    order = _module_order(moddir, GUEST_MODULES)
    key = digest(INIT_SCRIPT.read_bytes(), BUSYBOX.read_bytes(), *order)
    out = cache_dir() / f"guest-initramfs-{ver}-{key}.cpio.gz"
    if out.exists():
        return vmlinuz, out
    say(f"building the guest initramfs for kernel {ver} -> {out}")
    with tempfile.TemporaryDirectory(prefix="vio4wd-initramfs-") as tmp:
        root = Path(tmp)
        (root / "bin").mkdir()
        shutil.copy2(BUSYBOX, root / "bin/busybox")
        shutil.copy2(INIT_SCRIPT, root / "init")
        mods = root / "lib/modules"
        mods.mkdir(parents=True)
        names = []
        for rel in order:
            src = moddir / rel
            name = src.name.removesuffix(".xz")
            data = lzma.decompress(src.read_bytes()) if src.suffix == ".xz" else src.read_bytes()
            (mods / name).write_bytes(data)
            names.append(name)
        (mods / "order").write_text("\n".join(names) + "\n")
        files = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
        tmp_out = out.with_suffix(".tmp")
        with open(tmp_out, "wb") as f:
            cpio = subprocess.Popen(["cpio", "-o", "-H", "newc", "--quiet", "-R", "0:0"], cwd=root,
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            gz = subprocess.Popen(["gzip", "-1"], stdin=cpio.stdout, stdout=f)
            cpio.stdout.close()
            cpio.communicate("\n".join(files).encode() + b"\n")
            if cpio.wait() != 0 or gz.wait() != 0:
                raise LabError("cpio/gzip failed while building the guest initramfs")
        tmp_out.rename(out)
    return vmlinuz, out


class VhostGuest:
    """A QEMU (TCG) guest whose eth0 is virtio-net on a vhost-user socket; a context manager."""

    def __init__(self, socket_path: str | os.PathLike, mac: str = "52:54:00:12:34:56",
                 ip_cidr: str | None = None, server: bool = False, queues: int = 1,
                 mem_mb: int = 256, smp: int = 1, hugepage_dir: str | os.PathLike | None = None,
                 boot_timeout: float = BOOT_TIMEOUT, name: str = "vio4wd-guest"):
        if queues < 1:
            raise ValueError("queues must be >= 1")
        self.socket_path = str(socket_path)
        self.mac = mac
        self.ip_cidr = ip_cidr
        self.server = server
        self.queues = queues
        self.mem_mb = mem_mb
        self.smp = smp
        self.hugepage_dir = hugepage_dir
        self.boot_timeout = boot_timeout
        self.name = name
        self.proc: subprocess.Popen | None = None
        self.boot_seconds: float | None = None
        self._workdir: Path | None = None
        self._listener: socket.socket | None = None
        self._chan: socket.socket | None = None
        self._buf = b""
        self._next_id = 0
        self._started_at = 0.0

    # -- lifecycle -------------------------------------------------------------------------------
    def __enter__(self) -> "VhostGuest":
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def qemu_command(self, vmlinuz: Path, initrd: Path) -> list[str]:
        assert self._workdir is not None
        size = f"{self.mem_mb}M"
        if self.hugepage_dir:
            memobj = f"memory-backend-file,id=mem,size={size},mem-path={self.hugepage_dir},share=on"
        else:
            memobj = f"memory-backend-memfd,id=mem,size={size},share=on"
        vu = f"socket,id=vu0,path={self.socket_path}"
        vu += ",server=on,wait=off" if self.server else ",reconnect-ms=1000"
        netdev = "vhost-user,id=n0,chardev=vu0"
        device = f"virtio-net-pci,netdev=n0,mac={self.mac}"
        if self.queues > 1:
            netdev += f",queues={self.queues}"
            device += f",mq=on,vectors={2 * self.queues + 2}"
        append = "console=ttyS0 quiet panic=-1"
        if self.ip_cidr:
            append += f" vio4wd.ip={self.ip_cidr}"
        return [QEMU, "-name", self.name, "-machine", "q35", *QEMU_ACCEL,
                "-smp", str(self.smp), "-m", size,
                "-object", memobj, "-numa", "node,memdev=mem",
                "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
                "-kernel", str(vmlinuz), "-initrd", str(initrd), "-append", append,
                "-chardev", f"file,id=con,path={self._workdir / 'console.log'}", "-serial", "chardev:con",
                "-chardev", f"socket,id=cmd,path={self._workdir / 'cmd.sock'}", "-serial", "chardev:cmd",
                "-chardev", vu, "-netdev", netdev, "-device", device]

    def start(self) -> None:
        """Start QEMU; returns once QEMU has connected the command channel."""
        require_qemu10()
        vmlinuz, initrd = build_initramfs()
        self._workdir = Path(tempfile.mkdtemp(prefix="vio4wd-guest-"))
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(self._workdir / "cmd.sock"))
        self._listener.listen(1)
        cmd = self.qemu_command(vmlinuz, initrd)
        self._started_at = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                     stdout=open(self._workdir / "qemu.log", "wb"), stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self._listener.settimeout(0.2)
        deadline = time.monotonic() + 30
        while self._chan is None:
            try:
                self._chan, _ = self._listener.accept()
            except TimeoutError:
                self._check_alive("connecting its command channel")
                if time.monotonic() > deadline:
                    raise LabError(f"QEMU did not connect its command channel in 30 s\n{self.diagnostics()}")

    def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until the guest has configured eth0 (the vhost-user peer must be connected)."""
        self._read_until(READY, timeout or self.boot_timeout, "booting (is the vhost-user peer up?)")
        self.boot_seconds = time.monotonic() - self._started_at

    def stop(self) -> None:
        """Kill QEMU and remove everything this guest created (idempotent)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for sock in (self._chan, self._listener):
            if sock is not None:
                sock.close()
        self._chan = self._listener = None
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
        if self.server and os.path.exists(self.socket_path) and self.proc is not None:
            os.unlink(self.socket_path)
        self.proc = None

    # -- commands --------------------------------------------------------------------------------
    def run(self, command: str, timeout: float = 60.0, check: bool = True) -> str:
        """Run a shell command in the guest; returns its output (stdout+stderr)."""
        rc, out = self.run_rc(command, timeout)
        if check and rc != 0:
            raise LabError(f"guest command {command!r} exited {rc}:\n{out}")
        return out

    def run_rc(self, command: str, timeout: float = 60.0) -> tuple[int, str]:
        """Run a shell command in the guest; returns (exit code, output)."""
        if self._chan is None:
            raise LabError("the guest is not running")
        self._next_id += 1
        cid = self._next_id
        self._chan.sendall(f"{cid} ".encode() + base64.b64encode(command.encode()) + b"\n")
        self._read_until(f"VIO4WD-BEGIN {cid}\n".encode(), timeout, f"running {command!r}")
        body = self._read_until(f"\nVIO4WD-END {cid} ".encode(), timeout, f"running {command!r}")
        rc = self._read_until(b"\n", timeout, f"running {command!r}")
        return int(rc), body.decode(errors="replace")

    def console_log(self) -> str:
        if self._workdir is None:
            return ""
        log = self._workdir / "console.log"
        return log.read_text(errors="replace") if log.exists() else ""

    def diagnostics(self) -> str:
        qemu_log = ""
        if self._workdir is not None and (self._workdir / "qemu.log").exists():
            qemu_log = (self._workdir / "qemu.log").read_text(errors="replace")
        return f"--- qemu output ---\n{qemu_log[-2000:]}\n--- guest console ---\n{self.console_log()[-3000:]}"

    def _check_alive(self, doing: str) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise LabError(f"QEMU exited ({self.proc.returncode}) while {doing}\n{self.diagnostics()}")

    def _read_until(self, marker: bytes, timeout: float, doing: str) -> bytes:
        """Consume the channel up to and including marker; return what came before it."""
        assert self._chan is not None
        deadline = time.monotonic() + timeout
        self._chan.settimeout(0.2)
        while marker not in self._buf:
            if time.monotonic() > deadline:
                raise LabError(f"guest timed out after {timeout:.0f} s while {doing}\n{self.diagnostics()}")
            try:
                data = self._chan.recv(65536)
            except TimeoutError:
                self._check_alive(doing)
                continue
            if not data:
                self._check_alive(doing)
                raise LabError(f"guest command channel closed while {doing}\n{self.diagnostics()}")
            self._buf += data
        before, _, self._buf = self._buf.partition(marker)
        return before
