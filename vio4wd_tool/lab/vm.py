"""Lab VM instances: the cached Debian 12 image booted under QEMU 10 (TCG) with an emulated igb
SR-IOV NIC, reachable over SSH on a 127.0.0.1 port forward.

Per instance (state dir ``<state>/<name>/``): a qcow2 overlay on the base image, a daemonized QEMU
(pidfile), a console log, an Ansible inventory snippet; and a network namespace
``vio4wd-lab-<name>`` holding the host end of the igb PF (a tap with HOST_IP) so the host can ping
through the PF. ``down`` removes all of it.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .common import QEMU, QEMU_ACCEL, QEMU_IMG, LabError, require_qemu10, run, say, state_dir
from .image import apt_cache, ensure_image, ssh_key

NETNS_PREFIX = "vio4wd-lab-"
HOST_IP = "10.213.0.1"  # host end of the igb PF, in the lab netns
PREFIX_LEN = 24
BOOT_TIMEOUT = 600.0
SSH_OPTS = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
            "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "ServerAliveInterval=5",
            "-o", "ServerAliveCountMax=6"]


@dataclass
class VMConfig:
    name: str
    numa_nodes: int = 1
    mem_mb: int = 2048
    smp: int = 2
    sriov: bool = True
    port: int = 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class LabVM:
    """One lab VM. ``start()`` boots it (``wait_ssh()`` waits for SSH); ``stop()`` removes it."""

    def __init__(self, name: str = "lab", numa_nodes: int = 1, mem_mb: int = 2048, sriov: bool = True,
                 smp: int = 2):
        if numa_nodes not in (1, 2):
            raise ValueError("numa_nodes must be 1 or 2")
        if numa_nodes > smp:
            raise ValueError("need at least one vCPU per NUMA node")
        if not name.replace("-", "").isalnum() or len(name) > 10:
            raise ValueError("name: up to 10 letters, digits or '-'")
        self.cfg = VMConfig(name, numa_nodes, mem_mb, smp, sriov)
        self.dir = state_dir() / name
        self.netns = NETNS_PREFIX + name
        self.tap = f"vlab-{name}"

    @classmethod
    def load(cls, name: str) -> "LabVM":
        """The VM `name` started earlier (by this or another process)."""
        cfg_file = state_dir() / name / "vm.json"
        if not cfg_file.exists():
            raise LabError(f"no lab VM named {name!r} (vio4wd-tool lab status lists them)")
        cfg = VMConfig(**json.loads(cfg_file.read_text()))
        vm = cls(cfg.name, cfg.numa_nodes, cfg.mem_mb, cfg.sriov, cfg.smp)
        vm.cfg = cfg
        return vm

    def __enter__(self) -> "LabVM":
        self.start()
        try:
            self.wait_ssh()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- paths and state -------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self.cfg.port

    @property
    def pid(self) -> int | None:
        pidfile = self.dir / "qemu.pid"
        if not pidfile.exists():
            return None
        pid = int(pidfile.read_text().strip() or 0)
        return pid if pid and _pid_alive(pid) else None

    @property
    def inventory(self) -> Path:
        return self.dir / "inventory.ini"

    def console_log(self, lines: int = 40) -> str:
        log = self.dir / "console.log"
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else ""

    # -- lifecycle -------------------------------------------------------------------------------
    def qemu_command(self, overlay: Path) -> list[str]:
        c = self.cfg
        cmd = [QEMU, "-name", f"vio4wd-lab-{c.name}", "-machine", "q35", *QEMU_ACCEL,
               "-smp", str(c.smp), "-m", f"{c.mem_mb}M", "-nodefaults", "-display", "none",
               "-device", "VGA,bus=pcie.0",  # GRUB (BIOS console) does not boot the kernel without VGA
               "-daemonize", "-pidfile", str(self.dir / "qemu.pid"),
               "-serial", f"file:{self.dir / 'console.log'}",
               "-monitor", f"unix:{self.dir / 'monitor.sock'},server=on,wait=off",
               # explicit bus=pcie.0: with a PCIe expander bus QEMU would put them behind it
               "-drive", f"file={overlay},format=qcow2,if=none,id=disk0,cache=unsafe",
               "-device", "virtio-blk-pci,drive=disk0,bus=pcie.0",
               "-netdev", f"user,id=mgmt,hostfwd=tcp:127.0.0.1:{c.port}-:22",
               "-device", "virtio-net-pci,netdev=mgmt,bus=pcie.0",
               # the host's lab apt cache, mounted by the image's fstab
               "-fsdev", f"local,id=apt,path={apt_cache()},security_model=none",
               "-device", "virtio-9p-pci,fsdev=apt,mount_tag=vio4wd-apt,bus=pcie.0"]
        if c.numa_nodes == 2:
            half = c.mem_mb // 2
            cpus = c.smp // 2
            for node in (0, 1):
                first = node * cpus
                last = c.smp - 1 if node else cpus - 1
                cmd += ["-object", f"memory-backend-ram,id=m{node},size={half}M",
                        "-numa", f"node,nodeid={node},cpus={first}-{last},memdev=m{node}"]
        if c.sriov:
            cmd += ["-device", "intel-iommu,intremap=on,caching-mode=on"]
            if c.numa_nodes == 2:  # the NIC sits on node 1, behind a PCIe expander bus
                cmd += ["-device", "pxb-pcie,id=pxb1,bus_nr=128,numa_node=1,bus=pcie.0",
                        "-device", "pcie-root-port,id=rp1,bus=pxb1,chassis=1,slot=1"]
            else:
                cmd += ["-device", "pcie-root-port,id=rp1,slot=1"]
            cmd += ["-netdev", f"tap,id=pf0,ifname={self.tap},script=no,downscript=no",
                    "-device", "igb,bus=rp1,netdev=pf0"]
        return cmd

    def start(self) -> None:
        """Create the overlay, the netns and the PF tap, and start QEMU daemonized."""
        require_qemu10()
        if self.pid is not None:
            raise LabError(f"lab VM {self.cfg.name} is already running (vio4wd-tool lab down --name {self.cfg.name})")
        base = ensure_image()
        self.stop()  # leftovers of a crashed run
        try:
            self.dir.mkdir(parents=True)
            self.cfg.port = _free_port()
            (self.dir / "vm.json").write_text(json.dumps(asdict(self.cfg)))
            overlay = self.dir / "disk.qcow2"
            run([QEMU_IMG, "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(base), str(overlay)])
            if self.cfg.sriov:
                run(["ip", "netns", "add", self.netns])
                run(["ip", "tuntap", "add", self.tap, "mode", "tap"])
            say(f"starting lab VM {self.cfg.name} (ssh on 127.0.0.1:{self.port}, {self.cfg.numa_nodes} NUMA node(s))")
            run(self.qemu_command(overlay))
            if self.cfg.sriov:
                # QEMU holds the tap open: move its host end into the lab netns
                run(["ip", "link", "set", self.tap, "netns", self.netns])
                self.netns_exec(["ip", "addr", "add", f"{HOST_IP}/{PREFIX_LEN}", "dev", self.tap])
                self.netns_exec(["ip", "link", "set", self.tap, "up"])
            self._write_inventory()
        except BaseException:
            self.stop()
            raise

    def wait_ssh(self, timeout: float = BOOT_TIMEOUT) -> float:
        """Wait until SSH answers; returns the seconds waited."""
        t0 = time.monotonic()
        last_say = t0
        while True:
            if self.pid is None:
                raise LabError(f"lab VM {self.cfg.name} QEMU is not running; console:\n{self.console_log()}")
            if self.ssh("true", check=False, timeout=20).returncode == 0:
                break
            now = time.monotonic()
            if now - t0 > timeout:
                raise LabError(f"lab VM {self.cfg.name}: no SSH after {timeout:.0f} s; console:\n{self.console_log()}")
            if now - last_say >= 30:
                say(f"  waiting for SSH on {self.cfg.name}: {now - t0:.0f} s")
                last_say = now
            time.sleep(2)
        waited = time.monotonic() - t0
        say(f"lab VM {self.cfg.name} answers SSH after {waited:.0f} s")
        return waited

    def reboot(self, timeout: float = BOOT_TIMEOUT) -> float:
        """Reboot the guest and wait for SSH on the new boot; returns the seconds it took."""
        t0 = time.monotonic()
        boot_id = self.ssh("cat /proc/sys/kernel/random/boot_id").stdout
        self.ssh("systemctl reboot", check=False)
        while True:
            time.sleep(3)
            if time.monotonic() - t0 > timeout:
                raise LabError(f"lab VM {self.cfg.name} did not come back after reboot:\n{self.console_log()}")
            proc = self.ssh("cat /proc/sys/kernel/random/boot_id", check=False, timeout=20)
            if proc.returncode == 0 and proc.stdout != boot_id:
                break
        self.wait_ssh(timeout)
        return time.monotonic() - t0

    def stop(self) -> None:
        """Kill QEMU, remove the netns, the overlay and the state dir (idempotent)."""
        pid = self.pid
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            for _ in range(100):
                if not _pid_alive(pid):
                    break
                time.sleep(0.1)
            else:
                os.kill(pid, signal.SIGKILL)
        if subprocess.run(["ip", "netns", "pids", self.netns], capture_output=True).returncode == 0:
            subprocess.run(["ip", "netns", "del", self.netns], check=False)
        subprocess.run(["ip", "link", "del", self.tap], capture_output=True, check=False)
        shutil.rmtree(self.dir, ignore_errors=True)  # logs, reports, overlay, pidfile
        write_inventory()

    # -- access ----------------------------------------------------------------------------------
    def ssh_command(self, *extra: str) -> list[str]:
        return ["ssh", "-i", str(ssh_key()), "-p", str(self.port), *SSH_OPTS, *extra, "root@127.0.0.1"]

    def ssh(self, command: str, check: bool = True, timeout: float = 600, **kw) -> subprocess.CompletedProcess:
        """Run a shell command in the VM as root; returns the CompletedProcess (text)."""
        try:
            proc = subprocess.run(self.ssh_command() + [command], capture_output=True, text=True,
                                  timeout=timeout, stdin=subprocess.DEVNULL, **kw)
        except subprocess.TimeoutExpired:
            if check:
                raise LabError(f"ssh {self.cfg.name}: {command!r} timed out after {timeout} s") from None
            return subprocess.CompletedProcess(command, 255, "", "timeout")
        if check and proc.returncode != 0:
            raise LabError(f"ssh {self.cfg.name}: {command!r} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}")
        return proc

    def scp_to(self, src: str | os.PathLike, dst: str, recursive: bool = False) -> None:
        run(["scp", "-i", str(ssh_key()), "-P", str(self.port), *SSH_OPTS, "-q"] + (["-r"] if recursive else [])
            + [str(src), f"root@127.0.0.1:{dst}"])

    def scp_from(self, src: str, dst: str | os.PathLike, recursive: bool = False) -> None:
        run(["scp", "-i", str(ssh_key()), "-P", str(self.port), *SSH_OPTS, "-q"] + (["-r"] if recursive else [])
            + [f"root@127.0.0.1:{src}", str(dst)])

    def netns_exec(self, cmd: list[str], **kw) -> subprocess.CompletedProcess:
        """Run a command in the lab netns (the host end of the igb PF)."""
        return run(["ip", "netns", "exec", self.netns, *cmd], **kw)

    def _write_inventory(self) -> None:
        args = " ".join(SSH_OPTS[:6])
        self.inventory.write_text(
            "[vio4wd_lab]\n"
            f"{self.cfg.name} ansible_host=127.0.0.1 ansible_port={self.port} ansible_user=root "
            f"ansible_ssh_private_key_file={ssh_key()} ansible_ssh_common_args={shlex.quote(args)} "
            f"vio4wd_lab_netns={self.netns} vio4wd_lab_host_ip={HOST_IP}\n")
        write_inventory()


def running() -> list[LabVM]:
    vms = []
    for cfg in sorted(state_dir().glob("*/vm.json")):
        vms.append(LabVM.load(cfg.parent.name))
    return vms


def write_inventory() -> Path:
    """<state>/inventory.ini: every lab VM with a state dir, group vio4wd_lab."""
    lines = ["[vio4wd_lab]"]
    for inv in sorted(state_dir().glob("*/inventory.ini")):
        lines += inv.read_text().splitlines()[1:]
    path = state_dir() / "inventory.ini"
    path.write_text("\n".join(lines) + "\n")
    return path
