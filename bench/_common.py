"""Shared pieces of the data-plane benchmarks: hugepages, the two DUTs, statistics, tables.

DUTs (devices under test), both driven from this process over pipes:
- `FwdDut`: the vio4wd forwarder (`forwarder.relays.Forwarder`) in its own process
  (`bench/_fwd_dut.py`, one EAL per process), one worker lcore.
- `Testpmd`: an interactive `dpdk-testpmd` (`-i`); used as the reference DUT (`io` forwarding)
  and as the traffic generator (`txonly` / `rxonly` on `net_virtio_user`).

CPU placement on this 2-core box (lab-facts): the DUT's forwarding lcore on CPU 1, its main
lcore on CPU 0; the generator's forwarding lcore on CPU 0, its main lcore on CPU 1. Main lcores
sleep (stdin), so the two busy pollers never share a CPU.
"""
from __future__ import annotations

import atexit
import contextlib
import json
import os
import platform
import re
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PYTHON = sys.executable
DUT_CPU, GEN_CPU = 1, 0
DUT_LCORES = f"0@{GEN_CPU},1@{DUT_CPU}"     # main lcore 0 sleeps on CPU 0, worker on CPU 1
GEN_LCORES = f"0@{DUT_CPU},1@{GEN_CPU}"     # main lcore 0 sleeps on CPU 1, worker on CPU 0
NR_HUGEPAGES = Path("/proc/sys/vm/nr_hugepages")
TESTPMD = "dpdk-testpmd"
TESTPMD_MBUFS = 16384       # like the forwarder's per-relay pool (4095) plus the generator's


class BenchError(RuntimeError):
    pass


# ------------------------------------------------------------------ environment

@contextlib.contextmanager
def hugepages(pages: int = 512):
    """A private hugetlbfs mount with `pages` more 2 MiB pages reserved; both undone after."""
    if os.geteuid() != 0:
        raise BenchError("run as root (hugepages, namespaces)")
    before = int(NR_HUGEPAGES.read_text())
    NR_HUGEPAGES.write_text(str(before + pages))
    mnt = Path(tempfile.mkdtemp(prefix="vio4wd-bench-huge-"))
    try:
        got = int(NR_HUGEPAGES.read_text()) - before
        if got < pages:
            raise BenchError(f"could reserve only {got} of {pages} hugepages")
        subprocess.run(["mount", "-t", "hugetlbfs", "-o", "pagesize=2M", "nodev", str(mnt)],
                       check=True)
        try:
            yield mnt
        finally:
            subprocess.run(["umount", "-l", str(mnt)], check=False)
    finally:
        NR_HUGEPAGES.write_text(str(max(0, int(NR_HUGEPAGES.read_text()) - pages)))
        with contextlib.suppress(OSError):
            mnt.rmdir()


@contextlib.contextmanager
def workdir(prefix: str = "vb"):
    """A short directory for unix sockets (paths must stay under 108 bytes)."""
    path = Path(f"/tmp/{prefix}-{uuid.uuid4().hex[:6]}")
    path.mkdir()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def eal_memory_error(text: str) -> bool:
    """A start that failed for want of free hugepages or memory (others' tests share the
    pool and the RAM)."""
    return any(m in text for m in ("Cannot get hugepage information", "No free 2048 kB",
                                   "rte_service_init() failed", "Cannot allocate memory",
                                   "Cannot init memory", "failed to map segment"))


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def machine() -> dict:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = int(Path("/proc/meminfo").read_text().split()[1]) // (1024 * 1024)
    dpdk = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "dpdk"],
                          capture_output=True, text=True).stdout or "?"
    return {"host": platform.node(), "cpu": cpu, "cpus": os.cpu_count(), "mem_gib": mem,
            "kernel": platform.release(), "dpdk": dpdk, "tsc_hz": tsc_hz(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "load_start": loadavg()}


_TSC_HZ: int | None = None


def tsc_hz() -> int:
    """The TSC frequency: the kernel's (dmesg 'tsc: Detected' / 'Refined'), else cpu MHz."""
    global _TSC_HZ
    if _TSC_HZ:
        return _TSC_HZ
    hz = 0
    out = subprocess.run(["dmesg"], capture_output=True, text=True).stdout
    for m in re.finditer(r"tsc: (?:Detected|Refined TSC clocksource calibration:) "
                         r"([\d.]+) MHz", out):
        hz = int(float(m.group(1)) * 1e6)
    if not hz:
        m = re.search(r"cpu MHz\s*:\s*([\d.]+)", Path("/proc/cpuinfo").read_text())
        hz = int(float(m.group(1)) * 1e6) if m else 0
    _TSC_HZ = hz
    return hz


# ------------------------------------------------------------------ statistics / output

def summary(values: list[float]) -> dict:
    v = sorted(x for x in values if x is not None)
    if not v:
        return {"n": 0, "median": None, "min": None, "max": None, "p25": None, "p75": None,
                "values": []}
    q = statistics.quantiles(v, n=4) if len(v) > 1 else [v[0], v[0], v[0]]
    return {"n": len(v), "median": statistics.median(v), "min": v[0], "max": v[-1],
            "p25": q[0], "p75": q[2], "values": [round(x, 4) for x in values if x is not None]}


def ratio(a, b):
    return a / b if a and b else None


def fmt(x, spec=".2f", none="-"):
    return none if x is None else format(x, spec)


def table(headers: list[str], rows: list[list], aligns: str | None = None) -> str:
    cells = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h)
              for i, h in enumerate(headers)]
    aligns = aligns or "l" + "r" * (len(headers) - 1)

    def line(r):
        return "  ".join(c.ljust(w) if a == "l" else c.rjust(w)
                         for c, w, a in zip(r, widths, aligns))
    out = [line(headers), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in cells]
    return "\n".join(out)


def emit(result: dict, as_json: bool, text: str, save: str | None = None) -> None:
    """Print the table (or the JSON); `save`: also write the JSON to that file."""
    if save:
        Path(save).write_text(json.dumps(result, indent=2) + "\n")
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        print(text)


def say(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ processes

class Testpmd:
    """An interactive dpdk-testpmd: `cmd(line, until=regex)` returns the output of a command."""

    PROMPT = b"testpmd> "

    def __init__(self, eal: list[str], app: list[str], log: Path, timeout: float = 60,
                 prefix: tuple[str, ...] = ()):
        self.log_path = log
        # stdbuf: printf to a pipe would be block-buffered
        self.argv = [*prefix, "stdbuf", "-o0", "-e0", TESTPMD, *eal, "--", "-i", *app]
        self._log = open(log, "wb")
        self._log.write((" ".join(self.argv) + "\n").encode())
        self.p = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, start_new_session=True)
        self._buf = b""
        self._eof = False
        self._cv = threading.Condition()
        # drain stdout all the time: a full pipe would block testpmd's vhost-user thread
        self._reader = threading.Thread(target=self._read_loop, daemon=True)
        self._reader.start()
        self.banner = self._until_prompt(timeout)
        self.nports = len(re.findall(r"Configuring Port \d+", self.banner))

    def start(self) -> None:
        self.cmd("start", until=r"packets/burst=\d+|already started")

    def _read_loop(self) -> None:
        fd = self.p.stdout.fileno()
        while True:
            data = os.read(fd, 65536)
            with self._cv:
                if not data:
                    self._eof = True
                    self._cv.notify_all()
                    return
                self._log.write(data)
                self._buf += data
                self._cv.notify_all()

    def _until_prompt(self, timeout: float, marker: bytes | None = None) -> str:
        """Wait for the next prompt (after `marker`, the echo of the command, if given)."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                if marker is not None and marker in self._buf:
                    self._buf = self._buf.split(marker, 1)[1]
                    marker = None
                if marker is None and self.PROMPT in self._buf:
                    break
                if self._eof:
                    raise BenchError(f"testpmd exited ({self.p.wait()}); log {self.log_path}:\n"
                                     + self.tail())
                left = deadline - time.monotonic()
                if left <= 0:
                    self.kill()
                    raise BenchError(f"testpmd: no prompt in {timeout:.0f} s; log "
                                     f"{self.log_path}:\n" + self.tail())
                self._cv.wait(min(left, 0.5))
            out, _, self._buf = self._buf.partition(self.PROMPT)
        return out.decode(errors="replace")

    def cmd(self, line: str, timeout: float = 30, until: str | None = None) -> str:
        """Run a command and return its output.  testpmd's prompt is no reliable end marker
        (event messages re-print it, and log lines of other threads interleave with the
        character-by-character echo of the command), so with `until` (a regex) wait for that
        in the output instead; without, wait for the echo of the command and a prompt."""
        with self._cv:
            self._buf = b""
        self.p.stdin.write(line.encode() + b"\n")
        self.p.stdin.flush()
        if until is None:
            return self._until_prompt(timeout, line.encode())
        deadline = time.monotonic() + timeout
        pat = re.compile(until.encode(), re.S)
        with self._cv:
            while not pat.search(self._buf):
                if self._eof:
                    raise BenchError(f"testpmd exited ({self.p.wait()}); log {self.log_path}:\n"
                                     + self.tail())
                left = deadline - time.monotonic()
                if left <= 0:
                    self.kill()
                    raise BenchError(f"testpmd: no answer to {line!r} in {timeout:.0f} s; log "
                                     f"{self.log_path}:\n" + self.tail())
                self._cv.wait(min(left, 0.5))
            out, self._buf = self._buf, b""
        return out.decode(errors="replace")

    def tail(self, n: int = 3000) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-n:]

    def port_stats(self) -> dict[int, dict[str, int]]:
        """{port: {rx, tx, rx_missed, rx_nombuf, tx_errors}} from `show port stats all`."""
        out = self.cmd("show port stats all",
                       until=rf"statistics for port {self.nports - 1} .*?Tx-pps.*?#####")
        stats: dict[int, dict[str, int]] = {}
        for m in re.finditer(r"statistics for port (\d+).*?RX-packets:\s*(\d+)\s+RX-missed:\s*(\d+)"
                             r".*?RX-nombuf:\s*(\d+).*?TX-packets:\s*(\d+)\s+TX-errors:\s*(\d+)",
                             out, re.S):
            stats[int(m.group(1))] = {"rx": int(m.group(2)), "rx_missed": int(m.group(3)),
                                      "rx_nombuf": int(m.group(4)), "tx": int(m.group(5)),
                                      "tx_errors": int(m.group(6))}
        return stats

    def stop_fwd(self) -> dict:
        """`stop`; returns testpmd's own figures: cycles/packet (--record-core-cycles), totals."""
        out = self.cmd("stop", until=r"Done\.")
        res: dict = {}
        m = re.search(r"CPU cycles/packet=([\d.]+) \((?:busy|total) cycles=(\d+) / total "
                      r"\S+ packets=(\d+)\) at (\d+) MHz", out)
        if m:
            res = {"cycles_per_pkt": float(m.group(1)), "cycles": int(m.group(2)),
                   "packets": int(m.group(3)), "mhz": int(m.group(4))}
        m = re.search(r"Accumulated forward statistics.*?RX-packets:\s*(\d+)\s+RX-dropped:\s*(\d+)"
                      r".*?TX-packets:\s*(\d+)\s+TX-dropped:\s*(\d+)", out, re.S)
        if m:
            res.update(rx=int(m.group(1)), rx_dropped=int(m.group(2)), tx=int(m.group(3)),
                       tx_dropped=int(m.group(4)))
        return res

    def close(self) -> None:
        if self.p.poll() is None:
            try:
                self.p.stdin.write(b"quit\n")
                self.p.stdin.flush()
                self.p.wait(15)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.kill()
        self._reader.join(5)
        with self._cv:
            self._log.close()

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


class JsonProc:
    """A helper process (bench/_fwd_dut.py, bench/_gen_proc.py) answering one JSON line per
    request: {"ok": result} or {"error": message}."""

    def __init__(self, script: str, conf: dict, log: Path, timeout: float = 60,
                 prefix: tuple[str, ...] = ()):
        self.log_path = log
        self._log = open(log, "w")
        env = dict(os.environ, PYTHONPATH=str(REPO))
        self.p = subprocess.Popen([*prefix, PYTHON, str(HERE / script), json.dumps(conf)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=self._log, text=True, env=env, start_new_session=True)
        self.hello = self._read(timeout)

    def _read(self, timeout: float):
        r, _, _ = select.select([self.p.stdout], [], [], timeout)
        line = self.p.stdout.readline() if r else ""
        if not line:
            self.kill()
            raise BenchError(f"{self.log_path.name}: no answer; log:\n" + self.tail())
        reply = json.loads(line)
        if "error" in reply:
            raise BenchError(f"{self.log_path.name}: {reply['error']}")
        return reply["ok"]

    def call(self, method: str, *args, timeout: float = 60, **kwargs):
        self.p.stdin.write(json.dumps({"call": method, "args": list(args),
                                       "kwargs": kwargs}) + "\n")
        self.p.stdin.flush()
        return self._read(timeout)

    def tail(self, n: int = 3000) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-n:]

    def close(self) -> None:
        if self.p.poll() is None:
            try:
                self.p.stdin.write(json.dumps({"call": "quit"}) + "\n")
                self.p.stdin.flush()
                self.p.wait(20)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.kill()
        self._log.close()

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


def wait_for(pred, timeout: float = 20, what: str = "condition", interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise BenchError(f"timed out waiting for {what}")
        time.sleep(interval)


# ------------------------------------------------------------------ EAL argument sets

_PREFIXES: set[str] = set()  # EAL file prefixes handed out: their /var/run/dpdk dirs go at exit


def eal_prefix(prefix: str) -> str:
    """An EAL --file-prefix whose /var/run/dpdk/<prefix> directory is removed at exit."""
    _PREFIXES.add(prefix)
    return prefix


@atexit.register
def _remove_runtime_dirs() -> None:
    for prefix in _PREFIXES:
        shutil.rmtree(f"/var/run/dpdk/{prefix}", ignore_errors=True)


def dut_eal(huge: Path, prefix: str, *vdevs: str) -> list[str]:
    eal_prefix(prefix)
    args = ["--lcores", DUT_LCORES, "--main-lcore", "0", "--no-pci", "--in-memory",
            "--huge-dir", str(huge), "--file-prefix", prefix, "--log-level", "user1,notice"]
    for v in vdevs:
        args += ["--vdev", v]
    return args


def gen_eal(huge: Path, prefix: str, *vdevs: str) -> list[str]:
    eal_prefix(prefix)
    args = ["--lcores", GEN_LCORES, "--main-lcore", "0", "--no-pci", "--in-memory",
            "--huge-dir", str(huge), "--file-prefix", prefix, "--single-file-segments"]
    for v in vdevs:
        args += ["--vdev", v]
    return args


class FwdDut:
    """The vio4wd forwarder as DUT: one worker lcore on DUT_CPU, relays 0..n-1 on sockets
    `dir/virtio-forwarder<i>.sock` with the given VF devargs."""

    def __init__(self, huge: Path, sock_dir: Path, vfs: list[str], log: Path,
                 max_relays: int | None = None, prefix: tuple[str, ...] = ()):
        settings = dict(cpus=[DUT_CPU], master_lcore=0, socket_dir=str(sock_dir),
                        socket_owner="", socket_group="", pid_dir=str(sock_dir),
                        max_relays=max_relays or len(vfs))
        eal = ["fwd", *dut_eal(huge, f"vbf{uuid.uuid4().hex[:6]}")]
        self.proc = JsonProc("_fwd_dut.py", {"settings": settings, "eal": eal}, log,
                             prefix=prefix)
        for i, vf in enumerate(vfs):
            self.proc.call("add_vf", i, [vf])
        self.sockets = [str(sock_dir / f"virtio-forwarder{i}.sock") for i in range(len(vfs))]

    def counters(self, relays: int) -> dict:
        """Summed counters of relays 0..relays-1 per direction and the time they were read."""
        return self.proc.call("counters", relays)

    def busy_cycles(self) -> int:
        """Busy TSC cycles of the worker(s) so far (loop passes that moved packets)."""
        return sum(c[0] for c in self.proc.call("cycles").values())

    def close(self) -> None:
        self.proc.close()
