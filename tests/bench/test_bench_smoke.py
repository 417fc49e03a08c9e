"""Smoke tests of the data-plane benchmarks (bench/): each script runs briefly and prints its
table and valid JSON.  Never timed asserts: the numbers are not checked, only that a comparison
of both sides was made."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench"

pytestmark = [pytest.mark.root, pytest.mark.dpdk]


def run(script: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    if shutil.which("dpdk-testpmd") is None:
        pytest.fail("dpdk-testpmd missing: apt-get install dpdk-dev")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    p = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True,
                       text=True, timeout=timeout, env=env, cwd=REPO)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return p


def test_throughput_table_and_json():
    p = run("throughput.py", "--runs", "1", "--seconds", "1", "--sizes", "64",
            "--dirs", "vm2vf")
    assert "vio4wd/testpmd" in p.stdout and "cyc/pkt" in p.stdout and "busy c/p" in p.stdout, p.stdout
    p = run("throughput.py", "--runs", "1", "--seconds", "1", "--sizes", "1518",
            "--dirs", "vf2vm", "--json")
    res = json.loads(p.stdout)
    (e,) = res["results"]
    assert e["direction"] == "vf2vm" and e["size"] == 1518
    for dut in ("vio4wd", "testpmd"):
        assert e[dut]["mpps"]["n"] == 1, e[dut]["runs"]
    assert e["ratio_mpps"] is not None and res["machine"]["tsc_hz"] > 0
    # busy cycles/packet: the forwarder's worker counter vs testpmd's --record-core-cycles
    assert e["vio4wd"]["busy_cycles_per_pkt"]["median"] > 0 and e["testpmd"]["busy_cycles_per_pkt"]["median"] > 0
    assert e["ratio_busy_cycles"] is not None


def test_zero_loss_table():
    p = run("zero_loss.py", "--repeats", "1", "--trial", "0.2", "--max-steps", "3",
            "--sizes", "64", "--dirs", "vm2vf", "--json")
    res = json.loads(p.stdout)
    (e,) = res["results"]
    for dut in ("vio4wd", "testpmd"):
        assert e[dut]["zero_loss_mpps"]["n"] == 1
        assert e[dut]["capacity_mpps"]["median"] > 0
    p = run("zero_loss.py", "--repeats", "1", "--trial", "0.2", "--max-steps", "2",
            "--sizes", "64", "--dirs", "vf2vm")
    assert "0-loss Mpps" in p.stdout and "vio4wd/testpmd" in p.stdout, p.stdout


def test_scaling_table():
    p = run("scaling.py", "--runs", "1", "--seconds", "1", "--relays", "2", "--queues", "2",
            "--json")
    res = json.loads(p.stdout)
    assert [(e["relays"], e["queues"]) for e in res["results"]] == [(2, 1), (1, 2)]
    for e in res["results"]:
        for dut in ("vio4wd", "testpmd"):
            assert e[dut]["mpps"]["n"] == 1, e[dut]["runs"]


@pytest.mark.qemu
@pytest.mark.slow
def test_latency_table():
    p = run("latency.py", "--rounds", "1", "--count", "3", timeout=400)
    assert "forwarder/qemu-tap" in p.stdout and "qemu-tap" in p.stdout, p.stdout
    assert " lost" in p.stdout
