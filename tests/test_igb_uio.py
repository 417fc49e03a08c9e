"""`vio4wd-tool igb-uio`: the real dkms build of Debian's dpdk-kmods-dkms against an installed
kernel's headers, the real missing-headers error for the running kernel, and the vermagic /
Secure Boot / persistence logic on copies of the devbox capture."""
from __future__ import annotations

import glob
import json
import os
import shutil
from pathlib import Path

import pytest

from testlib import vio4wd_tool
from vio4wd_tool import kmod
from vio4wd_tool.actions import ActionError
from vio4wd_tool.root import Root

REL = "6.18.44-fc-v657"  # the devbox capture's kernel
RUNNING = os.uname().release
# a Debian kernel whose headers are installed next to the running one (setup installs them)
DEB_KERNELS = sorted(Path(p).parent.parent.name for p in glob.glob("/lib/modules/*/build/Makefile"))


def js(cp) -> dict:
    assert cp.stdout.strip(), cp.stderr
    return json.loads(cp.stdout)


def real_ko() -> bytes | None:
    for p in glob.glob("/lib/modules/*/updates/dkms/igb_uio.ko*"):
        return Path(p).read_bytes()
    return None


def tree_with_module(capture_tree, built_for: str, loaded=True):
    t = capture_tree("devbox")
    data = real_ko() if built_for != REL else None
    if data is None or kmod.vermagic_of(data).split()[0] != built_for:
        data = b"\x7fELF" + b"\0" * 64 + f"vermagic={built_for} SMP preempt mod_unload modversions \0".encode()
    t.p(f"/lib/modules/{REL}/updates/dkms").mkdir(parents=True)
    t.p(f"/lib/modules/{REL}/updates/dkms/igb_uio.ko").write_bytes(data)
    t.write(f"/lib/modules/{REL}/build/Makefile", "# headers\n")
    if loaded:
        for m in ("uio", "igb_uio"):
            t.write(f"/sys/module/{m}/initstate", "live\n")
    return t


# ------------------------------------------------------------------ real

def test_running_kernel_without_headers_is_a_clear_error():
    if os.path.exists(f"/lib/modules/{RUNNING}/build/Makefile"):
        pytest.skip("the running kernel has its headers here")
    cp = vio4wd_tool("igb-uio", "--check")
    assert cp.returncode == 2
    assert f"no kernel headers for {RUNNING}" in cp.stderr and f"apt-get install linux-headers-{RUNNING}" in cp.stderr


@pytest.mark.root
@pytest.mark.slow
@pytest.mark.skipif(not DEB_KERNELS or shutil.which("dkms") is None or not kmod.dkms_source(Root("/")),
                    reason="needs dkms, dpdk-kmods-dkms and a kernel with headers (setup installs them)")
def test_real_dkms_build_for_installed_kernel(tmp_path):
    rel = DEB_KERNELS[-1]
    args = ["igb-uio", "--kernel", rel, "--persist-root", str(tmp_path)]
    chk = vio4wd_tool(*args, "--rebuild", "--check")
    assert chk.returncode == 0 and f"would change: rebuild igb_uio for {rel} with dkms" in chk.stdout
    assert "+igb_uio" in chk.stdout and not (tmp_path / "etc").exists()
    cp = vio4wd_tool(*args, "--rebuild", "--json", timeout=1200)
    r = js(cp)
    assert r["changed"] and not r["error"], (r, cp.stderr[-2000:])
    assert "igb-uio: dkms build for" in cp.stderr and "igb-uio:   " in cp.stderr  # progress
    f = kmod.verify_module(Root("/"), rel)
    assert f.vermagic.split()[0] == rel
    assert (tmp_path / "etc/modules-load.d/vio4wd-igb_uio.conf").read_text().endswith("uio\nigb_uio\n")
    again = js(vio4wd_tool(*args, "--json"))
    assert again["changed"] is False and f"built for {rel}, not loaded" in " ".join(again["notes"])


# ------------------------------------------------------------------ captured tree

def test_tree_matching_module_loaded_persist_only(capture_tree):
    t = tree_with_module(capture_tree, REL)
    args = ["igb-uio", "--root", str(t.path)]
    chk = vio4wd_tool(*args, "--check")
    assert chk.returncode == 0 and "create /etc/modules-load.d/vio4wd-igb_uio.conf" in chk.stdout
    assert "+uio\n+igb_uio" in chk.stdout and not t.p("/etc/modules-load.d").exists()
    r = js(vio4wd_tool(*args, "--json"))
    assert r["changed"] and not r["error"] and r["data"]["module"].endswith("igb_uio.ko")
    assert t.read("/etc/modules-load.d/vio4wd-igb_uio.conf").endswith("uio\nigb_uio\n")
    assert js(vio4wd_tool(*args, "--json"))["changed"] is False


def test_tree_not_loaded_plans_modprobe_in_order(capture_tree):
    t = tree_with_module(capture_tree, REL, loaded=False)
    r = js(vio4wd_tool("igb-uio", "--root", str(t.path), "--no-persist", "--check", "--json"))
    assert [c["what"] for c in r["changes"]] == ["modprobe uio", "modprobe igb_uio"]
    # applying needs the kernel: a captured tree refuses plainly
    cp = vio4wd_tool("igb-uio", "--root", str(t.path), "--no-persist")
    assert cp.returncode == 1 and "modprobe uio needs the live host" in cp.stdout


def test_tree_wrong_vermagic(capture_tree):
    t = tree_with_module(capture_tree, "6.1.0-56-amd64")
    t.write("/usr/src/dpdk-kmods-0~20220829+git/dkms.conf", "PACKAGE_NAME=dpdk-kmods\n")
    r = js(vio4wd_tool("igb-uio", "--root", str(t.path), "--check", "--json"))
    whats = [c["what"] for c in r["changes"]]
    assert f"rebuild igb_uio for {REL} with dkms (dpdk-kmods/0~20220829+git)" in whats
    assert any("was built for 6.1.0-56-amd64, not " + REL in n for n in r["notes"])
    with pytest.raises(ActionError, match=f"wrong vermagic: .* was built for 6.1.0-56-amd64, not {REL}"):
        kmod.verify_module(Root(t.path), REL)
    # the doctor says the same
    d = js(vio4wd_tool("doctor", "--root", str(t.path), "--only", "kmod.igb_uio_file", "--json"))
    assert d["checks"][0]["status"] == "FAIL" and "6.1.0-56-amd64" in d["checks"][0]["finding"]


def test_tree_missing_package_installs_it(capture_tree):
    t = capture_tree("devbox")
    t.write(f"/lib/modules/{REL}/build/Makefile", "# headers\n")
    r = js(vio4wd_tool("igb-uio", "--root", str(t.path), "--check", "--json"))
    whats = [c["what"] for c in r["changes"]]
    assert whats[0] == "install dpdk-kmods-dkms (Debian's dpdk-kmods for dkms)"
    assert whats[1].startswith(f"build igb_uio for {REL} with dkms")


def test_tree_secure_boot(capture_tree):
    t = tree_with_module(capture_tree, REL, loaded=False)
    t.p(kmod.SECUREBOOT_VAR).parent.mkdir(parents=True)
    t.p(kmod.SECUREBOOT_VAR).write_bytes(b"\x06\x00\x00\x00\x01")
    r = js(vio4wd_tool("igb-uio", "--root", str(t.path), "--check", "--json"))
    assert r["data"]["secure_boot"] is True
    assert any("Secure Boot is on" in n and "mokutil --import" in n for n in r["notes"])
    root = Root(t.path)
    assert "mokutil --import /var/lib/dkms/mok.pub" in kmod.explain_modprobe(
        "modprobe: ERROR: could not insert 'igb_uio': Key was rejected by service", root)
    t.p(kmod.SECUREBOOT_VAR).write_bytes(b"\x06\x00\x00\x00\x00")
    assert "wrong vermagic" in kmod.explain_modprobe("could not insert 'igb_uio': Exec format error", Root(t.path))


@pytest.mark.parametrize("extra, words", [
    (["--kernel", "../../etc"], "--kernel '../../etc': not a kernel release"),
    (["--kernel", "9.9.9-nosuch"], "no /lib/modules/9.9.9-nosuch: install that kernel first"),
    (["--source", "/nonexistent"], "--source /nonexistent: not a dpdk-kmods checkout"),
])
def test_bad_input(capture_tree, extra, words):
    t = capture_tree("devbox")
    cp = vio4wd_tool("igb-uio", "--root", str(t.path), *extra)
    assert cp.returncode == 2 and words in cp.stderr, cp.stderr
