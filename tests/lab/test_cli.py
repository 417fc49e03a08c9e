"""Fast checks of the lab's CLI wiring and command lines (no VM is booted)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from vio4wd_tool import lab
from vio4wd_tool.lab.common import debian_kernel
from vio4wd_tool.lab.guest import GUEST_MODULES, VhostGuest, _module_order
from vio4wd_tool.lab.vm import LabVM


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    lab.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(list(argv))


def test_register_adds_lab_subcommands():
    args = parse("lab", "up", "--name", "m1", "--nodes", "2", "--mem", "4096")
    assert (args.name, args.nodes, args.mem, args.func) == ("m1", 2, 4096, lab._up)
    assert parse("lab", "down", "--all").func is lab._down
    assert parse("lab", "capture", "--nodes", "2", "out").out == "out"
    assert parse("lab", "ssh", "--name", "x", "uname", "-r").command == ["uname", "-r"]


def test_python_m_runs():
    out = subprocess.run([sys.executable, "-m", "vio4wd_tool.lab", "--help"], capture_output=True, text=True,
                         cwd=Path(__file__).parents[2])
    assert out.returncode == 0 and "capture" in out.stdout


def test_two_node_vm_puts_the_nic_on_node1(tmp_path, monkeypatch):
    monkeypatch.setenv("VIO4WD_LAB_STATE", str(tmp_path / "state"))
    monkeypatch.setenv("VIO4WD_LAB_CACHE", str(tmp_path / "cache"))
    cmd = " ".join(LabVM("n2", numa_nodes=2, mem_mb=4096).qemu_command(tmp_path / "disk.qcow2"))
    assert "node,nodeid=0,cpus=0-0,memdev=m0" in cmd and "node,nodeid=1,cpus=1-1,memdev=m1" in cmd
    assert "memory-backend-ram,id=m1,size=2048M" in cmd
    assert "pxb-pcie,id=pxb1,bus_nr=128,numa_node=1" in cmd and "igb,bus=rp1,netdev=pf0" in cmd
    with pytest.raises(ValueError):
        LabVM("much-too-long-name")


def test_guest_command_line(tmp_path):
    guest = VhostGuest(tmp_path / "vu.sock", server=True, queues=4, hugepage_dir="/mnt/huge")
    guest._workdir = tmp_path
    cmd = " ".join(guest.qemu_command(Path("/boot/vmlinuz"), Path("/tmp/initrd")))
    assert f"socket,id=vu0,path={tmp_path}/vu.sock,server=on,wait=off" in cmd
    assert "vhost-user,id=n0,chardev=vu0,queues=4" in cmd and "mq=on,vectors=10" in cmd
    assert "memory-backend-file,id=mem,size=256M,mem-path=/mnt/huge,share=on" in cmd


@pytest.mark.skipif(not list(Path("/boot").glob("vmlinuz-*")), reason="no Debian kernel: apt-get install linux-image-amd64")
def test_guest_modules_load_dependencies_first():
    _, _, moddir = debian_kernel()
    order = [Path(p).name.split(".ko")[0] for p in _module_order(moddir, GUEST_MODULES)]
    assert order.index("virtio") < order.index("virtio_pci") and order.index("failover") < order.index("virtio_net")
    assert set(GUEST_MODULES) <= set(order)


def test_lab_down_cleans_a_half_removed_vm_and_names_unknown_ones(tmp_path):
    """A VM dir with reports (subdirectories) and no vm.json: `lab down` removes what is left; an
    unknown name is a one-line error, not a traceback."""
    import os
    env = {**os.environ, "VIO4WD_LAB_STATE": str(tmp_path)}
    (tmp_path / "half" / "doctor-before").mkdir(parents=True)
    (tmp_path / "half" / "doctor-before" / "fleet-doctor.txt").write_text("HOST\n")
    (tmp_path / "half" / "site.log").write_text("log\n")
    exe = Path(sys.executable).parent / "vio4wd-tool"
    p = subprocess.run([str(exe), "lab", "down", "--name", "half"], capture_output=True, text=True, env=env)
    assert p.returncode == 0 and "lab VM half removed" in p.stdout, p.stderr
    assert not (tmp_path / "half").exists()
    p = subprocess.run([str(exe), "lab", "down", "--name", "nosuch"], capture_output=True, text=True, env=env)
    assert p.returncode == 1 and "no lab VM named 'nosuch'" in p.stderr and "Traceback" not in p.stderr


def test_lab_vm_parser():
    args = parse("lab", "vm", "--name", "x1", "--pings", "3", "--keep")
    assert (args.name, args.pings, args.keep, args.down, args.mem) == ("x1", 3, True, False, 2048)
