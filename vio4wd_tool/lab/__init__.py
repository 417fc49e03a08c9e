"""The vio4wd lab: a vhost-user test guest, the cached Debian 12 lab image, lab VMs with an
emulated igb SR-IOV NIC, and fixture captures from them.

``register(subparsers)`` adds the ``lab`` sub-command to an argparse subparsers object; each leaf
parser sets ``func(args) -> int``. ``python -m vio4wd_tool.lab ...`` runs it standalone.
"""

from __future__ import annotations

import argparse
import os
import sys

from .common import LabError


def _image(args) -> int:
    from .image import ensure_image
    print(ensure_image(force=args.force))
    return 0


def _initramfs(args) -> int:
    from .guest import build_initramfs
    kernel, initrd = build_initramfs()
    print(f"{kernel}\n{initrd}")
    return 0


def _up(args) -> int:
    from .vm import HOST_IP, LabVM
    vm = LabVM(args.name, numa_nodes=args.nodes, mem_mb=args.mem, sriov=not args.no_sriov, smp=args.smp)
    vm.start()
    try:
        vm.wait_ssh()
    except BaseException:
        print(f"console of the failed VM:\n{vm.console_log()}", file=sys.stderr)
        vm.stop()
        raise
    print(f"lab VM {vm.cfg.name} is up\n"
          f"  ssh:       vio4wd-tool lab ssh --name {vm.cfg.name}   (or {' '.join(vm.ssh_command())})\n"
          f"  inventory: {vm.inventory}\n"
          f"  PF peer:   ip netns exec {vm.netns} ping <PF address in 10.213.0.0/24>  (host end {HOST_IP})\n"
          f"  teardown:  vio4wd-tool lab down --name {vm.cfg.name}")
    return 0


def _ssh(args) -> int:
    from .vm import LabVM
    vm = LabVM.load(args.name)
    cmd = vm.ssh_command("-t") if not args.command else vm.ssh_command()
    os.execvp(cmd[0], cmd + args.command)


def _down(args) -> int:
    from .common import state_dir
    from .vm import LabVM, running
    if args.all:
        vms = running()
    else:
        try:
            vms = [LabVM.load(args.name)]
        except LabError:
            if not (state_dir() / args.name).exists():
                raise
            vms = [LabVM(args.name)]  # half removed (no vm.json): clean up what is left
    for vm in vms:
        vm.stop()
        print(f"lab VM {vm.cfg.name} removed")
    return 0


def _status(args) -> int:
    from .common import state_dir
    from .vm import running
    vms = running()
    if not vms:
        print("no lab VMs")
    for vm in vms:
        state = f"running pid {vm.pid}" if vm.pid else "stopped (vio4wd-tool lab down to clean up)"
        print(f"{vm.cfg.name}: {state}, ssh 127.0.0.1:{vm.port}, {vm.cfg.numa_nodes} node(s), "
              f"{vm.cfg.mem_mb} MiB, netns {vm.netns if vm.cfg.sriov else '-'}")
    print(f"inventory: {state_dir() / 'inventory.ini'}")
    return 0


def _vm(args) -> int:
    from .vmdemo import run
    return run(args)


def _capture(args) -> int:
    from .capture import capture_fixture
    capture_fixture(args.out, numa_nodes=args.nodes, vfs=args.vfs)
    return 0


def _host(args) -> int:
    from .hostdemo import run
    return run(args)


def register(subparsers) -> argparse.ArgumentParser:
    """Add `lab` and its sub-commands to an argparse subparsers object."""
    lab = subparsers.add_parser("lab", help="lab VMs and test guests (QEMU 10, TCG)",
                                description=__doc__.split("\n\n")[0])
    sub = lab.add_subparsers(dest="lab_command", required=True, metavar="COMMAND")

    p = sub.add_parser("image", help="build (or reuse) the cached Debian 12 lab image")
    p.add_argument("--force", action="store_true", help="rebuild even when the cached image is current")
    p.set_defaults(func=_image)

    p = sub.add_parser("initramfs", help="build (or reuse) the vhost-user test guest's initramfs")
    p.set_defaults(func=_initramfs)

    def name_arg(p):
        p.add_argument("--name", default="lab", help="lab VM name (default: lab)")

    p = sub.add_parser("up", help="boot a lab VM with an igb SR-IOV NIC and wait for SSH")
    name_arg(p)
    p.add_argument("--nodes", type=int, choices=(1, 2), default=1, help="NUMA nodes (default 1)")
    p.add_argument("--mem", type=int, default=2048, help="memory in MiB (default 2048; >= 4096 for 1G pages)")
    p.add_argument("--smp", type=int, default=2, help="vCPUs (default 2)")
    p.add_argument("--no-sriov", action="store_true", help="no igb NIC, no network namespace")
    p.set_defaults(func=_up)

    p = sub.add_parser("ssh", help="SSH into a lab VM (optionally run a command)")
    name_arg(p)
    p.add_argument("command", nargs=argparse.REMAINDER, help="command to run instead of a shell")
    p.set_defaults(func=_ssh)

    p = sub.add_parser("down", help="stop a lab VM and remove its overlay, netns and state")
    name_arg(p)
    p.add_argument("--all", action="store_true", help="every lab VM")
    p.set_defaults(func=_down)

    p = sub.add_parser("status", help="list lab VMs")
    p.set_defaults(func=_status)

    p = sub.add_parser("host", help="host-only lab: forwarder + net_tap VF stand-in + QEMU guest; ping through it")
    p.add_argument("--pings", type=int, default=10, help="pings to send through the forwarder (default 10)")
    p.add_argument("--keep", action="store_true", help="keep it running until Ctrl-C to look around")
    p.add_argument("--down", action="store_true", help="remove a host lab left behind by a crash")
    p.set_defaults(func=_host)

    p = sub.add_parser("vm", help="VM lab: roll out to a lab VM with an igb SR-IOV NIC, ping through the real VF")
    name_arg(p)
    p.add_argument("--pings", type=int, default=10, help="pings to send through PF, VF and forwarder (default 10)")
    p.add_argument("--mem", type=int, default=2048, help="VM memory in MiB (default 2048)")
    p.add_argument("--guest", choices=("echo", "testpmd"), default="echo",
                   help="guest side on relay 1: virtio-forwarder-echo (default) or dpdk-testpmd in icmpecho "
                        "mode (installs dpdk-dev in the VM: minutes under TCG)")
    p.add_argument("--keep", action="store_true", help="leave the VM and the guest side running to look around")
    p.add_argument("--down", action="store_true", help="tear down a VM lab left with --keep (or by a failure)")
    p.set_defaults(func=_vm)

    p = sub.add_parser("capture", help="run `vio4wd-tool capture` in a fresh lab VM with VFs; copy it to OUT")
    p.add_argument("out", help="fixture directory to (re)create, e.g. tests/fixtures/captures/labvm-igb-sriov")
    p.add_argument("--nodes", type=int, choices=(1, 2), default=1, help="NUMA nodes of the VM (default 1)")
    p.add_argument("--vfs", type=int, default=2, help="VFs to create on the igb PF first (default 2)")
    p.set_defaults(func=_capture)
    return lab


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vio4wd_tool.lab")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["lab", *(sys.argv[1:] if argv is None else argv)])
    try:
        return args.func(args)
    except LabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
