"""Helpers for the forwarder tests: processes driven by JSON lines, pcap files, EAL args."""
from __future__ import annotations

import json
import os
import select
import shutil
import struct
import subprocess
import sys
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
FWD_CPU, PEER_CPU = 1, 0        # busy pollers on different CPUs (2-core machine)
DPDK_RUNTIME = Path("/var/run/dpdk")


def file_prefix() -> str:
    """A fresh EAL file prefix: /var/run/dpdk/<prefix> is removed by `remove_runtime_dir`."""
    return f"vio4wd-t-{uuid.uuid4().hex[:8]}"


def remove_runtime_dir(eal_args: list[str]) -> None:
    if "--file-prefix" in eal_args:
        shutil.rmtree(DPDK_RUNTIME / eal_args[eal_args.index("--file-prefix") + 1],
                      ignore_errors=True)


class Proc:
    """A helper process (fwd_proc.py / peer_proc.py) answering one JSON line per request."""

    def __init__(self, script: str, conf: dict, log: Path, timeout: float = 30,
                 wait: bool = True, prefix: tuple[str, ...] = ()):
        """wait=False: do not wait for the first line (read it later with `reply()`);
        prefix: a command to run it under, e.g. ("ip", "netns", "exec", NS)."""
        self.log_path = log
        self.eal = conf.get("eal", [])
        self._log = open(log, "w")
        env = dict(os.environ, PYTHONPATH=str(REPO))
        self.p = subprocess.Popen([*prefix, sys.executable, str(HERE / script), json.dumps(conf)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=self._log, text=True, env=env)
        self.hello = self._read(timeout) if wait else None

    def _read(self, timeout: float):
        ready, _, _ = select.select([self.p.stdout], [], [], timeout)
        line = self.p.stdout.readline() if ready else ""
        if not line:
            self.kill()
            raise AssertionError(f"{self.log_path.name}: no answer; log:\n" + self.log())
        reply = json.loads(line)
        return reply

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text()[-4000:]

    def ask(self, timeout: float = 30, **req):
        self.send(**req)
        return self._read(timeout)

    def send(self, **req) -> None:
        """Send a request without waiting; `reply()` reads its answer."""
        self.p.stdin.write(json.dumps(req) + "\n")
        self.p.stdin.flush()

    def reply(self, timeout: float = 60):
        return self._read(timeout)["ok"]

    def call(self, method: str, *args, timeout: float = 30, **kwargs):
        """fwd_proc: call a Forwarder method; raises on a RelayError."""
        reply = self.ask(timeout, call=method, args=list(args), kwargs=kwargs)
        if "error" in reply:
            raise RuntimeError(f"{reply['code']}: {reply['error']}")
        return reply["ok"]

    def op(self, op: str, timeout: float = 60, **kw):
        """peer_proc: one request."""
        return self.ask(timeout, op=op, **kw)["ok"]

    def close(self, quit_msg: dict, timeout: float = 30) -> int:
        if self.p.poll() is None:
            try:
                self.p.stdin.write(json.dumps(quit_msg) + "\n")
                self.p.stdin.flush()
                self.p.wait(timeout)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.kill()
        self._log.close()
        remove_runtime_dir(self.eal)
        return self.p.returncode

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()




def fwd_settings(sock_dir: Path, **kw) -> dict:
    s = dict(cpus=[FWD_CPU], master_lcore=PEER_CPU, socket_dir=str(sock_dir),
             socket_owner="", socket_group="", pid_dir=str(sock_dir), max_relays=32)
    s.update(kw)
    return s


def fwd_eal(huge_dir: Path, *extra: str) -> list[str]:
    return ["fwd", "--lcores", f"{PEER_CPU}@{PEER_CPU},{FWD_CPU}@{FWD_CPU}",
            "--main-lcore", str(PEER_CPU), "--no-pci", "--in-memory", "--huge-dir",
            str(huge_dir), "--file-prefix", file_prefix(), "--log-level", "user1,info", *extra]


def peer_eal(huge_dir: Path, *vdevs: str) -> list[str]:
    args = ["peer", "--lcores", f"0@{PEER_CPU}", "--no-pci", "--in-memory", "--huge-dir",
            str(huge_dir), "--file-prefix", file_prefix(), "--single-file-segments"]
    for v in vdevs:
        args += ["--vdev", v]
    return args


# ------------------------------------------------------------------ pcap files

def write_pcap(path: Path, frames: list[bytes]) -> None:
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i, fr in enumerate(frames):
            f.write(struct.pack("<IIII", i // 1000000, i % 1000000, len(fr), len(fr)) + fr)


def read_pcap(path: Path) -> list[bytes]:
    data = Path(path).read_bytes()
    magic = struct.unpack_from("<I", data)[0]
    if magic not in (0xA1B2C3D4, 0xA1B23C4D):
        raise AssertionError(f"{path}: not a little-endian pcap")
    frames, off = [], 24
    while off + 16 <= len(data):
        _, _, incl, _ = struct.unpack_from("<IIII", data, off)
        frames.append(data[off + 16: off + 16 + incl])
        off += 16 + incl
    return frames


def udp_frame(i: int, size: int = 64, flow: int | None = None, src_mac: int = 2) -> bytes:
    """An Ethernet/IPv4/UDP frame numbered i (the number is in the payload); `flow` sets the
    UDP source port (default: i)."""
    sport = (flow if flow is not None else i) & 0xFFFF
    payload_len = max(size - 42, 8)
    ip_len = 20 + 8 + payload_len
    eth = bytes.fromhex("020000000001") + src_mac.to_bytes(6, "big") + b"\x08\x00"
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, ip_len, i & 0xFFFF, 0, 64, 17, 0,
                     bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))
    udp = struct.pack("!HHHH", sport, 4789, 8 + payload_len, 0)
    payload = struct.pack("!I", i) + bytes((i + k) & 0xFF for k in range(payload_len - 4))
    return eth + ip + udp + payload
