"""Fixtures of the control-plane tests: the real forwarder (DPDK, vdevs, no hugepages) with its
control plane in a subprocess (`ctl_proc.py`), and clients of its endpoints."""
from __future__ import annotations

import importlib.util
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
FWD_CPU, MAIN_CPU = 1, 0        # the worker busy-polls CPU 1; the main lcore/ZMQ threads CPU 0
KINDS = ("config", "port_control", "stats", "core_sched")


class Fwd:
    """A running forwarder + control plane; `ep[kind]` are its ZeroMQ endpoints."""

    def __init__(self, tmp: Path, _lcores: str | None = None, _main: str | None = None,
                 **settings):
        self.tmp = tmp
        self.ep = {k: f"ipc://{tmp}/zmq/{k}" for k in KINDS}
        self.prefix = f"vio4wd-ctl-{os.getpid()}-{tmp.name}"
        s = dict(cpus=[FWD_CPU], master_lcore=MAIN_CPU, socket_dir=str(tmp / "socks"),
                 socket_owner="", socket_group="", pid_dir=str(tmp), max_relays=8,
                 **{f"zmq_{k}_ep": v for k, v in self.ep.items()})
        s.update(settings)
        self.settings = s
        eal = ["fwd", "--lcores", _lcores or f"{MAIN_CPU}@{MAIN_CPU},{FWD_CPU}@{FWD_CPU}",
               "--main-lcore", _main or str(MAIN_CPU), "--no-pci", "--no-huge", "-m", "256", "--no-shconf",
               "--file-prefix", self.prefix, "--log-level", "user1,info"]
        self.log_path = tmp / "fwd.log"
        self._log = open(self.log_path, "w")
        env = dict(os.environ, PYTHONPATH=str(REPO))
        self.p = subprocess.Popen([sys.executable, str(HERE / "ctl_proc.py"),
                                   json.dumps({"settings": s, "eal": eal})],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=self._log, text=True, env=env)
        ready, _, _ = select.select([self.p.stdout], [], [], 60)
        line = self.p.stdout.readline() if ready else ""
        if not line:
            self.stop()
            raise AssertionError("forwarder did not start; log:\n" + self.log())
        self.hello = json.loads(line)["ok"]
        self.workers = self.hello["workers"]
        self.max_relays = self.hello["max_relays"]

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text()[-6000:]

    def alive(self) -> bool:
        return self.p.poll() is None

    def stop(self) -> int | None:
        if self.p.poll() is None:
            try:
                self.p.stdin.write("quit\n")
                self.p.stdin.flush()
                self.p.wait(30)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.p.kill()
                self.p.wait()
        self._log.close()
        shutil.rmtree(f"/var/run/dpdk/{self.prefix}", ignore_errors=True)
        return self.p.returncode


@pytest.fixture(scope="session")
def dataplane():
    if importlib.util.find_spec("forwarder._dataplane") is None:
        pytest.fail("forwarder._dataplane is not built: pip install -e . (or python "
                    "forwarder/_dataplane_build.py); needs libdpdk-dev")


@pytest.fixture
def start_fwd(dataplane):
    """Factory: start_fwd(**settings) -> Fwd; everything stopped and removed after the test."""
    started: list[Fwd] = []
    tmps: list[Path] = []

    def start(**settings) -> Fwd:
        tmp = Path(tempfile.mkdtemp(prefix="vio4wd-ctl-"))
        tmps.append(tmp)
        f = Fwd(tmp, **settings)
        started.append(f)
        return f
    yield start
    try:
        for f in started:
            rc = f.stop()
            assert rc == 0, f"forwarder exited {rc}; log:\n{f.log()}"
    finally:
        for t in tmps:
            shutil.rmtree(t, ignore_errors=True)


@pytest.fixture(scope="module")
def fwd(dataplane):
    """One forwarder with fixed sockets shared by a module's tests."""
    tmp = Path(tempfile.mkdtemp(prefix="vio4wd-ctl-"))
    f = Fwd(tmp)
    try:
        yield f
    finally:
        rc = f.stop()
        shutil.rmtree(tmp, ignore_errors=True)
        assert rc == 0, f"forwarder exited {rc}; log:\n{f.log()}"


