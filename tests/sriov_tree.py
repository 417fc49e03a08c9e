"""An SR-IOV host tree for tests: the lab VM's capture (emulated igb, 2 VFs) when it exists, else
the devbox capture with an igb PF and its VFs laid out the way sysfs shows them."""
from __future__ import annotations

import json
import os

from testlib import CAPTURES

LAB = "labvm-igb-sriov"


def _link(tree, hostpath: str, target: str) -> None:
    p = tree.p(hostpath)
    p.parent.mkdir(parents=True, exist_ok=True)
    if os.path.lexists(p):
        p.unlink()
    os.symlink(os.path.relpath(tree.p(target), p.parent), p)


def _files(tree, base: str, **files) -> None:
    for k, v in files.items():
        tree.write(f"{base}/{k}", f"{v}\n")


def add_sriov_pf(tree, pf="0000:05:00.0", ifname="ens4", vfs=2, total=7, mac="52:54:00:12:34:56",
                 node=0, pf_driver="igb", vf_driver="igbvf"):
    """Lay out a PF with `vfs` VFs (VF i at 0000:05:10.(2i)) below the tree's /sys."""
    bus = pf.split(":")[1]
    root = "/sys/devices/pci0000:00/0000:00:02.0"
    for d in ("igb", "igbvf", "igb_uio", "vfio-pci"):
        _files(tree, f"/sys/bus/pci/drivers/{d}", bind="", unbind="", new_id="")
    tree.write("/sys/bus/pci/drivers_probe", "")
    dev = f"{root}/{pf}"
    _files(tree, dev, **{"class": "0x020000", "vendor": "0x8086", "device": "0x10c9", "numa_node": node,
                         "driver_override": "(null)", "sriov_totalvfs": total, "sriov_numvfs": vfs})
    _link(tree, f"{dev}/driver", f"/sys/bus/pci/drivers/{pf_driver}")
    _link(tree, f"/sys/bus/pci/devices/{pf}", dev)
    _files(tree, f"{dev}/net/{ifname}", address=mac, operstate="up")
    _link(tree, f"/sys/class/net/{ifname}", f"{dev}/net/{ifname}")
    addrs = []
    for i in range(vfs):
        a = f"0000:{bus}:10.{2 * i}"
        addrs.append(a)
        vd = f"{root}/{a}"
        _files(tree, vd, **{"class": "0x020000", "vendor": "0x8086", "device": "0x10ca", "numa_node": node,
                            "driver_override": "(null)"})
        _link(tree, f"{vd}/physfn", dev)
        _link(tree, f"{dev}/virtfn{i}", vd)
        _link(tree, f"{vd}/driver", f"/sys/bus/pci/drivers/{vf_driver}")
        _link(tree, f"{vd}/iommu_group", f"/sys/kernel/iommu_groups/{10 + i}")
        tree.p(f"/sys/kernel/iommu_groups/{10 + i}").mkdir(parents=True, exist_ok=True)
        _link(tree, f"/sys/bus/pci/devices/{a}", vd)
        vif = f"{ifname}v{i}"
        _files(tree, f"{vd}/net/{vif}", address=f"da:{i:02x}:00:00:00:01", operstate="up")
        _link(tree, f"/sys/class/net/{vif}", f"{vd}/net/{vif}")
    tree.fact(f"ip-link-{ifname}", json.dumps([{"ifname": ifname, "vfinfo_list": [
        {"vf": i, "address": "00:00:00:00:00:00", "spoofchk": True, "trust": False} for i in range(vfs)]}]))
    return pf, ifname, addrs


def sriov_tree(capture_tree):
    """(tree, pf address, pf ifname, [VF addresses]) of a host with 2 VFs on an igb PF."""
    if (CAPTURES / LAB).is_dir():
        t = capture_tree(LAB)
        h = t.host()
        pfs = [d for d in h.pci.devices.values() if d.is_pf and d.virtfns]
        if pfs:
            pf = pfs[0]
            for d in ("igb_uio", "vfio-pci", pf.driver or "igb"):
                _files(t, f"/sys/bus/pci/drivers/{d}", bind="", unbind="")
            for v in pf.virtfns:
                dv = h.pci.get(v)
                if dv and dv.driver:
                    _files(t, f"/sys/bus/pci/drivers/{dv.driver}", bind="", unbind="")
            if not t.p("/sys/bus/pci/drivers_probe").exists():
                t.write("/sys/bus/pci/drivers_probe", "")
            return t, pf.addr, pf.net[0].name if pf.net else None, list(pf.virtfns)
    t = capture_tree("devbox")
    pf, ifname, vfs = add_sriov_pf(t)
    return t, pf, ifname, vfs


def add_address(t, ifname, cidr):
    data = json.loads(t.read("/.vio4wd/facts/ip-addr"))
    ip, plen = cidr.split("/")
    data.append({"ifname": ifname, "addr_info": [{"family": "inet", "local": ip, "prefixlen": int(plen),
                                                  "scope": "global"}]})
    t.fact("ip-addr", json.dumps(data))
