"""doctor against the real kernel of this machine: hugepages, hugetlbfs mounts in a private
mount namespace (mounted twice, two sizes on one directory), and the CLI contract."""
from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from testlib import vio4wd_tool

NR = Path("/proc/sys/vm/nr_hugepages")
EXE = [str(Path(sys.executable).parent / "vio4wd-tool")]


def doctor_json(*args) -> dict:
    p = vio4wd_tool("doctor", "--json", *args)
    assert p.returncode in (0, 1), p.stderr
    return json.loads(p.stdout)


def in_mount_ns(tmp_path, mounts: list[str], *doctor_args) -> dict:
    """Run doctor inside a private mount namespace after `mounts` (shell lines), starting from
    no hugetlbfs at all (the host's own mounts are unmounted in the namespace only)."""
    clean = "awk '$3 == \"hugetlbfs\" {print $2}' /proc/mounts | while read -r m; do umount \"$m\"; done"
    script = "set -e\n" + clean + "\n" + "\n".join(mounts) + "\nexec " + " ".join(EXE) + " doctor --json " + " ".join(doctor_args)
    p = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode in (0, 1), p.stderr
    return json.loads(p.stdout)


def by_id(report, cid):
    return [c for c in report["checks"] if c["id"] == cid]


@pytest.fixture
def hugepages():
    """Reserve real 2 MiB pages for one test; restore the old count after."""
    old = NR.read_text()

    def reserve(n):
        NR.write_text(f"{n}\n")
        return int(NR.read_text())

    yield reserve
    NR.write_text(old)
    assert NR.read_text() == old


@pytest.mark.root
def test_hugepages_real_reservation(hugepages):
    got = hugepages(0)
    assert got == 0
    rep = doctor_json("--only", "hugepages.2m", "--no-jumbo")
    assert by_id(rep, "hugepages.2m")[0]["status"] == "FAIL"
    got = hugepages(400)
    if got < 384:
        pytest.skip(f"kernel gave only {got} pages")
    rep = doctor_json("--only", "hugepages.2m", "--no-jumbo")
    assert by_id(rep, "hugepages.2m")[0]["status"] == "PASS", rep


@pytest.mark.root
def test_hugetlbfs_one_mount_passes(tmp_path):
    d = tmp_path / "huge"
    d.mkdir()
    rep = in_mount_ns(tmp_path, [f"mount -t hugetlbfs -o pagesize=2M nodev {d}"], "--only", "hugetlbfs",
                      "--huge-dir", str(d))
    assert [c["status"] for c in by_id(rep, "hugetlbfs.mounts")] == ["PASS"], rep


@pytest.mark.root
def test_hugetlbfs_mounted_twice_fails(tmp_path):
    d = tmp_path / "huge"
    d.mkdir()
    m = f"mount -t hugetlbfs -o pagesize=2M nodev {d}"
    rep = in_mount_ns(tmp_path, [m, m], "--only", "hugetlbfs", "--huge-dir", str(d))
    res = by_id(rep, "hugetlbfs.mounts")
    assert any(c["status"] == "FAIL" and "mounted 2 times" in c["finding"] for c in res), res
    assert not any(str(d) in line for line in Path("/proc/mounts").read_text().splitlines()), \
        "the namespace's mounts leaked into the host"


@pytest.mark.root
def test_hugetlbfs_two_sizes_on_one_dir_fails(tmp_path):
    if not Path("/sys/kernel/mm/hugepages/hugepages-1048576kB").exists():
        pytest.skip("no 1 GiB page support in this kernel")
    d = tmp_path / "huge"
    d.mkdir()
    rep = in_mount_ns(tmp_path, [f"mount -t hugetlbfs -o pagesize=2M nodev {d}",
                                 f"mount -t hugetlbfs -o pagesize=1G nodev {d}"],
                      "--only", "hugetlbfs", "--huge-dir", str(d))
    res = by_id(rep, "hugetlbfs.mounts")
    assert any(c["status"] == "FAIL" and "two page sizes" in c["finding"] for c in res), res


# ------------------------------------------------------------------ the CLI contract

def test_doctor_runs_on_this_machine_json_schema():
    p = vio4wd_tool("doctor", "--json")
    rep = json.loads(p.stdout)
    assert rep["schema"] == "vio4wd.doctor/1"
    assert set(rep) >= {"root", "intent", "summary", "ok", "checks"}
    assert p.returncode == (0 if rep["ok"] else 1)
    assert rep["summary"]["FAIL"] == sum(c["status"] == "FAIL" for c in rep["checks"])
    for c in rep["checks"]:
        assert set(c) == {"id", "group", "title", "subject", "status", "finding", "fix", "requirement"}
        assert c["status"] in ("PASS", "WARN", "FAIL", "SKIP")
        assert c["requirement"]
        if c["status"] in ("FAIL", "WARN"):
            assert c["fix"], c


def test_doctor_exit_codes(capture_tree):
    t = capture_tree("devbox")
    assert vio4wd_tool("doctor", "--root", str(t.path), "--only", "cpu.flags").returncode == 0
    assert vio4wd_tool("doctor", "--root", str(t.path), "--only", "hugepages.2m").returncode == 1
    bad = vio4wd_tool("doctor", "--root", str(t.path), "--cpus", "3-1")
    assert bad.returncode == 2 and "--cpus" in bad.stderr and "3-1" in bad.stderr
    assert vio4wd_tool("doctor", "--bogus").returncode == 2


def test_doctor_quiet_shows_only_problems(capture_tree):
    t = capture_tree("devbox")
    out = vio4wd_tool("doctor", "--root", str(t.path), "-q").stdout
    lines = [l for l in out.splitlines() if " : " in l]
    assert lines and all(": FAIL" in l or ": WARN" in l for l in lines)
    assert "PASS" not in out.replace("passed", "")


def test_doctor_color_only_on_a_tty(capture_tree):
    t = capture_tree("devbox")
    plain = vio4wd_tool("doctor", "--root", str(t.path)).stdout
    assert "\033[" not in plain
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(EXE[0], EXE + ["doctor", "--root", str(t.path)])
    out = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.waitpid(pid, 0)
    assert b"\033[31mFAIL" in out


def test_doctor_intent_from_forwarder_config(capture_tree):
    t = capture_tree("devbox")
    t.write("/etc/default/virtioforwarder", "VIRTIOFWD_CPU_MASK=1\nVIRTIOFWD_MASTER_LCORE=0\n"
            "VIRTIOFWD_JUMBO=true\nVIRTIOFWD_HUGETLBFS_MOUNT_POINT=/mnt/huge\n")
    rep = json.loads(vio4wd_tool("doctor", "--root", str(t.path), "--json").stdout)
    assert rep["intent"]["source"] == "/etc/default/virtioforwarder"
    assert rep["intent"]["workers"] == [1] and rep["intent"]["jumbo"] is True
    assert rep["intent"]["huge_dir"] == "/mnt/huge"
    assert any("need 1375" in c["finding"] for c in by_id(rep, "hugepages.2m"))


def test_doctor_bad_config_is_a_usage_error(capture_tree):
    t = capture_tree("devbox")
    t.write("/etc/default/virtioforwarder", "VIRTIOFWD_CPU_MASK=banana\n")
    p = vio4wd_tool("doctor", "--root", str(t.path))
    assert p.returncode == 2 and "VIRTIOFWD_CPU_MASK" in p.stderr
