#!/usr/bin/env python3
"""Zero-loss rate (RFC 2544 style): the highest offered rate a DUT forwards with 0 drops over a
trial, found by binary search; the vio4wd forwarder vs `dpdk-testpmd --forward-mode=io`.

    .venv/bin/python bench/zero_loss.py [--repeats 3] [--trial 1] [--precision 0.01]
                                        [--sizes 64,1518] [--dirs vm2vf,vf2vm] [--json]

testpmd 22.11's txonly has no rate limit (no --tx-pps; `set port .. rate` needs hardware), so the
generator is bench/_gen.c (cffi, built on first use into ~/.cache/vio4wd-bench): one thread on
CPU 0 that paces bursts by the TSC, transmits on one port and receives on the other (a loop
through the DUT, so loss = offered - received, frames refused by a full ring included).
Topology, identical for both DUTs (forwarding lcore on CPU 1):
  generator net_virtio_user <-> vhost-user socket <-> DUT <-> net_memif (DUT: server) <->
  generator net_memif (client)
  VM->VF: generator sends on virtio_user, receives on memif; VF->VM: the reverse.
Per repeat and DUT (interleaved, fresh processes each): one unlimited trial gives the capacity C
(frames received per second at overload), then bisection in [0, 1.05 C] until the bracket is
narrower than `--precision` x C.  Reported: the zero-loss rate (Mpps, median over repeats) and
the ratio vio4wd / testpmd.  Trials are short (default 1 s; RFC 2544 asks 60 s).
"""
from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (GEN_CPU, eal_prefix, TESTPMD_MBUFS, BenchError, FwdDut, JsonProc, Testpmd,  # noqa: E402
                     dut_eal, eal_memory_error, emit, fmt, hugepages, loadavg, machine, ratio, say, summary,
                     table, wait_for, workdir)

DUTS = ("vio4wd", "testpmd")
PORTS = {"vm2vf": (0, 1), "vf2vm": (1, 0)}      # generator (tx, rx): 0 virtio_user, 1 memif
DRAIN_S = 0.2


def search(gen: JsonProc, direction: str, size: int, trial: float, precision: float,
           max_steps: int, loss_allowed: int) -> dict:
    tx, rx = PORTS[direction]

    def run(pps):
        r = gen.call("trial", tx, rx, size, pps, trial, DRAIN_S, timeout=trial + 30)
        r["loss"] = r["offered"] - r["received"]
        r["pps"] = pps
        return r

    cap = run(0)
    capacity = cap["received"] / cap["seconds"]
    if capacity <= 0:
        raise BenchError(f"{direction} {size}B: nothing came through the DUT")
    lo, hi = 0.0, 1.05 * capacity
    steps, best = [], None
    while len(steps) < max_steps and hi - lo > precision * capacity:
        mid = (lo + hi) / 2
        r = run(mid)
        r["offered_pps"] = r["offered"] / r["seconds"]
        # a generator that fell behind (preempted) did not offer the rate: not a pass
        ok = r["loss"] <= loss_allowed and r["offered"] >= 0.95 * mid * trial
        steps.append({"pps": mid, "loss": r["loss"], "offered_pps": r["offered_pps"],
                      "not_accepted": r["not_accepted"], "pass": ok})
        if ok:
            lo, best = mid, r
        else:
            hi = mid
    return {"zero_loss_mpps": lo / 1e6, "capacity_mpps": capacity / 1e6,
            "capacity_trial": cap, "steps": steps, "best": best}


def one_repeat(dut: str, cases: list[tuple[str, int]], a, huge: Path) -> dict:
    with workdir("vz") as wd:
        tag = uuid.uuid4().hex[:6]
        memif_dut = f"net_memif0,role=server,socket={wd}/memif.sock,id=0"
        d = g = None
        try:
            if dut == "vio4wd":
                d = FwdDut(huge, wd, [memif_dut], wd / "dut.log")
                sock = d.sockets[0]
            else:
                sock = str(wd / "vhost0.sock")
                d = Testpmd(dut_eal(huge, f"vzd{tag}", f"net_vhost0,iface={sock},queues=1",
                                    memif_dut),
                            ["--forward-mode=io", "--nb-cores=1", "--burst=32",
                             "--record-core-cycles", f"--total-num-mbufs={TESTPMD_MBUFS}"],
                            wd / "dut.log")
                wait_for(lambda: Path(sock).exists(), 20, "vhost socket")
                if a.testpmd_retry:
                    d.cmd("set fwd io retry", until=r"forwarding mode")
                d.start()
            eal = ["gen", "--lcores", f"0@{GEN_CPU}", "--no-pci", "--in-memory", "--huge-dir",
                   str(huge), "--file-prefix", eal_prefix(f"vzg{tag}"), "--single-file-segments",
                   "--vdev", f"net_virtio_user0,path={sock},queue_size=1024",
                   "--vdev", f"net_memif1,role=client,socket={wd}/memif.sock,id=0"]
            g = JsonProc("_gen_proc.py", {"eal": eal}, wd / "gen.log")
            wait_for(lambda: all(g.call("links")), 20, "generator links up (memif, virtio)")
            if dut == "vio4wd":
                wait_for(lambda: d.counters(1)["connected"] == 1, 20, "guest connected")
            out = {}
            for direction, size in cases:
                g.call("trial", *PORTS[direction], size, 100000, 0.2, DRAIN_S)   # warm-up
                out[f"{direction}/{size}"] = search(g, direction, size, a.trial, a.precision,
                                                    a.max_steps, a.loss)
                out[f"{direction}/{size}"]["load"] = loadavg()
            return out
        finally:
            for p in (g, d):
                if p is not None:
                    p.close()


def render_result(res: dict) -> str:
    """The table of a zero_loss result (as printed, or from its saved JSON: bench/show.py)."""
    rows = []
    for e in res["results"]:
        for dut in DUTS:
            z, c = e[dut]["zero_loss_mpps"], e[dut]["capacity_mpps"]
            rows.append([e["direction"], str(e["size"]), dut, str(z["n"]), fmt(z["median"], ".3f"),
                         f"{fmt(z['min'], '.3f')}-{fmt(z['max'], '.3f')}",
                         fmt(c["median"], ".2f")])
        rows.append(["", "", "vio4wd/testpmd", "", fmt(e["ratio"], ".3f"), "", ""])
    m = res["machine"]
    return "\n".join([
        f"Zero-loss rate (binary search, {res['trial_s']} s trials, loss <= {res['loss_allowed']}), "
        "vio4wd vs testpmd io; vhost-user <-> memif",
        table(["direction", "size", "DUT", "searches", "0-loss Mpps", "min-max", "capacity Mpps"],
              rows, "lllrrrr"), "",
        f"machine: {m['cpu']}, {m['cpus']} CPUs, {m['mem_gib']} GiB, kernel {m['kernel']}, "
        f"DPDK {m['dpdk']}; date {m['date']}; load {m['load_start']:.2f} at start, "
        f"{res['load_end']:.2f} at end",
        "capacity = frames/s received at an unlimited offered rate (same processes, just "
        "before the search)."])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="interleaved searches per DUT")
    ap.add_argument("--trial", type=float, default=1.0, help="seconds per trial")
    ap.add_argument("--precision", type=float, default=0.01,
                    help="stop when the bracket is narrower than this fraction of capacity")
    ap.add_argument("--max-steps", type=int, default=12)
    ap.add_argument("--loss", type=int, default=0, help="frames a trial may lose and pass")
    ap.add_argument("--sizes", default="64,1518")
    ap.add_argument("--dirs", default="vm2vf,vf2vm")
    ap.add_argument("--testpmd-retry", action="store_true",
                    help="testpmd DUT: `set fwd io retry` (the forwarder retries a full queue "
                         "8 times; testpmd io drops at once by default)")
    ap.add_argument("--json", action="store_true", help="print JSON instead of the table")
    ap.add_argument("--save", metavar="FILE", help="also write the JSON to FILE")
    a = ap.parse_args(argv)
    cases = [(d, int(s)) for d in a.dirs.split(",") for s in a.sizes.split(",")]
    meta = {"machine": machine(), "repeats": a.repeats, "trial_s": a.trial,
            "precision": a.precision, "loss_allowed": a.loss,
            "testpmd_retry": a.testpmd_retry}
    raw = {d: [] for d in DUTS}
    with hugepages(1024) as huge:
        for r in range(a.repeats):
            for dut in (DUTS if r % 2 == 0 else DUTS[::-1]):
                t0 = time.monotonic()
                for attempt in range(3):
                    try:
                        res = one_repeat(dut, cases, a, huge)
                        break
                    except BenchError as exc:
                        res = {"error": str(exc)[-2000:]}
                        if not eal_memory_error(str(exc)):
                            say(f"repeat {r + 1} {dut}: FAILED: {str(exc)[:300]}")
                            break
                        say(f"repeat {r + 1} {dut}: no hugepages free, retrying")
                        time.sleep(5)
                raw[dut].append(res)
                say(f"repeat {r + 1}/{a.repeats} {dut} ({time.monotonic() - t0:.0f} s): " +
                    ", ".join(f"{k} {v['zero_loss_mpps']:.3f} Mpps (cap {v['capacity_mpps']:.2f})"
                              for k, v in res.items() if isinstance(v, dict)))
    meta["load_end"] = loadavg()
    results = []
    for direction, size in cases:
        key = f"{direction}/{size}"
        e = {"direction": direction, "size": size}
        for dut in DUTS:
            ok = [x[key] for x in raw[dut] if key in x]
            e[dut] = {"zero_loss_mpps": summary([x["zero_loss_mpps"] for x in ok]),
                      "capacity_mpps": summary([x["capacity_mpps"] for x in ok]),
                      "searches": ok}
        e["ratio"] = ratio(e["vio4wd"]["zero_loss_mpps"]["median"],
                           e["testpmd"]["zero_loss_mpps"]["median"])
        results.append(e)
    res = {"benchmark": "zero_loss", **meta, "results": results}
    emit(res, a.json, render_result(res), a.save)


if __name__ == "__main__":
    main()
