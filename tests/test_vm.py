"""`vio4wd-tool vm`: rendered QEMU args started by the real QEMU (-S, hugetlbfs in a private mount
namespace, a vhost-user socket served by a tiny backend or by QEMU itself), and rendered libvirt
XML validated by virt-xml-validate and read back by the doctor."""
from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

import pytest

from testlib import VENV_BIN, vio4wd_tool
from vio4wd_tool.virt import parse_domain

NODE0_2M = "/sys/devices/system/node/node0/hugepages/hugepages-2048kB/nr_hugepages"
QEMU = shutil.which("qemu-system-x86_64")
MAC = "02:00:00:00:00:01"


def js(cp) -> dict:
    assert cp.returncode == 0 and cp.stdout.strip(), cp.stderr
    return json.loads(cp.stdout)


@pytest.fixture
def plan(tmp_path):
    p = tmp_path / "plan.json"
    p.write_text(json.dumps({
        "schema": "vio4wd.plan/1", "node": 0, "driver": "igb_uio", "jumbo": False, "workers": [1],
        "main_lcore": 0, "housekeeping": [0], "hugepages_2m": {"0": 384}, "hugepages_1g": {},
        "huge_dir": "/dev/hugepages", "vhost_client": False,
        "relays": [{"id": 1, "vf": "0000:05:10.0", "vf2vm_cpu": 1, "vm2vf_cpu": 1,
                    "socket": "/tmp/virtio-forwarder/virtio-forwarder1.sock", "vcpus": [0, 1], "mac": MAC,
                    "node": 0, "guest_mem_mb": 2048}]}))
    return p


# ------------------------------------------------------------------ rendering

def test_qemu_args_from_plan(plan):
    r = js(vio4wd_tool("vm", "--relay", "1", "--plan", str(plan), "--queues", "2", "--json"))
    a = r["qemu_args"]
    opts = dict(zip(a[::2], a[1::2]))
    assert opts["-object"] == ("memory-backend-file,id=mem0,size=2048M,mem-path=/dev/hugepages,share=on,"
                               "prealloc=on,host-nodes=0,policy=bind")
    assert opts["-numa"] == "node,nodeid=0,cpus=0-1,memdev=mem0"
    assert opts["-chardev"] == "socket,id=char1,path=/tmp/virtio-forwarder/virtio-forwarder1.sock"  # QEMU: client
    assert opts["-netdev"] == "type=vhost-user,id=net1,chardev=char1,queues=2"
    assert opts["-device"] == (f"virtio-net-pci,netdev=net1,mac={MAC},mq=on,vectors=6,csum=off,gso=off,"
                               "guest_tso4=off,guest_tso6=off,guest_ecn=off,host_tso4=off,host_tso6=off")
    # the human form is a shell-ready command tail
    cp = vio4wd_tool("vm", "--relay", "1", "--plan", str(plan))
    assert cp.returncode == 0 and "-netdev type=vhost-user,id=net1,chardev=char1,queues=1 \\\n" in cp.stdout


def test_server_mode_and_tso(plan):
    r = js(vio4wd_tool("vm", "--relay", "1", "--plan", str(plan), "--vhost-client", "--tso", "--json"))
    a = r["qemu_args"]
    assert "socket,id=char1,path=/tmp/virtio-forwarder/virtio-forwarder1.sock,server=on,wait=off" in a
    dev = a[a.index("-device") + 1]
    assert dev == f"virtio-net-pci,netdev=net1,mac={MAC},mq=on,vectors=4" and "csum=off" not in dev
    assert "mode='server'" in r["libvirt_xml"]


def test_libvirt_xml_valid_and_read_back(plan, tmp_path, capture_tree):
    r = js(vio4wd_tool("vm", "--relay", "1", "--plan", str(plan), "--queues", "4", "--json"))
    xml = r["libvirt_xml"]
    f = tmp_path / "relay1.xml"
    f.write_text(xml)
    cp = subprocess.run(["virt-xml-validate", str(f), "domain"], capture_output=True, text=True)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    d = parse_domain(xml)
    assert d.numa_shared and d.hugepage_sizes_kb == [2048] and d.memory_kb == 2048 * 1024
    assert d.vcpu_pins == {0: [0], 1: [1]} and d.mem_nodes == [0]
    v = d.vhost[0]
    assert (v.mac, v.mode, v.queues, v.path) == (MAC, "client", 4, "/tmp/virtio-forwarder/virtio-forwarder1.sock")
    assert "<emulatorpin cpuset='0'/>" in xml and "<host csum='off' gso='off' tso4='off' tso6='off'/>" in xml
    # the doctor accepts the rendered guest
    t = capture_tree("devbox")
    t.write("/etc/libvirt/qemu/relay1.xml", xml)
    res = subprocess.run([str(VENV_BIN / "vio4wd-tool"), "doctor", "--root", str(t.path), "--only", "guest.memory",
                          "--json"], capture_output=True, text=True)
    checks = json.loads(res.stdout)["checks"]
    assert [c["status"] for c in checks] == ["PASS"], checks


def test_1g_pages_from_plan(plan, tmp_path):
    p = json.loads(plan.read_text())
    p["hugepages_1g"] = {"0": 2}
    plan.write_text(json.dumps(p))
    r = js(vio4wd_tool("vm", "--relay", "1", "--plan", str(plan), "--json"))
    assert "mem-path=/dev/hugepages-1G" in r["qemu_args"][r["qemu_args"].index("-object") + 1]
    assert "<page size='1048576' unit='KiB' nodeset='0'/>" in r["libvirt_xml"]


def test_output_file_check_apply_idempotent(plan, tmp_path):
    out = tmp_path / "relay1.xml"
    args = ["vm", "--relay", "1", "--plan", str(plan), "--libvirt", "-o", str(out)]
    cp = vio4wd_tool(*args, "--check")
    assert cp.returncode == 0 and f"would change: create {out}" in cp.stdout and "+<domain type='kvm'>" in cp.stdout
    assert not out.exists()
    r = js(vio4wd_tool(*args, "--json"))
    assert r["changed"] and out.read_text().startswith("<!-- vio4wd relay 1")
    assert js(vio4wd_tool(*args, "--json"))["changed"] is False


@pytest.mark.parametrize("extra, words", [
    (["--relay", "7"], "--relay 7: the plan has no such relay (relays: 1)"),
    (["--relay", "1", "--queues", "0"], "--queues 0: give 1..32"),
    (["--relay", "1", "--queues", "33"], "--queues 33"),
    (["--relay", "1", "--mac", "01:00:00:00:00:01"], "multicast"),
    (["--relay", "1", "--memory", "1025M"], "not a multiple of the 2M page size"),
    (["--relay", "1", "--memory", "lots"], "--memory 'lots'"),
    (["--relay", "1", "--page-size", "4K"], "--page-size 4K: give 2M or 1G"),
    (["--relay", "1", "--socket", "relative.sock"], "--socket 'relative.sock'"),
    (["--relay", "1", "--vcpus", "0"], "--vcpus 0"),
    (["--relay", "1", "--node", "-1"], "--node -1"),
])
def test_bad_input(plan, extra, words):
    cp = vio4wd_tool("vm", "--plan", str(plan), *extra)
    assert cp.returncode == 2 and words in cp.stderr, cp.stderr


# ------------------------------------------------------------------ the real QEMU

class VhostUserBackend(threading.Thread):
    """Just enough of a vhost-user backend (server side) for QEMU to create its netdev."""

    GET_FEATURES, SET_OWNER, GET_VRING_BASE, GET_PROTOCOL_FEATURES, GET_QUEUE_NUM = 1, 3, 11, 15, 17
    FEATURES = (1 << 30) | (1 << 32) | (1 << 22) | (1 << 15) | (1 << 5)  # PROTOCOL_FEATURES, VERSION_1, MQ, MRG_RXBUF, MAC
    PROTOCOL = 1 << 0  # MQ

    def __init__(self, path: str, queues: int, connect: bool = False):
        super().__init__(daemon=True)
        self.path, self.queues, self.connect = path, queues, connect
        self.seen: list[int] = []
        if not connect:  # serve the socket (the forwarder's default); else connect to QEMU's
            self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.srv.bind(path)
            self.srv.listen(1)
            self.srv.settimeout(60)

    def _conn(self):
        if not self.connect:
            return self.srv.accept()[0]
        end = time.monotonic() + 60
        while True:
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                c.connect(self.path)
                return c
            except OSError:
                c.close()
                if time.monotonic() > end:
                    raise
                time.sleep(0.1)

    def run(self):
        try:
            conn = self._conn()
        except OSError:
            return
        conn.settimeout(60)
        with conn:
            while True:
                try:
                    hdr, fds, _, _ = socket.recv_fds(conn, 12, 8)
                except OSError:
                    return
                for fd in fds:
                    os.close(fd)
                if len(hdr) < 12:
                    return
                req, flags, size = struct.unpack("<III", hdr)
                body = b""
                while len(body) < size:
                    chunk, fds, _, _ = socket.recv_fds(conn, size - len(body), 8)
                    for fd in fds:
                        os.close(fd)
                    if not chunk:
                        return
                    body += chunk
                self.seen.append(req)
                reply = {self.GET_FEATURES: struct.pack("<Q", self.FEATURES),
                         self.GET_PROTOCOL_FEATURES: struct.pack("<Q", self.PROTOCOL),
                         self.GET_QUEUE_NUM: struct.pack("<Q", self.queues),
                         self.GET_VRING_BASE: body[:4] + b"\0\0\0\0"}.get(req)
                if reply is not None:
                    conn.sendall(struct.pack("<III", req, 0x5, len(reply)) + reply)


def qmp(path: str, *commands) -> list:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    end = time.monotonic() + 60
    while True:
        try:
            s.connect(path)
            break
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.2)
    s.settimeout(60)
    f = s.makefile("rw")
    json.loads(f.readline())  # greeting
    out = []
    for cmd in ({"execute": "qmp_capabilities"},) + commands:
        f.write(json.dumps(cmd) + "\n")
        f.flush()
        while True:
            msg = json.loads(f.readline())
            if "return" in msg or "error" in msg:
                out.append(msg)
                break
    s.close()
    return out[1:]


@pytest.fixture
def reserved_pages():
    """32 more 2 MiB pages on node 0 for the guest (64 MiB), put back afterwards."""
    saved = Path(NODE0_2M).read_text()
    cp = vio4wd_tool("hugepages", "--node", "0", "--pages-2m", str(int(saved) + 40), "--no-persist")
    assert cp.returncode == 0, cp.stdout + cp.stderr
    yield
    Path(NODE0_2M).write_text(saved)


@pytest.mark.root
@pytest.mark.skipif(QEMU is None, reason="qemu-system-x86_64 not installed")
@pytest.mark.parametrize("mode", ["client", "server"])
def test_real_qemu_starts_with_rendered_args(tmp_path, reserved_pages, mode):
    """QEMU 10 parses the args, preallocates shared hugepage memory and creates the vhost-user netdev."""
    sock = str(tmp_path / "relay1.sock")
    huge = tmp_path / "huge2m"
    queues = 2
    r = js(vio4wd_tool("vm", "--relay", "1", "--socket", sock, "--memory", "64M", "--vcpus", "2",
                       "--queues", str(queues), "--mac", MAC, "--mem-path", str(huge), "--mode", mode, "--node", "0", "--json"))
    # the forwarder's side: serves the socket when QEMU is the client, connects when QEMU serves it
    backend = VhostUserBackend(sock, queues, connect=(mode == "server"))
    backend.start()
    qmp_path = str(tmp_path / "qmp.sock")
    env = dict(os.environ, PATH=f"{VENV_BIN}:{os.environ['PATH']}")
    script = ("grep hugetlbfs /proc/self/mounts | cut -d' ' -f2 | xargs -r -n1 umount; "
              f"vio4wd-tool hugepages --mounts --mount-2m {huge} --mount-1g {tmp_path}/huge1g --no-persist >&2 && "
              f'exec {QEMU} -S -nodefaults -display none -machine q35,accel=tcg -qmp unix:{qmp_path},server=on,wait=off "$@"')
    proc = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-ec", script, "sh", *r["qemu_args"]],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        status, memdev, net, chardev = qmp(
            qmp_path, {"execute": "query-status"}, {"execute": "query-memdev"},
            {"execute": "human-monitor-command", "arguments": {"command-line": "info network"}},
            {"execute": "human-monitor-command", "arguments": {"command-line": "info chardev"}})
        qmp(qmp_path, {"execute": "quit"})
        proc.wait(30)
    except Exception:
        proc.kill()
        raise
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = proc.stderr.read()
    assert status["return"]["status"] == "prelaunch", err
    m = memdev["return"][0]
    assert (m["id"], m["size"], m["share"], m["prealloc"], m["host-nodes"], m["policy"]) == \
        ("mem0", 64 << 20, True, True, [0], "bind")
    info = net["return"]
    assert "net1" in info and "vhost-user" in info and f"macaddr={MAC}" in info
    assert backend.GET_FEATURES in backend.seen and backend.GET_QUEUE_NUM in backend.seen
    line = [x for x in chardev["return"].splitlines() if x.startswith("char1:")][0]
    assert sock in line and (",server=on" in line) == (mode == "server"), line
