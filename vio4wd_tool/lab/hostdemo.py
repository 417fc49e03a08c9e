"""The host-only lab: the real forwarder on this machine, a `net_tap` VF stand-in in a private
network namespace, and a QEMU 10 (TCG) guest on its vhost-user socket; ping through it.

    vio4wd-tool lab host [--pings N] [--keep]

Everything lives in its own state directory (`<state>/host`), network namespace
(`vio4wd-lab-host`) and hugetlbfs mount; the hugepages it reserves are given back. Teardown (at
the end, on Ctrl-C, or `vio4wd-tool lab host --down` after a crash) removes all of it.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from .common import LabError, say, state_dir

NETNS = "vio4wd-lab-host"
TAP = "vf0"
HOST_IP, GUEST_IP = "10.214.0.1", "10.214.0.2"
GUEST_MAC = "52:54:00:14:00:02"
PAGES = 256  # 2 MiB pages for the forwarder's EAL (socket-mem 256 MB + per-relay mempools)
NR_HUGEPAGES = Path("/proc/sys/vm/nr_hugepages")
WORKER_CPU, MAIN_CPU = 1, 0


def _bin(name: str) -> str:
    """A console script of this installation (the venv's), else from PATH."""
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else name


class HostLab:
    def __init__(self, root: Path | None = None):
        self.dir = root or state_dir() / "host"
        self.huge = self.dir / "huge"
        self.sock = self.dir / "sock"
        self.run_dir = self.dir / "run"
        self.zmq = self.dir / "zmq"
        self.state_file = self.dir / "state.json"
        self.fwd: subprocess.Popen | None = None

    # -- endpoints the operator can use while it runs
    def endpoint(self, name: str) -> str:
        return f"ipc://{self.zmq}/{name}"

    def forwarder_command(self) -> list[str]:
        return ["ip", "netns", "exec", NETNS, _bin("virtio-forwarder"), "-n", "-l", "6",
                "-C", str(WORKER_CPU), "-M", str(MAIN_CPU), "-u", "", "-g", "",
                "-V", str(self.sock), "-p", str(self.run_dir), "-H", str(self.huge),
                "-Y", self.endpoint("config"), "-Z", self.endpoint("port_control"),
                "-z", self.endpoint("stats"), "-s", self.endpoint("core_sched"),
                "-P", f"net_tap0,iface={TAP}=0", "--file-prefix", "vio4wd-lab-host"]

    # -- setup steps, each recorded in state.json so teardown undoes exactly what was done
    def _save(self, **kw) -> None:
        st = self._state()
        st.update(kw)
        self.state_file.write_text(json.dumps(st))

    def _state(self) -> dict:
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}

    def setup_hugepages(self) -> None:
        old = int(NR_HUGEPAGES.read_text())
        self._save(nr_hugepages=old)
        NR_HUGEPAGES.write_text(f"{old + PAGES}\n")
        got = int(NR_HUGEPAGES.read_text())
        if got < old + PAGES:
            raise LabError(f"reserved only {got - old} of {PAGES} 2 MiB pages: free memory "
                           "(echo 1 > /proc/sys/vm/compact_memory) and retry")
        self.huge.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "hugetlbfs", "-o", "pagesize=2M", "nodev", str(self.huge)], check=True)
        self._save(mounted=str(self.huge))

    def setup_netns(self) -> None:
        subprocess.run(["ip", "netns", "add", NETNS], check=True)
        self._save(netns=NETNS)
        subprocess.run(["ip", "-n", NETNS, "link", "set", "lo", "up"], check=True)

    def start_forwarder(self, timeout: float = 60) -> None:
        for d in (self.sock, self.run_dir, self.zmq):
            d.mkdir(parents=True, exist_ok=True)
        log = open(self.dir / "forwarder.log", "wb")
        self.fwd = subprocess.Popen(self.forwarder_command(), stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        self._save(forwarder_pid=self.fwd.pid)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.fwd.poll() is not None:
                raise LabError(f"the forwarder exited ({self.fwd.returncode}):\n{self.log_tail()}")
            if (self.sock / "virtio-forwarder0.sock").exists() and _link_exists(TAP):
                break
            time.sleep(0.2)
        else:
            raise LabError(f"the forwarder did not create its socket and {TAP} in {timeout:.0f} s:\n"
                           f"{self.log_tail()}")
        subprocess.run(["ip", "-n", NETNS, "addr", "add", f"{HOST_IP}/24", "dev", TAP], check=True)
        subprocess.run(["ip", "-n", NETNS, "link", "set", TAP, "up"], check=True)

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join((self.dir / "forwarder.log").read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no forwarder log)"

    def ping(self, count: int) -> tuple[bool, str]:
        p = subprocess.run(["ip", "netns", "exec", NETNS, "ping", "-c", str(count), "-i", "0.2", "-W", "5",
                            GUEST_IP], capture_output=True, text=True)
        return p.returncode == 0, p.stdout + p.stderr

    def stats(self) -> str:
        p = subprocess.run([_bin("vio4wd-tool"), "stats", "--table", "--active-only", "--endpoint", self.endpoint("stats")],
                           capture_output=True, text=True)
        return (p.stdout + p.stderr).rstrip()

    def doctor(self) -> str:
        p = subprocess.run([_bin("vio4wd-tool"), "doctor", "--only", "hugepages.2m", "--only", "hugetlbfs",
                            "--huge-dir", str(self.huge), "--cpus", str(WORKER_CPU), "--main-lcore",
                            str(MAIN_CPU), "--no-jumbo"], capture_output=True, text=True)
        return p.stdout.rstrip()

    # -- teardown: undo what state.json says was done; safe to run twice
    def teardown(self) -> None:
        st = self._state()
        pid = st.get("forwarder_pid")
        if self.fwd is not None and self.fwd.poll() is None:
            self.fwd.send_signal(signal.SIGTERM)
            try:
                self.fwd.wait(20)
            except subprocess.TimeoutExpired:
                self.fwd.kill()
                self.fwd.wait()
        elif pid and _alive(pid):
            os.kill(pid, signal.SIGTERM)
            for _ in range(100):
                if not _alive(pid):
                    break
                time.sleep(0.2)
            else:
                os.kill(pid, signal.SIGKILL)
        if st.get("netns"):
            subprocess.run(["ip", "netns", "del", st["netns"]], check=False, stderr=subprocess.DEVNULL)
        if st.get("mounted"):
            subprocess.run(["umount", st["mounted"]], check=False, stderr=subprocess.DEVNULL)
        if "nr_hugepages" in st:
            NR_HUGEPAGES.write_text(f"{st['nr_hugepages']}\n")
        shutil.rmtree(self.dir, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def _link_exists(name: str) -> bool:
    return subprocess.run(["ip", "-n", NETNS, "link", "show", name], capture_output=True).returncode == 0


def ping_summary(out: str) -> str:
    """The two summary lines of ping: loss and min/avg/max/mdev."""
    lines = [l for l in out.splitlines() if "packet loss" in l or "min/avg/max" in l]
    return "\n".join(lines)


def run(args) -> int:
    from .guest import VhostGuest

    lab = HostLab()
    if args.down:
        lab.teardown()
        say("host lab removed")
        return 0
    if lab.state_file.exists():
        raise LabError(f"a host lab exists already ({lab.dir}): vio4wd-tool lab host --down")
    if os.geteuid() != 0:
        raise LabError("the host lab needs root (hugepages, mounts, network namespaces): run it with sudo")
    lab.dir.mkdir(parents=True, exist_ok=True)
    ok = False
    try:
        say(f"[1/6] reserving {PAGES} x 2 MiB hugepages and mounting hugetlbfs at {lab.huge}")
        before = lab.doctor()
        lab.setup_hugepages()
        print("doctor before:\n" + before + "\n\ndoctor after:\n" + lab.doctor() + "\n", flush=True)
        say(f"[2/6] network namespace {NETNS}")
        lab.setup_netns()
        say(f"[3/6] forwarder: relay 0 = net_tap0 ({TAP} in {NETNS}, {HOST_IP}) <-> "
            f"{lab.sock}/virtio-forwarder0.sock, worker CPU {WORKER_CPU}")
        lab.start_forwarder()
        say("[4/6] guest: QEMU 10 (TCG) busybox guest on the vhost-user socket (about 10-40 s)")
        with VhostGuest(lab.sock / "virtio-forwarder0.sock", mac=GUEST_MAC, ip_cidr=f"{GUEST_IP}/24",
                        name="vio4wd-lab-host-guest") as guest:
            say(f"      guest up after {guest.boot_seconds:.1f} s")
            say(f"[5/6] ping {GUEST_IP} from {NETNS}: tap -> forwarder -> vhost-user -> guest")
            ok, out = lab.ping(args.pings)
            print(ping_summary(out) or out, flush=True)
            say("[6/6] relay stats")
            print(lab.stats(), flush=True)
            if args.keep:
                print(f"\nThe lab keeps running until Ctrl-C. Look around from another shell:\n"
                      f"  vio4wd-tool stats --watch --endpoint {lab.endpoint('stats')}\n"
                      f"  vio4wd-tool fwd-config --endpoint {lab.endpoint('config')}\n"
                      f"  ip netns exec {NETNS} ping {GUEST_IP}\n"
                      f"  vio4wd-tool vm --relay 0 --qemu    # the QEMU args for such a guest\n"
                      f"  forwarder log: {lab.dir / 'forwarder.log'}", flush=True)
                try:
                    while lab.fwd.poll() is None:
                        time.sleep(1)
                except KeyboardInterrupt:
                    pass
    except BaseException:
        print(f"forwarder log:\n{lab.log_tail()}", file=sys.stderr)
        raise
    finally:
        say("teardown: forwarder, guest, namespace, hugetlbfs mount, hugepages")
        lab.teardown()
    if not ok:
        raise LabError("ping through the forwarder failed (see above)")
    say("done: ping went through the forwarder")
    return 0
