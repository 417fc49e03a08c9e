"""The OVSDB monitor against a real ovsdb-server (openvswitch-switch) on a private socket."""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from forwarder.config import DEFAULT_ZMQ
from forwarder.control.ovsdb import vf_of
from vio4wd_tool import fwdctl
from vio4wd_tool.fwdctl import Client

from testlib import wait_for

SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")


@pytest.fixture
def ovsdb():
    if not SCHEMA.exists() or not shutil.which("ovsdb-server"):
        pytest.fail("needs openvswitch-switch (ovsdb-server, ovs-vsctl, the vswitch schema)")
    tmp = Path(tempfile.mkdtemp(prefix="vio4wd-ovsdb-"))
    db, sock = tmp / "conf.db", tmp / "db.sock"
    subprocess.run(["ovsdb-tool", "create", str(db), str(SCHEMA)], check=True)
    p = subprocess.Popen(["ovsdb-server", str(db), f"--remote=punix:{sock}",
                          f"--unixctl={tmp / 'ctl'}", "--no-chdir", f"--log-file={tmp / 'log'}",
                          "-vconsole:off"])
    try:
        wait_for(sock.exists, what="ovsdb-server socket")
        vsctl(sock, "init")
        yield sock
    finally:
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def vsctl(sock: Path, *args: str) -> str:
    return subprocess.run(["ovs-vsctl", f"--db=unix:{sock}", "--no-wait", "--timeout=5", *args],
                          check=True, capture_output=True, text=True).stdout


def vf(f, rid: int) -> str:
    r = fwdctl.stats(Client(f.ep["stats"]), [rid]).relay[0]
    return r.vf.pci_addr_str


@pytest.mark.dpdk
def test_interfaces_attach_and_detach_relays(start_fwd, ovsdb):
    vsctl(ovsdb, "add-br", "br0")
    vsctl(ovsdb, "add-port", "br0", "vf2", "--", "set", "Interface", "vf2",
          "external_ids:virtio_forwarder=2", "external_ids:virtio_forwarder_pci=net_null2")
    f = start_fwd(ovsdb_sock=str(ovsdb), zmq_port_control_ep=DEFAULT_ZMQ["port_control"])
    assert "port_control" not in f.hello["endpoints"]           # OVSDB mode: no port control
    wait_for(lambda: vf(f, 2) == "net_null2", what="relay 2 attached from the initial rows")
    # a new interface attaches, its removal detaches
    vsctl(ovsdb, "add-port", "br0", "vf5", "--", "set", "Interface", "vf5",
          "external_ids:virtio_forwarder=5", "external_ids:virtio_forwarder_pci=net_null5")
    wait_for(lambda: vf(f, 5) == "net_null5", what="relay 5 attached")
    vsctl(ovsdb, "del-port", "br0", "vf5")
    wait_for(lambda: vf(f, 5) == "", what="relay 5 detached")
    # losing the key detaches; getting it back attaches again
    vsctl(ovsdb, "remove", "Interface", "vf2", "external_ids", "virtio_forwarder")
    wait_for(lambda: vf(f, 2) == "", what="relay 2 detached")
    vsctl(ovsdb, "set", "Interface", "vf2", "external_ids:virtio_forwarder=3")
    wait_for(lambda: vf(f, 3) == "net_null2", what="relay 3 attached")
    # an interface without a usable VF is ignored; the forwarder keeps forwarding
    vsctl(ovsdb, "add-port", "br0", "eth9", "--", "set", "Interface", "eth9",
          "external_ids:virtio_forwarder=4")
    c0 = fwdctl.stats(Client(f.ep["stats"]), [3]).relay[0].vf_to_vm.pkts_rx_from_vf
    wait_for(lambda: fwdctl.stats(Client(f.ep["stats"]), [3]).relay[0].vf_to_vm
             .pkts_rx_from_vf > c0, what="relay 3 forwarding")
    assert vf(f, 4) == ""


def test_vf_of_rows(tmp_path):
    def row(ext=(), options=(), status=(), name="x"):
        return {"name": name, "external_ids": ["map", list(map(list, ext))],
                "options": ["map", list(map(list, options))],
                "status": ["map", list(map(list, status))]}
    assert vf_of(row()) is None
    assert vf_of(row([("virtio_forwarder", "x1")], [("dpdk-devargs", "0000:05:00.1")])) is None
    assert vf_of(row([("virtio_forwarder", "1")], [("dpdk-devargs", "0000:05:00.1")])) == \
        (1, "0000:05:00.1")
    assert vf_of(row([("virtio_forwarder", "7")], status=[("bus_info", "0000:AF:0A.3")])) == \
        (7, "0000:af:0a.3")
    assert vf_of(row([("virtio_forwarder", "7")], status=[("bus_info", "nfp-something")])) is None
    # any NIC: the netdev's PCI device in sysfs
    net = tmp_path / "net" / "ens1f0v3"
    net.mkdir(parents=True)
    (net / "device").symlink_to("../../../devices/pci0000:00/0000:3b:02.3")
    assert vf_of(row([("virtio_forwarder", "2")], name="ens1f0v3"), str(tmp_path / "net")) == \
        (2, "0000:3b:02.3")
