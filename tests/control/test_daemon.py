"""The real `virtio-forwarder` daemon (forwarder/daemon.py) serves the control plane; the CLI
drives it as an operator would."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import shutil
from pathlib import Path

import pytest

from .conftest import FWD_CPU, MAIN_CPU, REPO
from testlib import wait_for

pytestmark = pytest.mark.dpdk


def tool(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run([sys.executable, "-m", "vio4wd_tool", *args], capture_output=True,
                       text=True, timeout=30, env=dict(os.environ, PYTHONPATH=str(REPO)))
    if check:
        assert p.returncode == 0, p.stderr
    return p


def test_daemon_serves_the_endpoints_and_the_cli(dataplane):
    tmp = Path(tempfile.mkdtemp(prefix="vio4wd-ctld-"))
    ep = {k: f"ipc://{tmp}/run/{k}" for k in ("config", "port_control", "stats", "core_sched")}
    prefix = f"vio4wd-ctld-{os.getpid()}"
    argv = [sys.executable, "-m", "forwarder", "-n", "-C", str(FWD_CPU), "-M", str(MAIN_CPU),
            "-p", str(tmp), "-V", str(tmp / "socks"), "-u", "", "-g", "", "-l", "6",
            "-Y", ep["config"], "-Z", ep["port_control"], "-z", ep["stats"],
            "-s", ep["core_sched"], "-P", "net_null0=0", "--file-prefix", prefix,
            "--", "--no-huge", "-m", "256", "--no-shconf", "--no-pci"]
    log = open(tmp / "daemon.log", "w")
    p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                         env=dict(os.environ, PYTHONPATH=str(REPO)))
    try:
        wait_for(lambda: os.path.exists(ep["port_control"][6:]) or p.poll() is not None,
                 timeout=60, what="the daemon's endpoints")
        assert p.poll() is None, (tmp / "daemon.log").read_text()
        out = tool("stats", "--relay", "0", "--delay", "200", "--endpoint", ep["stats"]).stdout
        keys = dict(line.split("=", 1) for line in out.splitlines())
        assert keys["relay_0.vf.pci_addr_str"] == "net_null0"
        assert int(keys[f"relay_0.vf_to_vm.cpu_{FWD_CPU}.pkts_rx_from_vf"]) > 0
        assert float(keys[f"relay_0.vf_to_vm.cpu_{FWD_CPU}.pkt_rate_rx_from_vf"]) >= 0
        tool("ports", "add", "net_null1", "net_null2", "--relay", "1", "--mode", "0",
             "--endpoint", ep["port_control"])
        sock1 = str(tmp / "socks" / "virtio-forwarder1.sock")
        q = tool("ports", "query-pci", sock1, "--endpoint", ep["port_control"]).stdout
        assert q.strip() == "net_null1 net_null2"
        assert "relay_1: vf_to_vm cpu 1" in tool("fwd-config", "--endpoint", ep["config"]).stdout
        bad = tool("relay-pin", "1:7", "--endpoint", ep["core_sched"], check=False)
        assert bad.returncode == 1 and "BAD_CPU" in bad.stderr
        tool("ports", "remove", "--relay", "1", "--endpoint", ep["port_control"])
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        log.close()
        text = (tmp / "daemon.log").read_text()
        leftover = [e for e in ep.values() if os.path.exists(e[6:])]
        shutil.rmtree(f"/var/run/dpdk/{prefix}", ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
    assert p.returncode == 0, text[-4000:]
    assert leftover == []                                     # ipc files removed on stop
    down = tool("stats", "--endpoint", ep["stats"], check=False)
    assert down.returncode == 3 and "not running" in down.stderr
