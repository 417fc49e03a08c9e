#!/usr/bin/env python3
"""Playbook second-run time: `playbooks/site.yml` against a lab VM that is already converged
(nothing left to change), wall time and Ansible's recap per run; a run that changes anything is
flagged (the rollout must be idempotent). `--check` times a check-mode run instead.

    vio4wd-tool lab vm --keep            # (or lab up + site.yml) a converged lab VM named "lab"
    .venv/bin/python bench/playbook_rerun.py [--name lab] [--runs 3] [--check] [--json]
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, loadavg, machine, table  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def one_run(inventory: Path, check: bool) -> dict:
    cmd = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(REPO / "inventory" / "lab"),
           "-i", str(inventory), str(REPO / "playbooks" / "site.yml")] + (["--check"] if check else [])
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    t0 = time.monotonic()
    p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    took = time.monotonic() - t0
    recap = {}
    m = re.search(r"PLAY RECAP \*+\n(.*?)\n\n", p.stdout + "\n\n", re.S)
    if m:
        for line in m.group(1).splitlines():
            recap = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}
    tasks = len(re.findall(r"^TASK \[", p.stdout, re.M))
    return {"seconds": took, "rc": p.returncode, "recap": recap, "tasks": tasks, "load": loadavg(),
            "tail": p.stdout[-1500:] if p.returncode else ""}


def render_result(res: dict) -> str:
    """The table of a playbook_rerun result (as printed, or from its saved JSON: bench/show.py)."""
    runs = res["runs"]
    rows = [[str(i + 1), f"{r['seconds']:.0f}", str(r["tasks"]), str(r["recap"].get("ok", "-")),
             str(r["recap"].get("changed", "-")), str(r["recap"].get("failed", "-")), f"{r['load']:.2f}"]
            for i, r in enumerate(runs)]
    return "\n".join([
        f"site.yml {'--check ' if res['check'] else ''}re-run against converged lab VM {res['vm']} "
        "(QEMU 10 TCG, 2 vCPUs)",
        table(["run", "seconds", "tasks", "ok", "changed", "failed", "load"], rows, "rrrrrrr"),
        f"median {res['median_s']:.0f} s (min {res['min_s']:.0f}, max {res['max_s']:.0f}); "
        f"{'idempotent: 0 changed in every run' if res['idempotent'] else 'NOT idempotent or failed: see the JSON'}"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--name", default="lab", help="the converged lab VM (default lab)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--check", action="store_true", help="time check-mode runs instead")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--save", help="also write the JSON here")
    a = ap.parse_args()
    from vio4wd_tool.lab.vm import LabVM

    vm = LabVM.load(a.name)
    if not vm.pid:
        sys.exit(f"lab VM {a.name} is not running: vio4wd-tool lab vm --keep --name {a.name} first")
    runs = []
    for i in range(a.runs):
        r = one_run(vm.inventory, a.check)
        runs.append(r)
        print(f"run {i + 1}/{a.runs}: {r['seconds']:.0f} s, rc {r['rc']}, {r['recap']}", file=sys.stderr)
    secs = [r["seconds"] for r in runs]
    res = {"benchmark": "playbook_rerun", "machine": machine(), "vm": a.name, "check": a.check, "runs": runs,
           "median_s": statistics.median(secs), "min_s": min(secs), "max_s": max(secs),
           "idempotent": all(r["rc"] == 0 and r["recap"].get("changed", 1) == 0 for r in runs)}
    emit(res, a.json, render_result(res), a.save)
    return 0 if res["idempotent"] else 1


if __name__ == "__main__":
    sys.exit(main())
