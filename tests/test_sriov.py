"""`vio4wd-tool vfs`: create, VF settings, bind with rollback, replay, status — on an SR-IOV host
tree (the lab VM capture when present; its mutated copies stand in for the kernel here, since this
machine has no SR-IOV NIC; the real kernel path is exercised on the lab VM)."""
from __future__ import annotations

import json
import os
import threading

import pytest

from testlib import vio4wd_tool
from sriov_tree import add_address, sriov_tree
from vio4wd_tool import sriov
from vio4wd_tool.actions import execute
from vio4wd_tool.root import Root


def js(cp) -> dict:
    assert cp.stdout.strip(), cp.stderr
    return json.loads(cp.stdout)


@pytest.fixture
def host(capture_tree):
    return sriov_tree(capture_tree)


def pcidev(t, addr):
    return f"/sys/bus/pci/devices/{addr}"


def driver_of(t, addr):
    return os.path.basename(os.readlink(t.p(pcidev(t, addr)).resolve() / "driver"))


# ------------------------------------------------------------------ status

def test_status_human_and_json(host):
    t, pf, ifname, vfs = host
    cp = vio4wd_tool("vfs", "status", "--root", str(t.path))
    assert cp.returncode == 0, cp.stderr
    out = cp.stdout
    assert "Network devices using kernel driver" in out and "Network devices using DPDK-compatible driver" in out
    assert f"{pf} " in out and f"if={ifname}" in out and "vfs=2/" in out
    assert f"{vfs[0]} " in out and f"pf={pf} vf=0" in out and f"pf={pf} vf=1" in out
    st = js(vio4wd_tool("vfs", "status", "--root", str(t.path), "--json"))
    assert st["schema"] == "vio4wd.vfs-status/1"
    rows = {r["addr"]: r for r in st["devices"]}
    assert rows[pf]["sriov_numvfs"] == 2 and rows[vfs[1]]["vf_index"] == 1 and rows[vfs[1]]["pf"] == pf
    assert rows[vfs[0]]["dpdk"] is False


# ------------------------------------------------------------------ create

def test_create_unchanged_when_count_matches(host):
    t, pf, ifname, vfs = host
    r = js(vio4wd_tool("vfs", "create", "--root", str(t.path), "--pf", ifname, "--count", "2", "--no-persist", "--json"))
    assert r["changed"] is False and r["data"]["count"] == 2


def test_create_writes_zero_then_n(host):
    """Changing a non-zero count goes through 0 (a direct change gives EBUSY): watch the writes."""
    t, pf, ifname, vfs = host
    numvfs = t.p(pcidev(t, pf)).resolve() / "sriov_numvfs"
    cp = vio4wd_tool("vfs", "create", "--root", str(t.path), "--pf", pf, "--count", "1", "--check")
    assert cp.returncode == 0 and f"remove VFs on {pf} ({ifname}): 2 -> 1" not in cp.stdout
    assert f"create VFs on {pf} ({ifname}): 2 -> 1 (via 0: a direct change gives EBUSY)" in cp.stdout
    assert numvfs.read_text().strip() == "2"  # --check wrote nothing
    planned = sriov.create_action(Root(t.path), pf, 1, timeout=0.3, persist=False)
    numvfs.unlink()
    os.mkfifo(numvfs)
    writes = []

    def reader():  # each write opens the FIFO anew; two may land in one read
        while len(writes) < 2:
            with open(numvfs) as f:
                writes.extend(f.read().split())

    th = threading.Thread(target=reader, daemon=True)
    th.start()
    # the tree keeps both VF devices, so waiting for exactly 1 times out: the order of writes is the point
    res = execute(planned, check=False)
    th.join(5)
    assert writes == ["0", "1"]
    assert "did not appear within 0.3 s" in res.error


def test_create_from_zero_waits_for_vfs(host, tmp_path):
    t, pf, ifname, vfs = host
    numvfs = t.p(pcidev(t, pf)).resolve() / "sriov_numvfs"
    numvfs.write_text("0\n")
    args = ["vfs", "create", "--root", str(t.path), "--pf", ifname, "--count", "2", "--persist-root", str(tmp_path)]
    chk = vio4wd_tool(*args, "--check")
    assert chk.returncode == 0 and "0 -> 2" in chk.stdout and "+++ b/etc/vio4wd/vfs.json" in chk.stdout
    assert numvfs.read_text().strip() == "0" and not (tmp_path / "etc").exists()
    r = js(vio4wd_tool(*args, "--json"))
    assert r["changed"] and not r["error"], r
    assert numvfs.read_text().strip() == "2"
    state = json.loads((tmp_path / "etc/vio4wd/vfs.json").read_text())
    assert state["pfs"][pf] == {"count": 2}
    unit = (tmp_path / "etc/systemd/system/vio4wd-vfs.service").read_text()
    assert "Type=oneshot" in unit and "vfs replay --state /etc/vio4wd/vfs.json" in unit
    assert (tmp_path / "etc/systemd/system/multi-user.target.wants/vio4wd-vfs.service").is_symlink()
    assert js(vio4wd_tool(*args, "--json"))["changed"] is False


def test_create_timeout_is_an_error(host):
    t, pf, ifname, vfs = host
    (t.p(pcidev(t, pf)).resolve() / "sriov_numvfs").write_text("0\n")
    cp = vio4wd_tool("vfs", "create", "--root", str(t.path), "--pf", ifname, "--count", "3", "--timeout", "0.3",
                     "--no-persist")
    assert cp.returncode == 1 and "3 VFs of" in cp.stdout and "did not appear within 0.3 s" in cp.stdout


def test_vf_mac_trust_spoofchk(host):
    t, pf, ifname, vfs = host
    args = ["vfs", "create", "--root", str(t.path), "--pf", ifname, "--count", "2", "--no-persist",
            "--mac", "0=02:00:00:00:00:01", "--mac", "1=02:00:00:00:00:02", "--trust", "on", "--spoofchk", "off"]
    cp = vio4wd_tool(*args, "--check")
    assert cp.returncode == 0
    assert f"set VF 0 of {ifname}: mac 02:00:00:00:00:01, trust on, spoofchk off" in cp.stdout
    fact = t.p(f"/.vio4wd/facts/ip-link-{ifname}")
    before = fact.read_text() if fact.exists() else None
    r = js(vio4wd_tool(*args, "--json"))
    assert r["changed"] and len(r["changes"]) == 2 and not r["error"]
    assert fact.read_text() != before
    assert js(vio4wd_tool(*args, "--json"))["changed"] is False


@pytest.mark.parametrize("extra, words", [
    (["--count", "99"], "--count 99: {pf} supports 0..7 VFs"),
    (["--count", "-1"], "--count -1"),
    (["--count", "2", "--mac", "5=02:00:00:00:00:01"], "VF index 5 out of range"),
    (["--count", "2", "--mac", "0=01:00:00:00:00:01"], "multicast"),
    (["--count", "2", "--mac", "0=zz"], "bad MAC address 'zz'"),
    (["--count", "2", "--mac", "0=02:00:00:00:00:01", "--mac", "1=02:00:00:00:00:01"], "same MAC"),
    (["--count", "2", "--trust", "maybe"], "bad switch value 'maybe'"),
    (["--count", "2", "--timeout", "0"], "--timeout 0"),
])
def test_create_bad_input(host, extra, words):
    t, pf, ifname, vfs = host
    cp = vio4wd_tool("vfs", "create", "--root", str(t.path), "--pf", ifname, *extra)
    assert cp.returncode == 2 and words.format(pf=pf) in cp.stderr, cp.stderr


@pytest.mark.parametrize("pfspec, words", [
    ("nosuch0", "--pf nosuch0: no such interface or PCI device"),
    ("0000:5:00.0", "bad PCI address '0000:5:00.0'"),
    ("<plain NIC>", "is not an SR-IOV physical function"),
])
def test_create_bad_pf(host, pfspec, words):
    t, pf, ifname, vfs = host
    if pfspec == "<plain NIC>":  # the capture's virtio NIC (eth0 on devbox, enp0s3 in the lab VM)
        pfspec = next(d.net[0].name for d in sriov.probe_pci(Root(t.path)).devices.values()
                      if d.net and not d.is_pf and not d.is_vf)
    cp = vio4wd_tool("vfs", "create", "--root", str(t.path), "--pf", pfspec, "--count", "1")
    assert cp.returncode == 2 and words in cp.stderr, cp.stderr


def test_create_on_a_vf_is_refused(host):
    t, pf, ifname, vfs = host
    cp = vio4wd_tool("vfs", "create", "--root", str(t.path), "--pf", vfs[0], "--count", "1")
    assert cp.returncode == 2 and "it is itself a VF" in cp.stderr


# ------------------------------------------------------------------ bind

def test_bind_check_apply_idempotent(host):
    t, pf, ifname, vfs = host
    old = driver_of(t, vfs[0])
    args = ["vfs", "bind", vfs[0], vfs[1].upper(), "--driver", "vfio_pci", "--root", str(t.path)]
    cp = vio4wd_tool(*args, "--check")
    assert cp.returncode == 0 and f"would change: bind {vfs[0]} to vfio-pci (was {old})" in cp.stdout
    assert driver_of(t, vfs[0]) == old and not t.p("/etc/vio4wd").exists()
    r = js(vio4wd_tool(*args, "--json"))
    assert r["changed"] and not r["error"], r
    assert driver_of(t, vfs[0]) == "vfio-pci" and driver_of(t, vfs[1]) == "vfio-pci"
    assert t.read(pcidev(t, vfs[0]) + "/driver_override").strip() == "vfio-pci"
    st = json.loads(t.read("/etc/vio4wd/vfs.json"))
    assert st["bindings"] == {vfs[0]: "vfio-pci", vfs[1]: "vfio-pci"}
    assert js(vio4wd_tool(*args, "--json"))["changed"] is False
    # status now lists them under DPDK
    s = js(vio4wd_tool("vfs", "status", "--root", str(t.path), "--json"))
    assert {r["addr"] for r in s["devices"] if r["dpdk"]} == set(vfs)


def test_bind_rolls_back_when_the_driver_fails(host):
    t, pf, ifname, vfs = host
    old = driver_of(t, vfs[0])
    res = sriov.bind_action(Root(t.path), [vfs[0]], "igb_uio", persist=False)
    t.rm("/sys/bus/pci/drivers/igb_uio")  # the driver goes away between check and bind: it cannot take the VF
    res = execute(res, check=False)
    assert res.error and f"binding {vfs[0]} to igb_uio failed" in res.error and f"rolled back to {old}" in res.error
    assert driver_of(t, vfs[0]) == old
    assert t.read(pcidev(t, vfs[0]) + "/driver_override").strip() in ("", "(null)")


def test_bind_refuses_busy_interface_unless_forced(host):
    t, pf, ifname, vfs = host
    vif = sriov.probe_pci(Root(t.path)).get(vfs[0]).net[0].name
    add_address(t, vif, "192.0.2.7/24")
    cp = vio4wd_tool("vfs", "bind", vfs[0], "--driver", "igb_uio", "--root", str(t.path), "--no-persist")
    assert cp.returncode == 2 and f"{vfs[0]} is {vif} with 192.0.2.7/24" in cp.stderr and "--force" in cp.stderr
    cp = vio4wd_tool("vfs", "bind", vfs[0], "--driver", "igb_uio", "--root", str(t.path), "--no-persist", "--force")
    assert cp.returncode == 0 and driver_of(t, vfs[0]) == "igb_uio"


def test_bind_refuses_pf_with_vfs(host):
    t, pf, ifname, vfs = host
    cp = vio4wd_tool("vfs", "bind", pf, "--driver", "igb_uio", "--root", str(t.path))
    assert cp.returncode == 2 and "is a PF with 2 VFs" in cp.stderr


@pytest.mark.parametrize("dev, drv, words", [
    ("0000:05:10", "igb_uio", "bad PCI address '0000:05:10'"),
    ("0000:0g:10.0", "igb_uio", "bad PCI address"),
    ("0000:05:1f.7", "igb_uio", "0000:05:1f.7: no such PCI device"),
    (None, "nosuchdrv", "driver nosuchdrv is not loaded"),
    (None, "bad driver!", "bad driver name"),
])
def test_bind_bad_input(host, dev, drv, words):
    t, pf, ifname, vfs = host
    cp = vio4wd_tool("vfs", "bind", dev or vfs[0], "--driver", drv, "--root", str(t.path))
    assert cp.returncode == 2 and words in cp.stderr, cp.stderr


def test_bind_missing_igb_uio_names_the_fix(host):
    t, pf, ifname, vfs = host
    t.rm("/sys/bus/pci/drivers/igb_uio")
    cp = vio4wd_tool("vfs", "bind", vfs[0], "--driver", "igb_uio", "--root", str(t.path))
    assert cp.returncode == 2 and "vio4wd-tool igb-uio" in cp.stderr


def test_vfio_needs_iommu_group(host):
    t, pf, ifname, vfs = host
    if t.p(pcidev(t, vfs[0]) + "/iommu_group").is_symlink():
        t.rm(pcidev(t, vfs[0]) + "/iommu_group")
    cp = vio4wd_tool("vfs", "bind", vfs[0], "--driver", "vfio-pci", "--root", str(t.path))
    assert cp.returncode == 2 and "no IOMMU group" in cp.stderr and "intel_iommu=on" in cp.stderr


# ------------------------------------------------------------------ replay at boot

def test_replay_rebinds_after_reboot(host):
    t, pf, ifname, vfs = host
    old = driver_of(t, vfs[0])
    assert vio4wd_tool("vfs", "bind", vfs[0], "--driver", "igb_uio", "--root", str(t.path)).returncode == 0
    # "reboot": the kernel driver has the VF again, no override
    link = t.p(pcidev(t, vfs[0])).resolve() / "driver"
    link.unlink()
    os.symlink(os.path.relpath(t.p(f"/sys/bus/pci/drivers/{old}"), link.parent), link)
    t.write(pcidev(t, vfs[0]) + "/driver_override", "(null)\n")
    chk = vio4wd_tool("vfs", "replay", "--root", str(t.path), "--check")
    assert chk.returncode == 0 and f"would change: bind {vfs[0]} to igb_uio" in chk.stdout
    assert driver_of(t, vfs[0]) == old
    r = js(vio4wd_tool("vfs", "replay", "--root", str(t.path), "--json"))
    assert r["changed"] and not r["error"] and driver_of(t, vfs[0]) == "igb_uio"
    assert js(vio4wd_tool("vfs", "replay", "--root", str(t.path), "--json"))["changed"] is False


def test_replay_bad_state(tmp_path, host):
    t, pf, ifname, vfs = host
    bad = tmp_path / "vfs.json"
    bad.write_text("{}")
    cp = vio4wd_tool("vfs", "replay", "--root", str(t.path), "--state", str(bad))
    assert cp.returncode == 2 and "not a vio4wd.vfs/1 file" in cp.stderr


def test_bind_vfio_loads_and_persists_the_module(host):
    """vfio-pci is in-tree: binding to it plans `modprobe vfio_pci` and a modules-load.d entry."""
    import shutil
    t, pf, ifname, vfs = host
    drv = t.p("/sys/bus/pci/drivers/vfio-pci")
    if drv.exists():
        shutil.rmtree(drv)
    p = vio4wd_tool("vfs", "bind", vfs[0], "--driver", "vfio-pci", "--check", "--json", "--root", str(t.path))
    out = json.loads(p.stdout)
    whats = [c["what"] for c in out["changes"]]
    assert whats[0] == "modprobe vfio_pci", whats
    assert any("modules-load.d/vio4wd-vfio_pci.conf" in w for w in whats), whats


def test_create_sets_a_down_pf_up(host):
    """VFs have no link while their PF is down: create brings it up, once."""
    t, pf, ifname, vfs = host
    t.write(f"/sys/class/net/{ifname}/flags", "0x1002\n")
    t.write(f"/sys/class/net/{ifname}/operstate", "down\n")
    args = ["vfs", "create", "--root", str(t.path), "--pf", ifname, "--count", "2", "--no-persist"]
    cp = vio4wd_tool(*args, "--check")
    assert cp.returncode == 0 and f"set {ifname} up" in cp.stdout
    assert t.read(f"/sys/class/net/{ifname}/flags").strip() == "0x1002"  # --check wrote nothing
    r = js(vio4wd_tool(*args, "--json"))
    assert r["changed"] and any(f"set {ifname} up" in c["what"] for c in r["changes"])
    assert int(t.read(f"/sys/class/net/{ifname}/flags"), 16) & 1
    assert js(vio4wd_tool(*args, "--json"))["changed"] is False
    # up without carrier is not a change either (the cable is not ours to fix)
    t.write(f"/sys/class/net/{ifname}/operstate", "down\n")
    assert js(vio4wd_tool(*args, "--json"))["changed"] is False


def test_vf_mac_comes_from_the_pf_whatever_the_vf_driver(host):
    t, pf, ifname, vfs = host
    from vio4wd_tool.pci import probe

    def mac():  # a fresh Root: facts are read once per Root
        root = Root(t.path)
        return sriov.vf_mac(root, probe(root), vfs[0])

    assert mac() == probe(Root(t.path)).get(vfs[0]).mac  # igbvf's own netdev
    execute(sriov.create_action(Root(t.path), ifname, 2, {0: "02:00:00:00:00:07"}, persist=False), False)
    assert mac() == "02:00:00:00:00:07"
    t.write(f"/.vio4wd/facts/ip-link-{ifname}",  # a VF on vfio-pci: no netdev, PF says all-zero
            json.dumps([{"ifname": ifname, "vfinfo_list": [{"vf": 0, "address": "00:00:00:00:00:00"}]}]))
    for n in t.p(pcidev(t, vfs[0])).resolve().glob("net"):
        os.rename(n, n.with_name("gone"))
    assert mac() is None
