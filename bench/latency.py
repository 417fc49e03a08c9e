#!/usr/bin/env python3
"""Latency: ping RTT through the vio4wd forwarder vs QEMU's userspace tap path, same guest.

    .venv/bin/python bench/latency.py [--rounds 5] [--count 20] [--interval 0.05] [--json]

Two copies of the same guest (vio4wd_tool/lab/guest.py: QEMU 10 TCG, the host's Debian kernel, a
busybox initramfs; both QEMUs pinned to CPU 0, 1 vCPU, 256 MiB) run side by side:
  forwarder: netns A: tap `vbt0` (a net_tap VF stand-in of the forwarder, which runs in netns A
             with its worker on CPU 1) <-> relay 0 <-> vhost-user <-> guest A eth0
  qemu-tap:  netns B: tap `vbq0` <-> QEMU's userspace virtio-net backend (-netdev tap, no
             vhost-net: this kernel has no /dev/vhost-net) <-> guest B eth0
`ping` runs in each namespace against its guest, in interleaved batches (A, B, B, A, ...) of
`--count` pings; reported: min / avg / max / mdev like ping's summary, plus median and p90 over
every reply, and the ratio forwarder / qemu-tap (<= 1: the forwarder path is not slower).
Under TCG the guest's own reply time dominates both paths; the difference is the path.
"""
from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import (BenchError, FwdDut, emit, fmt, hugepages, loadavg, machine,  # noqa: E402
                     ratio, say, table, wait_for, workdir)

PATHS = ("forwarder", "qemu-tap")
NET = {"forwarder": ("10.213.1.1", "10.213.1.2", "vbt0"),
       "qemu-tap": ("10.213.2.1", "10.213.2.2", "vbq0")}
GUEST_CPU = "0"


def guest_classes():
    from vio4wd_tool.lab.guest import VhostGuest

    class PinnedGuest(VhostGuest):
        """The lab guest, QEMU pinned to GUEST_CPU (the forwarder's worker has the other)."""

        def qemu_command(self, vmlinuz, initrd):
            return ["taskset", "-c", GUEST_CPU, *super().qemu_command(vmlinuz, initrd)]

    class TapGuest(VhostGuest):
        """The same guest with eth0 on QEMU's userspace tap backend, QEMU run in `netns`."""

        def __init__(self, netns: str, tap: str, **kw):
            super().__init__(socket_path="/nonexistent", **kw)
            self.netns, self.tap = netns, tap

        def qemu_command(self, vmlinuz, initrd):
            cmd = super().qemu_command(vmlinuz, initrd)
            out, i = [], 0
            while i < len(cmd):
                if cmd[i] == "-chardev" and cmd[i + 1].startswith("socket,id=vu0"):
                    i += 2
                    continue
                if cmd[i] == "-netdev":
                    out += ["-netdev", f"tap,id=n0,ifname={self.tap},script=no,downscript=no"]
                    i += 2
                    continue
                out.append(cmd[i])
                i += 1
            return ["ip", "netns", "exec", self.netns, "taskset", "-c", GUEST_CPU, *out]

    return PinnedGuest, TapGuest


def sh(*cmd: str) -> str:
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise BenchError(f"{' '.join(cmd)}: {p.stderr.strip()}")
    return p.stdout


def ping(ns: str, ip: str, count: int, interval: float) -> tuple[list[float], int]:
    p = subprocess.run(["ip", "netns", "exec", ns, "ping", "-n", "-c", str(count), "-i",
                        str(interval), "-W", "2", ip], capture_output=True, text=True)
    rtts = [float(x) for x in re.findall(r"time=([\d.]+) ms", p.stdout)]
    return rtts, count - len(rtts)


def rtt_summary(v: list[float], lost: int) -> dict:
    if not v:
        return {"n": 0, "lost": lost}
    mean = statistics.fmean(v)
    mdev = statistics.fmean([(x - mean) ** 2 for x in v]) ** 0.5
    q = statistics.quantiles(v, n=10) if len(v) > 1 else [v[0]] * 9
    return {"n": len(v), "lost": lost, "min": min(v), "avg": mean, "max": max(v), "mdev": mdev,
            "median": statistics.median(v), "p90": q[8]}


def render_result(out: dict) -> str:
    """The table of a latency result (as printed, or from its saved JSON: bench/show.py)."""
    res, boot, m = out["results"], out.get("boot_s", {}), out["machine"]
    rows = [[p, str(res[p]["n"]), str(res[p]["lost"]),
             *(fmt(res[p].get(k), ".3f") for k in ("min", "avg", "max", "mdev", "median", "p90")),
             fmt(boot.get(p), ".1f")] for p in PATHS]
    rows.append(["forwarder/qemu-tap", "", "", "", fmt(res["ratio_avg"], ".3f"), "", "",
                 fmt(res["ratio_median"], ".3f"), "", ""])
    return "\n".join([
        "Ping RTT (ms) from a netns to the same TCG guest: through the vio4wd forwarder "
        "(net_tap VF stand-in) vs QEMU userspace tap",
        table(["path", "replies", "lost", "min", "avg", "max", "mdev", "median", "p90",
               "boot s"], rows),
        "",
        f"machine: {m['cpu']}, {m['cpus']} CPUs, {m['mem_gib']} GiB, kernel {m['kernel']}, "
        f"DPDK {m['dpdk']}; date {m['date']}; load {m['load_start']:.2f} at start, "
        f"{out['load_end']:.2f} at end; {out['rounds']} interleaved rounds x {out['count']} pings "
        f"every {out['interval_s']} s per path"])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--count", type=int, default=20, help="pings per batch")
    ap.add_argument("--interval", type=float, default=0.05)
    ap.add_argument("--json", action="store_true", help="print JSON instead of the table")
    ap.add_argument("--save", metavar="FILE", help="also write the JSON to FILE")
    a = ap.parse_args(argv)
    PinnedGuest, TapGuest = guest_classes()
    meta = {"machine": machine(), "rounds": a.rounds, "count": a.count,
            "interval_s": a.interval}
    tag = uuid.uuid4().hex[:6]
    ns = {"forwarder": f"vbl-fwd-{tag}", "qemu-tap": f"vbl-tap-{tag}"}
    rtts = {p: [] for p in PATHS}
    lost = {p: 0 for p in PATHS}
    boot = {}
    fwd = None
    guests = []
    with hugepages(256) as huge, workdir("vl") as wd:
        try:
            for n in ns.values():
                sh("ip", "netns", "add", n)
            for n in ns.values():
                sh("ip", "netns", "exec", n, "ip", "link", "set", "lo", "up")
            host, gip, tap = NET["forwarder"]
            fwd = FwdDut(huge, wd, [f"net_tap0,iface={tap}"], wd / "fwd.log",
                         prefix=("ip", "netns", "exec", ns["forwarder"]))
            sh("ip", "netns", "exec", ns["forwarder"], "ip", "addr", "add", f"{host}/24", "dev",
               tap)
            sh("ip", "netns", "exec", ns["forwarder"], "ip", "link", "set", tap, "up")
            ga = PinnedGuest(fwd.sockets[0], mac="52:54:00:12:34:01", ip_cidr=f"{gip}/24",
                             name="vio4wd-bench-fwd")
            thost, tgip, ttap = NET["qemu-tap"]
            gb = TapGuest(ns["qemu-tap"], ttap, mac="52:54:00:12:34:02",
                          ip_cidr=f"{tgip}/24", name="vio4wd-bench-tap")
            guests = [ga, gb]
            say("booting two guests (TCG)")
            ga.start()
            gb.start()
            wait_for(lambda: subprocess.run(["ip", "netns", "exec", ns["qemu-tap"], "ip", "link",
                                             "show", ttap], capture_output=True).returncode == 0,
                     30, f"QEMU's tap {ttap}")
            sh("ip", "netns", "exec", ns["qemu-tap"], "ip", "addr", "add", f"{thost}/24", "dev",
               ttap)
            sh("ip", "netns", "exec", ns["qemu-tap"], "ip", "link", "set", ttap, "up")
            for g, p in ((ga, "forwarder"), (gb, "qemu-tap")):
                g.wait_ready()
                boot[p] = g.boot_seconds
            say(f"guests up after {boot['forwarder']:.1f} s / {boot['qemu-tap']:.1f} s")
            for p in PATHS:     # ARP and warm-up
                ping(ns[p], NET[p][1], 3, 0.2)
            for r in range(a.rounds):
                for p in (PATHS if r % 2 == 0 else PATHS[::-1]):
                    v, lo = ping(ns[p], NET[p][1], a.count, a.interval)
                    rtts[p] += v
                    lost[p] += lo
                say(f"round {r + 1}/{a.rounds}: " + ", ".join(
                    f"{p} median {fmt(statistics.median(rtts[p]) if rtts[p] else None, '.3f')} ms"
                    for p in PATHS))
            st = fwd.proc.call("status", 0)
            meta["forwarder_counters"] = {"vf2vm": st["vf2vm"], "vm2vf": st["vm2vf"]}
        finally:
            for g in guests:
                g.stop()
            if fwd is not None:
                fwd.close()
            for n in ns.values():
                subprocess.run(["ip", "netns", "del", n], capture_output=True)
    meta["load_end"] = loadavg()
    res = {p: rtt_summary(rtts[p], lost[p]) for p in PATHS}
    res["ratio_median"] = ratio(res["forwarder"].get("median"), res["qemu-tap"].get("median"))
    res["ratio_avg"] = ratio(res["forwarder"].get("avg"), res["qemu-tap"].get("avg"))
    out = {"benchmark": "latency", **meta, "boot_s": boot, "results": res, "rtts_ms": rtts}
    emit(out, a.json, render_result(out), a.save)


if __name__ == "__main__":
    main()
