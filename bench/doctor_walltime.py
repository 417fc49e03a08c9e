#!/usr/bin/env python3
"""Wall time of `vio4wd-tool doctor` on this machine: the CLI end to end (process start, imports,
probes, checks, JSON) and the in-process probe+check part, median and spread over N runs.

    .venv/bin/python bench/doctor_walltime.py [-n 20] [--json]
Goal (issue 2): under 1 s end to end.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

EXE = str(Path(sys.executable).parent / "vio4wd-tool")


def measure(fn, n):
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    ts.sort()
    return {"median_s": statistics.median(ts), "min_s": ts[0], "max_s": ts[-1],
            "p90_s": ts[min(len(ts) - 1, int(len(ts) * 0.9))], "runs": n}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=20)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    from vio4wd_tool.doctor import run
    from vio4wd_tool.host import Host
    from vio4wd_tool.intent import Intent

    cli = measure(lambda: subprocess.run([EXE, "doctor", "--json"], capture_output=True), a.n)
    inproc = measure(lambda: run(Host("/"), Intent()), a.n)
    res = {"benchmark": "doctor_walltime", "machine": f"{Path('/proc/sys/kernel/hostname').read_text().strip()}, "
                      f"{len(Host('/').cpu.online)} CPUs", "cli": cli, "in_process": inproc,
           "goal_s": 1.0, "meets_goal": cli["median_s"] < 1.0}
    print(json.dumps(res, indent=2) if a.json else render_result(res))


def render_result(res: dict) -> str:
    """The table of a doctor_walltime result (as printed, or from its saved JSON: bench/show.py)."""
    lines = [f"{'doctor wall time':<24}{'median':>10}{'min':>10}{'p90':>10}{'max':>10}"]
    for k in ("cli", "in_process"):
        r = res[k]
        lines.append(f"{k:<24}" + "".join(f"{r[x] * 1000:>8.1f}ms" for x in ("median_s", "min_s", "p90_s", "max_s")))
    lines.append(f"goal < 1 s end to end: {'met' if res['meets_goal'] else 'NOT met'} "
                 f"({res['cli']['runs']} runs each; {res['machine']})")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
