#!/usr/bin/env python3
"""Scaling: throughput with 1, 2, 4, ... relays and with 1..4 virtio queue pairs; the vio4wd
forwarder vs `dpdk-testpmd --forward-mode=io`, same method as bench/throughput.py.

    .venv/bin/python bench/scaling.py [--relays 1,2,4,8,16] [--queues 1,2,3,4] [--runs 5]
                                      [--seconds 2] [--size 64] [--dir vm2vf] [--json]

What a 2-core box allows, and why:
- One forwarding CPU per DUT.  CPU 1 is the DUT's, CPU 0 the generator's (busy pollers must not
  share a CPU, lab-facts), so every relay and queue of a DUT is served by ONE worker: this
  measures the per-relay / per-queue overhead of a single worker, not parallel scaling over
  workers (needs >= 3 CPUs: 2+ DUT workers and a generator).
- Relays: the forwarder needs one ethdev per relay (the VF side; vhost-user is not an ethdev),
  testpmd needs two (net_vhost + the VF), and Debian's DPDK has RTE_MAX_ETHPORTS = 32: testpmd
  stops at 16 relays, the forwarder at 32 (its limit), so the comparison goes up to 16.
- Relays case: relay i gets its own socket, its own net_null VF and its own net_virtio_user in
  the single generator (one lcore, txonly on every port: the offered load per relay falls as
  1/relays).
- Queues case: one relay whose guest (net_virtio_user, queues=q) sends on q queues; testpmd
  forwards q vhost queues to q null queues (one stream per queue), the forwarder serves the q
  guest TX queues round robin into its VF's single queue.  VF->VM multiqueue is not measured:
  net_null frames carry no flow (all hash to one queue).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit, hugepages, loadavg, machine  # noqa: E402
from throughput import compare, render  # noqa: E402


def render_result(res: dict) -> str:
    """The table of a scaling result (as printed, or from its saved JSON: bench/show.py)."""
    first = res["results"][0] if res["results"] else {"direction": "?", "size": "?"}
    return (render(res["results"], res, f"Scaling ({first['direction']}, {first['size']} B), one DUT "
                                         "worker CPU: relays x queues", ("relays", "queues")) +
            "\n2-core box: both DUTs serve every relay/queue on ONE worker (CPU 1; the generator "
            "has CPU 0);\ntestpmd needs 2 ethdevs per relay (RTE_MAX_ETHPORTS 32 -> 16 relays).")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--relays", default="1,2,4,8,16")
    ap.add_argument("--queues", default="1,2,3,4")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--dir", default="vm2vf", choices=("vm2vf", "vf2vm"))
    ap.add_argument("--json", action="store_true", help="print JSON instead of the table")
    ap.add_argument("--save", metavar="FILE", help="also write the JSON to FILE")
    a = ap.parse_args(argv)
    relays = [int(x) for x in a.relays.split(",") if x]
    queues = [int(x) for x in a.queues.split(",") if x]
    if max(relays, default=1) > 16:
        ap.error("testpmd needs 2 ethdevs per relay and RTE_MAX_ETHPORTS is 32: at most 16")
    if max(queues, default=1) > 32:
        ap.error("the forwarder supports at most 32 queue pairs")
    meta = {"machine": machine(), "runs": a.runs, "seconds": a.seconds}
    cases_r = [(a.dir, a.size, n, 1) for n in relays]
    cases_q = [(a.dir, a.size, 1, q) for q in queues if q > 1 or not cases_r]
    with hugepages(1024) as huge:
        results = compare(cases_r + cases_q, a.runs, a.seconds, huge)
    meta["load_end"] = loadavg()
    res = {"benchmark": "scaling", **meta, "results": results,
           "limits": {"dut_worker_cpus": 1, "testpmd_max_relays": 16,
                      "forwarder_max_relays": 32, "max_queue_pairs": 32}}
    emit(res, a.json, render_result(res), a.save)


if __name__ == "__main__":
    main()
