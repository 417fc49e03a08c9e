"""`vio4wd-tool hugepages`: real reservations and hugetlbfs mounts (private mount namespace) on this
machine, and the file-level logic on copies of the devbox capture."""
from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from testlib import VENV_BIN, vio4wd_tool
from vio4wd_tool.hugepages import mount_unit_name, systemd_escape_path

NODE0_2M = "/sys/devices/system/node/node0/hugepages/hugepages-2048kB/nr_hugepages"
GLOBAL_2M = "/proc/sys/vm/nr_hugepages"
MAX_MAP = "/proc/sys/vm/max_map_count"


def js(cp) -> dict:
    assert cp.stdout.strip(), cp.stderr
    return json.loads(cp.stdout)


# ------------------------------------------------------------------ captured tree (file logic)

def test_unit_names_match_systemd_escape():
    assert mount_unit_name("/dev/hugepages") == "dev-hugepages.mount"
    assert mount_unit_name("/dev/hugepages-1G") == "dev-hugepages\\x2d1G.mount"
    assert systemd_escape_path("/srv/huge pages/.x") == "srv-huge\\x20pages-.x"


def tree_args(t, *extra):
    return ["hugepages", "--root", str(t.path), *extra]


def test_tree_check_apply_idempotent(capture_tree):
    t = capture_tree("devbox")
    t.append("/etc/passwd", "libvirt-qemu:x:%d:%d::/var/lib/libvirt:/usr/sbin/nologin\n" % (os.getuid(), os.getgid()))
    before = t.read(NODE0_2M)
    args = tree_args(t, "--pages-2m", "384", "--mounts")
    cp = vio4wd_tool(*args, "--check")
    assert cp.returncode == 0, cp.stderr
    assert "would change: reserve 2M pages on node 0: 0 -> 384" in cp.stdout
    assert "+++ b/etc/systemd/system/dev-hugepages.mount" in cp.stdout and "+Options=pagesize=2M" in cp.stdout
    assert "+Where=/dev/hugepages-1G" in cp.stdout
    # --check wrote nothing
    assert t.read(NODE0_2M) == before
    assert not t.p("/etc/systemd/system").exists() and not t.p("/dev/hugepages").exists()
    assert "hugetlbfs" not in t.read("/proc/mounts")

    cp = vio4wd_tool(*args, "--json")
    r = js(cp)
    assert cp.returncode == 0 and r["changed"] and r["schema"] == "vio4wd.action/1" and not r["error"]
    whats = [c["what"] for c in r["changes"]]
    assert any("mount hugetlbfs (2M pages) at /dev/hugepages" == w for w in whats)
    assert any("create /dev/hugepages/libvirt owned by libvirt-qemu:kvm" == w for w in whats)
    assert t.read(NODE0_2M).strip() == "384"
    assert t.read("/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages").strip() == "384"
    unit = t.p("/etc/systemd/system/dev-hugepages\\x2d1G.mount")
    assert "Options=pagesize=1G" in unit.read_text()
    link = t.p("/etc/systemd/system/sysinit.target.wants/dev-hugepages.mount")
    assert link.is_symlink() and link.resolve() == t.p("/etc/systemd/system/dev-hugepages.mount")
    assert "d /dev/hugepages/libvirt 0755 libvirt-qemu kvm -" in t.read("/etc/tmpfiles.d/vio4wd-hugepages.conf")
    mounts = [line for line in t.read("/proc/mounts").splitlines() if "hugetlbfs" in line]
    assert len(mounts) == 2

    again = js(vio4wd_tool(*args, "--json"))
    assert again["changed"] is False and again["changes"] == []
    cp = vio4wd_tool(*args)
    assert cp.returncode == 0 and "hugepages: unchanged (nothing to do)" in cp.stdout
    # the doctor now passes the mount check it would have failed before
    d = js(vio4wd_tool("doctor", "--root", str(t.path), "--only", "hugetlbfs.mounts", "--json"))
    assert {c["status"] for c in d["checks"]} == {"PASS"}


def test_tree_max_map_count_persisted(capture_tree):
    t = capture_tree("devbox")
    t.write(MAX_MAP, "1000\n")
    args = tree_args(t, "--pages-2m", "600")
    r = js(vio4wd_tool(*args, "--check", "--json"))
    whats = [c["what"] for c in r["changes"]]
    assert "sysctl vm.max_map_count: 1000 -> 1201" in whats
    sysctl = [c for c in r["changes"] if c["what"].endswith("80-vio4wd-hugepages.conf")][0]
    assert "+vm.max_map_count = 1201" in sysctl["diff"]
    assert t.read(MAX_MAP).strip() == "1000"
    assert js(vio4wd_tool(*args, "--json"))["changed"]
    assert t.read(MAX_MAP).strip() == "1201"
    assert "vm.max_map_count = 1201" in t.read("/etc/sysctl.d/80-vio4wd-hugepages.conf")
    assert js(vio4wd_tool(*args, "--json"))["changed"] is False


def test_tree_plan_source(capture_tree, tmp_path):
    t = capture_tree("devbox")
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"schema": "vio4wd.plan/1", "node": 0, "hugepages_2m": {"0": 512},
                                "hugepages_1g": {"0": 0}}))
    r = js(vio4wd_tool(*tree_args(t, "--plan", str(plan), "--no-persist", "--check", "--json")))
    assert "reserve 2M pages on node 0: 0 -> 512" in r["changes"][0]["what"]


@pytest.mark.parametrize("extra, words", [
    (["--pages-2m", "-1"], "--pages-2m -1: a page count cannot be negative"),
    (["--node", "3", "--pages-2m", "8"], "--node 3: no such NUMA node (this host has node(s) 0)"),
    (["--node", "0"], "--node 0 needs --pages-2m N"),
    (["--pages-2m", "9999999"], "do not fit into"),
    ([], "nothing to do"),
    (["--mounts", "--mount-2m", "/x", "--mount-1g", "/x"], "need different directories"),
    (["--mounts", "--mount-2m", "relative"], "mount point 'relative'"),
    (["--mounts", "--qemu-user", "nosuchuser"], "no user 'nosuchuser'"),
    (["--plan", "/nonexistent/plan.json"], "no plan at /nonexistent/plan.json"),
])
def test_tree_bad_input(capture_tree, extra, words):
    t = capture_tree("devbox")
    before = t.read(NODE0_2M)
    cp = vio4wd_tool(*tree_args(t, *extra))
    assert cp.returncode == 2 and words in cp.stderr, cp.stderr
    assert t.read(NODE0_2M) == before


def test_tree_refuses_second_mount(capture_tree):
    t = capture_tree("devbox")
    t.append("/proc/mounts", "hugetlbfs /run/hp hugetlbfs rw,relatime,pagesize=2M 0 0\n")
    cp = vio4wd_tool(*tree_args(t, "--mounts"))
    assert cp.returncode == 1 or cp.returncode == 2
    assert "2M pages are already mounted at /run/hp" in cp.stderr and "--mount-2m /run/hp" in cp.stderr
    # adopting the existing mount is fine
    cp = vio4wd_tool(*tree_args(t, "--mounts", "--mount-2m", "/run/hp", "--no-persist", "--json"))
    r = js(cp)
    assert cp.returncode == 0 and not any("/run/hp" in c["what"] for c in r["changes"])


def test_tree_refuses_double_and_wrong_size(capture_tree):
    t = capture_tree("devbox")
    t.append("/proc/mounts", "hugetlbfs /dev/hugepages hugetlbfs rw,pagesize=2M 0 0\n" * 2)
    cp = vio4wd_tool(*tree_args(t, "--mounts"))
    assert cp.returncode == 2 and "/dev/hugepages is mounted 2 times" in cp.stderr
    t.write("/proc/self/mounts", "hugetlbfs /dev/hugepages hugetlbfs rw,pagesize=1024M 0 0\n")
    cp = vio4wd_tool(*tree_args(t, "--mounts"))
    assert cp.returncode == 2 and "/dev/hugepages is a hugetlbfs of 1G pages, not 2M" in cp.stderr


# ------------------------------------------------------------------ real kernel (root)

@pytest.fixture
def restore_hugepages():
    """Put nr_hugepages and vm.max_map_count back, whatever the test did."""
    saved = {p: Path(p).read_text() for p in (NODE0_2M, MAX_MAP)}
    yield
    for p, v in saved.items():
        Path(p).write_text(v)


@pytest.mark.root
def test_real_reserve_node0(restore_hugepages, tmp_path):
    base = int(Path(NODE0_2M).read_text())
    want = base + 64
    args = ["hugepages", "--node", "0", "--pages-2m", str(want), "--persist-root", str(tmp_path)]
    cp = vio4wd_tool(*args, "--check")
    assert cp.returncode == 0 and f"reserve 2M pages on node 0: {base} -> {want}" in cp.stdout
    assert int(Path(NODE0_2M).read_text()) == base  # --check reserved nothing
    r = js(vio4wd_tool(*args, "--json"))
    assert r["changed"] and not r["error"], r
    assert r["data"]["pages"]["2M/node0"]["after"] == want
    assert int(Path(NODE0_2M).read_text()) == want
    assert int(Path(GLOBAL_2M).read_text()) >= want
    again = js(vio4wd_tool(*args, "--json"))
    assert again["changed"] is False
    # and release them again through the same action
    r = js(vio4wd_tool("hugepages", "--pages-2m", str(base), "--no-persist", "--json"))
    assert r["changed"] and int(Path(NODE0_2M).read_text()) == base


@pytest.mark.root
def test_real_max_map_count(restore_hugepages, tmp_path):
    Path(MAX_MAP).write_text("100\n")
    base = int(Path(NODE0_2M).read_text())
    args = ["hugepages", "--pages-2m", str(base + 60), "--persist-root", str(tmp_path), "--json"]
    r = js(vio4wd_tool(*args))
    need = 2 * (base + 60) + 1
    assert f"sysctl vm.max_map_count: 100 -> {need}" in [c["what"] for c in r["changes"]]
    assert int(Path(MAX_MAP).read_text()) == need
    assert f"vm.max_map_count = {need}" in (tmp_path / "etc/sysctl.d/80-vio4wd-hugepages.conf").read_text()
    assert js(vio4wd_tool(*args))["changed"] is False


def in_private_ns(script: str) -> subprocess.CompletedProcess:
    """Run a shell script in a private mount namespace (mounts vanish when it exits)."""
    env = dict(os.environ, PATH=f"{VENV_BIN}:{os.environ['PATH']}")
    return subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-ec", textwrap.dedent(script)],
                          capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.root
def test_real_mounts_in_private_namespace(restore_hugepages, tmp_path):
    m2, m1 = tmp_path / "hp2m", tmp_path / "hp1g"
    etc = tmp_path / "image"
    base = int(Path(NODE0_2M).read_text())
    args = (f"vio4wd-tool hugepages --mounts --mount-2m {m2} --mount-1g {m1} --qemu-user nobody:kvm "
            f"--persist-root {etc} --node 0 --pages-2m {base + 16}")
    cp = in_private_ns(f"""
        # start from no hugetlbfs: drop the mounts inherited from the host (private: the host keeps them)
        grep hugetlbfs /proc/self/mounts | cut -d' ' -f2 | xargs -r -n1 umount
        {args} --check > {tmp_path}/check.txt
        grep -c hugetlbfs /proc/self/mounts > {tmp_path}/before.txt || true
        {args} --json > {tmp_path}/first.json
        {args} --json > {tmp_path}/second.json
        grep hugetlbfs /proc/self/mounts > {tmp_path}/mounts.txt
        stat -c '%U:%G %a' {m2}/libvirt {m1}/libvirt > {tmp_path}/owners.txt
        # a file on the mount really takes a hugepage
        python3 -c "import mmap,os; fd=os.open('{m2}/probe', os.O_CREAT|os.O_RDWR); os.ftruncate(fd, 2<<20); m=mmap.mmap(fd, 2<<20); m[0]=1; print(open('/proc/meminfo').read())" > {tmp_path}/meminfo.txt
        rm {m2}/probe
        # a second mount of the same size elsewhere is refused
        mkdir -p {tmp_path}/other
        vio4wd-tool hugepages --mounts --mount-2m {tmp_path}/other --mount-1g {m1} --no-persist > /dev/null 2> {tmp_path}/refused.txt && exit 9 || true
    """)
    assert cp.returncode == 0, cp.stderr
    assert "would change: mount hugetlbfs (2M pages) at " + str(m2) in (tmp_path / "check.txt").read_text()
    assert (tmp_path / "before.txt").read_text().strip() == "0"
    first = json.loads((tmp_path / "first.json").read_text())
    assert first["changed"] and not first["error"], first
    assert json.loads((tmp_path / "second.json").read_text())["changed"] is False
    mounts = (tmp_path / "mounts.txt").read_text().splitlines()
    assert len(mounts) == 2
    assert any(f" {m2} hugetlbfs " in line and "pagesize=2M" in line for line in mounts)
    assert any(f" {m1} hugetlbfs " in line and "pagesize=1024M" in line for line in mounts)
    assert (tmp_path / "owners.txt").read_text().split("\n")[:2] == ["nobody:kvm 755", "nobody:kvm 755"]
    assert "2M pages are already mounted at " + str(m2) in (tmp_path / "refused.txt").read_text()
    unit = etc / "etc/systemd/system" / mount_unit_name(str(m2))
    assert f"Where={m2}" in unit.read_text()
    assert f"d {m2}/libvirt 0755 nobody kvm -" in (etc / "etc/tmpfiles.d/vio4wd-hugepages.conf").read_text()
    # the namespace is gone: nothing is mounted out here
    assert str(m2) not in Path("/proc/self/mounts").read_text()


@pytest.mark.skipif(not __import__("shutil").which("systemd-analyze"), reason="systemd-analyze not installed")
def test_units_pass_systemd_analyze_verify(tmp_path):
    from vio4wd_tool import sriov
    from vio4wd_tool.hugepages import mount_unit_text

    (tmp_path / mount_unit_name("/dev/hugepages-1G")).write_text(mount_unit_text("/dev/hugepages-1G", 1048576))
    (tmp_path / mount_unit_name("/dev/hugepages")).write_text(mount_unit_text("/dev/hugepages", 2048))
    (tmp_path / sriov.UNIT_NAME).write_text(sriov.unit_text())
    units = sorted(str(p) for p in tmp_path.iterdir())
    cp = subprocess.run(["systemd-analyze", "verify", "--man=no", *units], capture_output=True, text=True,
                        timeout=120, env=dict(os.environ, SYSTEMD_LOG_LEVEL="warning"))
    assert cp.returncode == 0, cp.stdout + cp.stderr
