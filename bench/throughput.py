#!/usr/bin/env python3
"""Throughput: the vio4wd forwarder vs `dpdk-testpmd --forward-mode=io` on identical devices.

    .venv/bin/python bench/throughput.py [--runs 9] [--seconds 2] [--sizes 64,1518]
                                         [--dirs vm2vf,vf2vm] [--json]

Topology (both DUTs get exactly the same devices, one forwarding lcore on CPU 1):
  VM->VF: generator `dpdk-testpmd txonly` on net_virtio_user (lcore on CPU 0) -> vhost-user
          socket -> DUT -> net_null (no-rx=1: the null port only frees what it is sent)
  VF->VM: net_null (size=N: an endless source of N-byte frames) -> DUT -> vhost-user socket ->
          generator `dpdk-testpmd rxonly` on net_virtio_user
The other direction of the DUT idles (polls an empty queue) in both DUTs.  Every run starts fresh
processes (rates here are bimodal from one process start to the next); runs of both DUTs are
interleaved (A B, B A, ...).  A run: connect, start forwarding, 0.5 s warm-up, then packets the
DUT delivered to its output port over `--seconds` wall time (counters read before and after).

Reported per case: Mpps (median, p25-p75, min-max over runs), cycles/packet = TSC Hz x interval /
packets forwarded (the DUT's worker polls at 100 % of its CPU, so this is its whole cost per
packet, idle polls included), testpmd's own `--record-core-cycles` figure for reference, and
ratios vio4wd / testpmd (Mpps: >= 1 is better; cycles/packet: <= 1 is better).
"""
from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (TESTPMD_MBUFS, BenchError, FwdDut, Testpmd, dut_eal, eal_memory_error,  # noqa: E402,E501
                     emit, fmt,
                     gen_eal, hugepages, loadavg, machine, ratio, say, summary, table, tsc_hz,
                     wait_for, workdir)

DUTS = ("vio4wd", "testpmd")
WARMUP_S = 0.5


def mbufs(relays: int) -> int:
    """testpmd's pool: about the forwarder's 4095 per relay, plus room for the queues."""
    return TESTPMD_MBUFS + 4096 * (relays - 1)


def vf_devargs(direction: str, size: int, i: int) -> str:
    return f"net_null{i},no-rx=1" if direction == "vm2vf" else f"net_null{i},size={size}"


def one_run(dut: str, direction: str, size: int, seconds: float, huge: Path,
            relays: int = 1, queues: int = 1, testpmd_retry: bool = False) -> dict:
    """Start the DUT and the generator, measure, stop both.  Returns the run's figures."""
    with workdir("vb") as wd:
        dut_proc = gen = None
        tag = uuid.uuid4().hex[:6]
        try:
            vfs = [vf_devargs(direction, size, i) for i in range(relays)]
            if dut == "vio4wd":
                dut_proc = FwdDut(huge, wd, vfs, wd / "dut.log")
                socks = dut_proc.sockets
            else:
                socks = [str(wd / f"vhost{i}.sock") for i in range(relays)]
                vdevs = []
                for i in range(relays):        # ports 2i (vhost) and 2i+1 (VF) are a pair
                    vdevs += [f"net_vhost{i},iface={socks[i]},queues={queues}", vfs[i]]
                dut_proc = Testpmd(dut_eal(huge, f"vbd{tag}", *vdevs),
                                   ["--forward-mode=io", "--record-core-cycles", "--nb-cores=1",
                                    f"--rxq={queues}", f"--txq={queues}", "--burst=32",
                                    "--port-topology=paired",
                                    f"--total-num-mbufs={mbufs(relays)}"],
                                   wd / "dut.log")
                wait_for(lambda: all(Path(s).exists() for s in socks), 20, "vhost sockets")
            gen_vdevs = [f"net_virtio_user{i},path={s},queues={queues},queue_size=1024"
                         for i, s in enumerate(socks)]
            gen = Testpmd(gen_eal(huge, f"vbg{tag}", *gen_vdevs),
                          ["--forward-mode=" + ("txonly" if direction == "vm2vf" else "rxonly"),
                           f"--txpkts={size}", "--nb-cores=1", f"--rxq={queues}",
                           f"--txq={queues}", "--burst=32", "--port-topology=loop",
                           f"--total-num-mbufs={mbufs(relays)}"],
                          wd / "gen.log")
            if dut == "vio4wd":
                wait_for(lambda: dut_proc.counters(relays)["connected"] == relays, 20,
                         "guests connected")
                read = lambda: dut_proc.counters(relays)[direction]["tx_pkts"]  # noqa: E731
            else:
                if testpmd_retry:   # like the forwarder: retry sends into a full queue
                    dut_proc.cmd("set fwd io retry", until=r"forwarding mode")
                dut_proc.start()
                out_ports = range(1, 2 * relays, 2) if direction == "vm2vf" \
                    else range(0, 2 * relays, 2)

                def read():
                    st = dut_proc.port_stats()
                    return sum(st[p]["tx"] for p in out_ports)
            gen.start()
            first = read()
            wait_for(lambda: read() > first, 20, "traffic through the DUT")
            time.sleep(WARMUP_S)
            t0a = time.monotonic()
            c0 = read()
            b0 = dut_proc.busy_cycles() if dut == "vio4wd" else None
            t0 = (t0a + time.monotonic()) / 2
            time.sleep(seconds)
            t1a = time.monotonic()
            c1 = read()
            b1 = dut_proc.busy_cycles() if dut == "vio4wd" else None
            t1 = (t1a + time.monotonic()) / 2
            dt, pkts = t1 - t0, c1 - c0
            res = {"mpps": pkts / dt / 1e6, "cycles_per_pkt": tsc_hz() * dt / pkts if pkts else None,
                   "interval_s": dt, "packets": pkts, "load": loadavg()}
            if b0 is not None and pkts:
                res["busy_cycles_per_pkt"] = (b1 - b0) / pkts
            gen_stats = gen.stop_fwd()
            res["gen"] = gen_stats
            if dut == "vio4wd":
                c = dut_proc.counters(relays)
                res["dut"] = {d: c[d] for d in ("vf2vm", "vm2vf")}
                res["per_relay_tx"] = c["per_relay_tx"]
                dd = c[direction]
                res["drop_pct"] = 100 * dd["drop_full_pkts"] / dd["rx_pkts"] if dd["rx_pkts"] \
                    else None
            else:
                own = res["testpmd_own"] = dut_proc.stop_fwd()
                res["busy_cycles_per_pkt"] = own.get("cycles_per_pkt")
                res["drop_pct"] = 100 * own["tx_dropped"] / own["rx"] if own.get("rx") else None
            return res
        finally:
            for p in (gen, dut_proc):
                if p is not None:
                    p.close()


def compare(cases: list[tuple], runs: int, seconds: float, huge: Path, progress=say,
            testpmd_retry: bool = False) -> dict:
    """Interleaved runs of both DUTs for every case; case = (direction, size, relays, queues)."""
    raw: dict = {c: {d: [] for d in DUTS} for c in cases}
    for r in range(runs):
        for c in cases:
            order = DUTS if r % 2 == 0 else DUTS[::-1]
            for dut in order:
                for attempt in range(3):
                    try:
                        res = one_run(dut, c[0], c[1], seconds, huge, relays=c[2],
                                      queues=c[3], testpmd_retry=testpmd_retry)
                        break
                    except BenchError as exc:
                        res = {"error": str(exc)[-2000:]}
                        if not eal_memory_error(str(exc)):
                            progress(f"run {r + 1} {dut} {c}: FAILED: {str(exc)[:300]}")
                            break
                        # the hugepage pool is shared with everybody's tests: wait, retry
                        progress(f"run {r + 1} {dut} {c}: no hugepages free, retrying")
                        time.sleep(5)
                raw[c][dut].append(res)
                if "mpps" in res:
                    progress(f"run {r + 1}/{runs} {c[0]} {c[1]}B relays={c[2]} q={c[3]} {dut}: "
                             f"{res['mpps']:.2f} Mpps, {fmt(res['cycles_per_pkt'], '.0f')} "
                             f"cyc/pkt (load {res['load']:.2f})")
    return [entry(c, raw[c]) for c in cases]


def entry(c: tuple, runs: dict) -> dict:
    """One case's summary (median, spread, ratios) from its runs per DUT ({dut: [run, ...]})."""
    e = {"direction": c[0], "size": c[1], "relays": c[2], "queues": c[3]}
    for dut in DUTS:
        ok = [x for x in runs[dut] if "mpps" in x]
        e[dut] = {"mpps": summary([x["mpps"] for x in ok]),
                  "drop_pct": summary([x.get("drop_pct") for x in ok]),
                  "cycles_per_pkt": summary([x["cycles_per_pkt"] for x in ok]),
                  "busy_cycles_per_pkt": summary([x.get("busy_cycles_per_pkt") for x in ok]),
                  "failed_runs": len(runs[dut]) - len(ok), "runs": runs[dut]}
        if dut == "testpmd":
            e[dut]["record_core_cycles"] = summary(
                [x["testpmd_own"].get("cycles_per_pkt") for x in ok if x.get("testpmd_own")])
    e["ratio_mpps"] = ratio(e["vio4wd"]["mpps"]["median"], e["testpmd"]["mpps"]["median"])
    e["ratio_cycles"] = ratio(e["vio4wd"]["cycles_per_pkt"]["median"],
                              e["testpmd"]["cycles_per_pkt"]["median"])
    e["ratio_busy_cycles"] = ratio(e["vio4wd"]["busy_cycles_per_pkt"]["median"],
                                   e["testpmd"]["busy_cycles_per_pkt"]["median"])
    return e


def pool(results: list[dict], names: list[str] | None = None) -> dict:
    """Pool the runs of several saved throughput/scaling results case by case (bench/show.py
    --pool): medians over every session's runs, the sessions listed.  Raises ValueError, naming
    the files (`names`), when they were not measured the same way."""
    setups: dict[str, list[str]] = {}
    for i, r in enumerate(results):
        key = (f"{r['benchmark']}, testpmd retry {'on' if r.get('testpmd_retry') else 'off'}, "
               f"{r['seconds']} s runs")
        setups.setdefault(key, []).append(names[i] if names else f"#{i + 1}")
    if len(setups) > 1:
        raise ValueError("the results were measured differently, pool one set: " +
                         "; ".join(f"{k}: {' '.join(v)}" for k, v in setups.items()))
    runs: dict[tuple, dict] = {}
    for res in results:
        for e in res["results"]:
            c = (e["direction"], e["size"], e.get("relays", 1), e.get("queues", 1))
            for dut in DUTS:
                runs.setdefault(c, {d: [] for d in DUTS})[dut] += e[dut]["runs"]
    first = results[0]
    m = dict(first["machine"])
    m["date"] = ", ".join(r["machine"]["date"] for r in results)
    m["load_start"] = min(r["machine"]["load_start"] for r in results)
    return {**first, "machine": m, "load_end": max(r["load_end"] for r in results),
            "runs": "+".join(str(r["runs"]) for r in results),
            "results": [entry(c, runs[c]) for c in runs], "pooled": len(results)}


def render(results: list[dict], meta: dict, title: str, key_cols=("direction", "size")) -> str:
    rows = []
    for e in results:
        for dut in DUTS:
            m, c = e[dut]["mpps"], e[dut]["cycles_per_pkt"]
            busy = e[dut].get("busy_cycles_per_pkt", {}).get("median")
            rows.append([*(str(e[k]) for k in key_cols), dut, f"{m['n']}",
                         fmt(m["median"]), f"{fmt(m['p25'])}-{fmt(m['p75'])}",
                         f"{fmt(m['min'])}-{fmt(m['max'])}", fmt(c["median"], ".0f"),
                         f"{fmt(c['min'], '.0f')}-{fmt(c['max'], '.0f')}", fmt(busy, ".0f"),
                         fmt(e[dut]["drop_pct"]["median"], ".1f")])
        rows.append([*("" for _ in key_cols), "vio4wd/testpmd", "", fmt(e["ratio_mpps"], ".3f"),
                     "", "", fmt(e["ratio_cycles"], ".3f"), "", fmt(e.get("ratio_busy_cycles"), ".3f"), ""])
    head = [*key_cols, "DUT", "runs", "Mpps med", "p25-p75", "min-max", "cyc/pkt med",
            "cyc min-max", "busy c/p", "drop %"]
    txt = [title, table(head, rows, "l" * (len(key_cols) + 1) + "r" * 8), "",
           f"machine: {meta['machine']['cpu']}, {meta['machine']['cpus']} CPUs, "
           f"{meta['machine']['mem_gib']} GiB, kernel {meta['machine']['kernel']}, DPDK "
           f"{meta['machine']['dpdk']}, TSC {meta['machine']['tsc_hz'] / 1e6:.0f} MHz",
           f"date {meta['machine']['date']}; load {meta['machine']['load_start']:.2f} at start,"
           f" {meta['load_end']:.2f} at end; {meta['runs']} interleaved runs x "
           f"{meta['seconds']} s per DUT and case",
           "cyc/pkt = TSC Hz x interval / packets forwarded (DUT worker alone at 100 % on CPU 1);"
           " 'busy c/p' = busy cycles per packet: loop passes that moved packets only (vio4wd: its"
           " workers' busy counter over the interval; testpmd: its own --record-core-cycles figure"
           " over the whole forwarding period);",
           "drop % = frames the DUT took in but could not send (output queue full), whole run; "
           f"testpmd io retry: {'on' if meta.get('testpmd_retry') else 'off'}.",
           "ratio Mpps >= 1 and ratio cyc/pkt <= 1 mean vio4wd is at least as good as testpmd."]
    return "\n".join(txt)


TITLE = "Throughput, vio4wd forwarder vs testpmd io (1 relay, 1 queue)"


def render_result(res: dict) -> str:
    """The table of a throughput result (as printed, or from its saved JSON: bench/show.py)."""
    title = TITLE + (f", runs of {res['pooled']} sessions pooled" if res.get("pooled") else "")
    return render(res["results"], res, title)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=9, help="interleaved runs per DUT and case")
    ap.add_argument("--seconds", type=float, default=2.0, help="measured interval per run")
    ap.add_argument("--sizes", default="64,1518")
    ap.add_argument("--dirs", default="vm2vf,vf2vm")
    ap.add_argument("--testpmd-retry", action="store_true",
                    help="testpmd DUT: `set fwd io retry` (the forwarder retries a full queue "
                         "8 times; testpmd io drops at once by default)")
    ap.add_argument("--json", action="store_true", help="print JSON instead of the table")
    ap.add_argument("--save", metavar="FILE", help="also write the JSON to FILE")
    a = ap.parse_args(argv)
    meta = {"machine": machine(), "runs": a.runs, "seconds": a.seconds,
            "testpmd_retry": a.testpmd_retry}
    cases = [(d, int(s), 1, 1) for d in a.dirs.split(",") for s in a.sizes.split(",")]
    with hugepages(1024) as huge:
        results = compare(cases, a.runs, a.seconds, huge, testpmd_retry=a.testpmd_retry)
    meta["load_end"] = loadavg()
    res = {"benchmark": "throughput", **meta, "results": results}
    emit(res, a.json, render_result(res), a.save)


if __name__ == "__main__":
    main()
