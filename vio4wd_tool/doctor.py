"""`vio4wd-tool doctor`: run every registered check against a host and report.

JSON schema (stable, `schema` = "vio4wd.doctor/1"; see docs/doctor-json.md):
  {"schema", "root", "intent": {...}, "summary": {"PASS": n, "WARN": n, "FAIL": n, "SKIP": n},
   "ok": bool, "checks": [{"id", "group", "title", "subject", "status", "finding", "fix", "requirement"}]}
"""
from __future__ import annotations

import json
import os
import sys
import time

from . import hugepages, iommu, irq, kmod, pci, placement, sriov, virt, cpu  # noqa: F401  (register checks)
from .checks import REGISTRY, Result, Status
from .host import Host
from .intent import Intent

SCHEMA = "vio4wd.doctor/1"
GROUP_ORDER = ("CPU", "Memory", "IOMMU", "Kernel", "SR-IOV", "NUMA", "QEMU", "Guests")
COLORS = {Status.PASS: "32", Status.WARN: "33", Status.FAIL: "31", Status.SKIP: "2"}


def run(host: Host, intent: Intent, only: list[str] | None = None) -> list[Result]:
    intent.resolve(host)
    results = []
    for c in REGISTRY.values():
        if only and not any(c.id == o or c.id.startswith(o.rstrip(".") + ".") for o in only):
            continue
        try:
            results += c.run(host, intent)
        except Exception as e:  # a broken probe must not hide every other finding
            results.append(Result(c.id, Status.FAIL, f"check crashed: {type(e).__name__}: {e}",
                                  "report this as a vio4wd bug", c.requirement, title=c.title, group=c.group))
    order = {g: i for i, g in enumerate(GROUP_ORDER)}
    return sorted(results, key=lambda r: order.get(r.group, len(order)))  # stable: registry order within


def summary(results: list[Result]) -> dict[str, int]:
    return {s.value: sum(1 for r in results if r.status is s) for s in Status}


def to_json(host: Host, intent: Intent, results: list[Result], elapsed: float) -> dict:
    s = summary(results)
    return {"schema": SCHEMA, "root": str(host.root.prefix), "intent": intent.to_json(), "summary": s,
            "ok": s["FAIL"] == 0, "elapsed_s": round(elapsed, 3), "checks": [r.to_json() for r in results]}


def render(results: list[Result], quiet: bool = False, color: bool = False) -> str:
    shown = [r for r in results if not quiet or r.status in (Status.WARN, Status.FAIL)]
    gw = max((len(r.group) for r in shown), default=0)
    labels = [f"{r.title}" + (f" ({r.subject})" if r.subject else "") for r in shown]
    tw = min(max((len(x) for x in labels), default=0), 78)
    lines = []
    for r, label in zip(shown, labels):
        st = r.status.value
        if color:
            st = f"\033[{COLORS[r.status]}m{st}\033[0m"
        lines.append(f"{r.group:>{gw}}: {label:<{tw}} : {st}" + ("" if r.status is Status.PASS else f" ({r.finding})"))
        if r.status in (Status.WARN, Status.FAIL) and r.fix:
            lines.append(f"{'':>{gw}}  {'fix:':<4} {r.fix}")
    s = summary(results)
    lines.append(f"{s['PASS']} passed, {s['WARN']} warnings, {s['FAIL']} failed, {s['SKIP']} skipped")
    return "\n".join(lines)


def main(args) -> int:
    from .cli import intent_from_args

    t0 = time.monotonic()
    host = Host(args.root)
    intent = intent_from_args(host.root, args)
    results = run(host, intent, args.only)
    elapsed = time.monotonic() - t0
    if args.json:
        json.dump(to_json(host, intent, results, elapsed), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        color = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
        print(render(results, quiet=args.quiet, color=color))
    return 1 if any(r.status is Status.FAIL for r in results) else 0
