"""The `virtio-forwarder` daemon (python -m forwarder): static VFs, pidfile lock, clean stop
(sockets and hugepage files gone), and test 5: client mode restarted under a running guest."""
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import FWD_CPU, PEER_CPU, REPO, peer_eal, udp_frame, write_pcap
from testlib import wait_for

pytestmark = [pytest.mark.root, pytest.mark.dpdk]
DPDK_RUNTIME = Path("/var/run/dpdk")


class Daemon:
    def __init__(self, tmp: Path, *args: str, name: str = "daemon"):
        self.prefix = f"vio4wd-test-{os.getpid()}-{name}"
        cmd = [sys.executable, "-m", "forwarder", "-n", "-C", str(FWD_CPU), "-M", str(PEER_CPU),
               "-u", "", "-g", "", "-V", str(tmp), "-p", str(tmp / "run"),
               "--file-prefix", self.prefix, *args]
        ep = f"ipc://{tmp}/{name}"     # not the host's /var/run/virtio-forwarder endpoints
        cmd[3:3] = ["-Y", f"{ep}.config", "-Z", f"{ep}.port_control", "-z", f"{ep}.stats",
                    "-s", f"{ep}.core_sched"]
        self.log = open(tmp / f"{name}.log", "a")
        self.p = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                  env=dict(os.environ, PYTHONPATH=str(REPO)))

    def stop(self, sig=signal.SIGTERM) -> int:
        if self.p.poll() is None:
            self.p.send_signal(sig)
            try:
                self.p.wait(30)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.log.close()
        return self.p.returncode


@pytest.fixture
def daemons(tmp_path):
    started: list[Daemon] = []

    def start(*args: str, name: str = "daemon") -> Daemon:
        d = Daemon(tmp_path, *args, name=name)
        started.append(d)
        return d

    yield start
    for d in started:
        d.stop(signal.SIGKILL)
        subprocess.run(["rm", "-rf", str(DPDK_RUNTIME / d.prefix)])


def test_clean_stop_and_pidfile_lock(hugedir, daemons, tmp_path):
    write_pcap(tmp_path / "in.pcap", [udp_frame(i) for i in range(10)])
    env = tmp_path / "virtioforwarder"       # the original's file, as its start script reads it
    env.write_text(f"""# static VFs: a missing one is logged and skipped
VIRTIOFWD_STATIC_VFS=("net_pcap0,rx_pcap={tmp_path}/in.pcap=3"
                      0000:99:00.7=4)
VIRTIOFWD_HUGETLBFS_MOUNT_POINT={hugedir}
export VIRTIOFWD_LOG_LEVEL=7
""")
    d = daemons("--env-file", str(env))
    pidfile = tmp_path / "run" / "virtio-forwarder.pid"
    wait_for(lambda: (tmp_path / "virtio-forwarder31.sock").is_socket(), what="sockets")
    assert pidfile.read_text().strip() == str(d.p.pid)
    assert list(hugedir.glob(f"{d.prefix}map_*")), "expected hugepage files while running"

    second = daemons("-H", str(hugedir), name="second")
    assert second.p.wait(30) == 1
    log = (tmp_path / "second.log").read_text()
    assert f"another virtio-forwarder (pid {d.p.pid}) holds {pidfile}" in log

    assert d.stop() == 0
    assert not list(tmp_path.glob("*.sock")), "server sockets left behind"
    assert not pidfile.exists()
    assert not list(hugedir.glob(f"{d.prefix}map_*")), "hugepage files left behind"
    assert not (DPDK_RUNTIME / d.prefix).exists()
    log = (tmp_path / "daemon.log").read_text()
    assert "relay 3: VF net_pcap0" in log and "relays 0..31" in log
    assert "static VF 0000:99:00.7=4 not attached" in log
    assert "VHOST_CONFIG" in log            # log level 7: the vhost-user traces too


def test_bad_config_exits_2_naming_the_option(tmp_path):
    r = subprocess.run([sys.executable, "-m", "forwarder", "-n", "-C", "1", "-c", "0:7"],
                       capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert r.returncode == 2 and "VIRTIOFWD_CPU_PINS/-c 0:7" in r.stderr


def test_client_mode_restart_under_running_guest(hugedir, daemons, procs, tmp_path):
    """Test 5: the guest (virtio_user server) stays, the forwarder (vhost-user client) restarts;
    traffic resumes."""
    sock = tmp_path / "virtio-forwarder0.sock"
    write_pcap(tmp_path / "in.pcap", [udp_frame(i) for i in range(64)])
    peer = procs("peer_proc.py", {"eal": peer_eal(hugedir, f"net_virtio_user0,path={sock},"
                                                  "server=1,queue_size=1024")}, "peer",
                 wait=False)    # virtio_user in server mode waits for its first client
    args = ("-i", "-H", str(hugedir), "-P", f"net_pcap0,rx_pcap={tmp_path}/in.pcap,"
            "infinite_rx=1=0")
    d = daemons(*args, name="first")
    peer.reply(timeout=30)

    def received(seconds: float) -> int:
        return sum(peer.op("drain", seconds=seconds))

    wait_for(lambda: received(0.5) > 0, timeout=30, what="traffic from the first forwarder")
    assert d.stop() == 0
    assert sock.is_socket(), "client mode must not remove the guest's socket"
    received(0.5)
    assert received(0.5) == 0
    daemons(*args, name="second")
    wait_for(lambda: received(0.5) > 1000, timeout=30, what="traffic after the restart")
