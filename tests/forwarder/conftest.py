"""Fixtures of the forwarder tests: a hugetlbfs with reserved 2 MiB pages, the data plane."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

NR_HUGEPAGES = Path("/proc/sys/vm/nr_hugepages")
PAGES = 768     # 1.5 GiB of 2 MiB pages for the forwarder and its peers
sys.path.insert(0, str(Path(__file__).resolve().parent))   # helpers


@pytest.fixture(scope="session")
def dataplane():
    if importlib.util.find_spec("forwarder._dataplane") is None:
        pytest.fail("forwarder._dataplane is not built: pip install -e . (or python "
                    "forwarder/_dataplane_build.py); needs libdpdk-dev")


@pytest.fixture(scope="session")
def hugedir(dataplane):
    """A private hugetlbfs mount with PAGES more 2 MiB pages reserved; both undone after."""
    before = int(NR_HUGEPAGES.read_text())
    NR_HUGEPAGES.write_text(str(before + PAGES))
    mnt = Path(tempfile.mkdtemp(prefix="vio4wd-huge-"))
    try:
        got = int(NR_HUGEPAGES.read_text()) - before
        if got < PAGES:
            pytest.fail(f"could reserve only {got} of {PAGES} hugepages (memory fragmented?)")
        subprocess.run(["mount", "-t", "hugetlbfs", "-o", "pagesize=2M", "nodev", str(mnt)],
                       check=True)
        try:
            yield mnt
        finally:
            subprocess.run(["umount", str(mnt)], check=True)
    finally:
        NR_HUGEPAGES.write_text(str(max(0, int(NR_HUGEPAGES.read_text()) - PAGES)))
        mnt.rmdir()


@pytest.fixture
def procs(tmp_path):
    """Start helper processes (fwd_proc.py / peer_proc.py); all are stopped after the test."""
    from helpers import Proc

    started: list[tuple[Proc, dict]] = []

    def start(script: str, conf: dict, name: str, wait: bool = True,
              prefix: tuple[str, ...] = ()) -> Proc:
        quit_msg = {"call": "quit"} if script == "fwd_proc.py" else {"op": "quit"}
        proc = Proc(script, conf, tmp_path / f"{name}.log", wait=wait, prefix=prefix)
        started.append((proc, quit_msg))
        return proc

    yield start
    for proc, quit_msg in reversed(started):
        proc.close(quit_msg)
