"""Doctor checks that need SR-IOV and two NUMA nodes, over the capture of a real lab VM:
two NUMA nodes (CPU 0 on node 0, CPU 1 on node 1), an emulated igb PF (0000:81:00.0, ens1, node 1)
with two VFs (0000:81:10.0 ens1v0, 0000:81:10.2 ens1v1) on igbvf, IOMMU in DMA translation."""
from __future__ import annotations

import json
import os

from test_doctor_checks import worst
from vio4wd_tool.checks import Status

CAP = "labvm-2node"
PF, VF0, VF1 = "0000:81:00.0", "0000:81:10.0", "0000:81:10.2"


def bind(tree, dev, driver):
    """What the kernel shows after a bind: the device's driver link points at the driver."""
    drv = tree.p(f"/sys/bus/pci/drivers/{driver}")
    drv.mkdir(parents=True, exist_ok=True)
    link = tree.p(f"/sys/bus/pci/devices/{dev}").resolve() / "driver"
    link.unlink()
    os.symlink(os.path.relpath(drv, link.parent), link)


def add_address(tree, ifname, addr):
    f = tree.p("/.vio4wd/facts/ip-addr")
    data = json.loads(f.read_text())
    for link in data:
        if link["ifname"] == ifname:
            link.setdefault("addr_info", []).append({"family": "inet", "local": addr, "prefixlen": 24,
                                                     "scope": "global"})
    f.write_text(json.dumps(data))


def test_vf_present_pass(capture_tree):
    t = capture_tree(CAP)
    bind(t, VF0, "igb_uio")
    assert worst(t, "vf.present", static_vfs={1: VF0})[0] is Status.PASS


def test_vf_present_fail_wrong_driver(capture_tree):
    st, res = worst(capture_tree(CAP), "vf.present", static_vfs={1: VF0})
    assert st is Status.FAIL and "bound to igbvf, not igb_uio" in res[0].finding
    assert VF0 in res[0].fix


def test_vf_present_fail_missing(capture_tree):
    st, res = worst(capture_tree(CAP), "vf.present", static_vfs={1: "0000:81:10.6"})
    assert st is Status.FAIL and "does not exist" in res[0].finding


def test_vf_present_vdev_is_skipped(capture_tree):
    st, _ = worst(capture_tree(CAP), "vf.present", static_vfs={1: "net_tap0,iface=vf0"})
    assert st is Status.SKIP


def test_vf_not_in_use_pass(capture_tree):
    assert worst(capture_tree(CAP), "vf.not_in_use", static_vfs={1: VF0, 2: VF1})[0] is Status.PASS


def test_vf_not_in_use_fail(capture_tree):
    t = capture_tree(CAP)
    add_address(t, "ens1v1", "192.0.2.7")
    st, res = worst(t, "vf.not_in_use", static_vfs={1: VF0, 2: VF1})
    assert st is Status.FAIL
    assert [r.status for r in res] == [Status.PASS, Status.FAIL]
    assert "ens1v1 with 192.0.2.7/24" in res[1].finding


def test_vf_not_in_use_fail_route(capture_tree):
    t = capture_tree(CAP)
    t.append("/proc/net/route", "ens1v0\t0002000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n")
    st, res = worst(t, "vf.not_in_use", static_vfs={1: VF0})
    assert st is Status.FAIL and "1 route(s)" in res[0].finding


def test_vf_pf_up_pass(capture_tree):
    assert worst(capture_tree(CAP), "vf.pf_up", static_vfs={1: VF0})[0] is Status.PASS


def test_vf_pf_up_fail(capture_tree):
    t = capture_tree(CAP)
    t.write("/sys/class/net/ens1/operstate", "down\n")
    st, res = worst(t, "vf.pf_up", static_vfs={1: VF0})
    assert st is Status.FAIL and "ip link set ens1 up" in res[0].fix


def test_vf_pf_up_fail_no_carrier(capture_tree):
    t = capture_tree(CAP)
    t.write("/sys/class/net/ens1/flags", "0x1003\n")
    t.write("/sys/class/net/ens1/operstate", "down\n")
    st, res = worst(t, "vf.pf_up", static_vfs={1: VF0})
    assert st is Status.FAIL and "no carrier" in res[0].finding and "cable" in res[0].fix


def test_numa_locality_pass(capture_tree):
    st, res = worst(capture_tree(CAP), "numa.locality", static_vfs={1: VF0}, workers=[1])
    assert st is Status.PASS and "node 1" in res[0].finding


def test_numa_locality_warn(capture_tree):
    st, res = worst(capture_tree(CAP), "numa.locality", static_vfs={1: VF0}, workers=[0])
    assert st is Status.WARN
    assert f"VF {VF0} on node 1" in res[0].finding and "workers on node 0" in res[0].finding


def test_hugepages_2m_fail_explains_split_across_nodes(capture_tree):
    st, res = worst(capture_tree(CAP), "hugepages.2m", workers=[1])
    assert st is Status.FAIL and [r.subject for r in res] == ["node1"]
    assert "split evenly across the 2 nodes" in res[0].finding


def test_iommu_mode_fail_igb_uio_on_translating_vm(capture_tree):
    st, res = worst(capture_tree(CAP), "iommu.mode", driver="igb_uio")
    assert st is Status.FAIL and "DMA translation active in 11 of 11" in res[0].finding
    assert worst(capture_tree(CAP), "iommu.mode", driver="vfio-pci")[0] is Status.PASS


def test_iommu_vendor_comes_from_the_acpi_table(capture_tree):
    """The TCG lab VM reports an AMD CPU but QEMU emulates intel-iommu: the DMAR table decides."""
    from vio4wd_tool.iommu import is_intel

    t = capture_tree(CAP)
    assert t.host().cpu.vendor == "AuthenticAMD" and not is_intel(t.host())
    t.write("/sys/firmware/acpi/tables/DMAR", "DMAR")
    assert is_intel(t.host())
    st, res = worst(t, "iommu.mode", driver="igb_uio")
    assert st is Status.FAIL and "intel_iommu" not in res[0].fix  # igb_uio needs only iommu=pt
    t2 = capture_tree("devbox")  # an Intel CPU, and a firmware that says AMD-Vi
    t2.write("/sys/firmware/acpi/tables/IVRS", "IVRS")
    assert not is_intel(t2.host())
