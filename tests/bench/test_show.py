"""bench/show.py renders every saved result under bench/results/ with its benchmark's own
`render_result` (the table printed live).  Needs no root and no DPDK."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RESULTS = sorted((REPO / "bench" / "results").glob("*/*.json"))

HEADERS = {"throughput": "Mpps med", "scaling": "relays", "zero_loss": "0-loss Mpps",
           "latency": "replies", "doctor_walltime": "doctor wall time", "playbook_rerun": "changed"}


@pytest.mark.parametrize("path", RESULTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_saved_result_renders(path):
    p = subprocess.run([sys.executable, str(REPO / "bench" / "show.py"), str(path)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    kind = next(k for k in HEADERS if path.name.startswith(k.split("_")[0]))
    assert HEADERS[kind] in p.stdout


def test_not_a_result(tmp_path):
    f = tmp_path / "x.json"
    f.write_text('{"a": 1}')
    p = subprocess.run([sys.executable, str(REPO / "bench" / "show.py"), str(f)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and "not a benchmark result" in p.stderr


def test_pool_throughput_sessions():
    files = [str(p) for p in RESULTS if p.name.startswith("throughput-")][:2]
    p = subprocess.run([sys.executable, str(REPO / "bench" / "show.py"), "--pool", *files],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "runs of 2 sessions pooled" in p.stdout and "vio4wd/testpmd" in p.stdout


def test_pool_refuses_other_benchmarks():
    files = [str(p) for p in RESULTS if p.name.startswith(("throughput-", "latency-"))]
    p = subprocess.run([sys.executable, str(REPO / "bench" / "show.py"), "--pool", *files],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and "--pool takes" in p.stderr


def test_pool_refuses_different_setups():
    retry = [p for p in RESULTS if "retry" in p.name]
    plain = [p for p in RESULTS if p.name.startswith("throughput-") and "retry" not in p.name]
    assert retry and plain
    p = subprocess.run([sys.executable, str(REPO / "bench" / "show.py"), "--pool", str(retry[0]), str(plain[0])],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and "measured differently" in p.stderr and retry[0].name in p.stderr
