"""`vio4wd-tool`: the command-line entry point. Sub-commands live beside their concern."""
from __future__ import annotations

import argparse
import importlib
import json
import sys

from . import __version__
from .actions import ActionError
from .root import Root

EXIT_USAGE = 2
# modules that add their own sub-commands with register(subparsers): one concern, one module
COMMAND_MODULES: list[str] = ["plan", "grub", "hugepages", "kmod", "sriov", "irq", "vm", "fwdconfig", "fwdctl", "lab"]


class UsageError(Exception):
    """Bad input from the operator: printed without a traceback, exit 2."""


def add_intent_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("intent (default: from /etc/default/virtioforwarder)")
    g.add_argument("--config", default=None, metavar="PATH",
                   help="forwarder config to read the intent from (default /etc/default/virtioforwarder)")
    g.add_argument("--driver", choices=("igb_uio", "vfio-pci"), help="VF driver")
    g.add_argument("--jumbo", action=argparse.BooleanOptionalAction, default=None,
                   help="jumbo frames / TSO (needs 1375 2 MiB pages per worker node instead of 384)")
    g.add_argument("--relays", type=int, help="number of relays")
    g.add_argument("--node", type=int, dest="numa_node", help="NUMA node for workers, VFs and guests")
    g.add_argument("--cpus", help="forwarder worker CPUs (list like 2-3 or 0x mask)")
    g.add_argument("--main-lcore", type=int, help="the forwarder's main lcore")
    g.add_argument("--vf", action="append", default=[], metavar="VF[=RELAY]",
                   help="a VF (PCI address or DPDK devargs), optionally =relay id; repeatable")
    g.add_argument("--huge-dir", help="the forwarder's 2 MiB hugetlbfs mount")
    g.add_argument("--vhost-client", action=argparse.BooleanOptionalAction, default=None,
                   help="forwarder in vhost-user client mode (QEMU is the server)")
    g.add_argument("--guest-1g-pages", type=int, help="1 GiB pages guests need (default: from guest XMLs)")


def intent_from_args(root: Root, args):
    from . import intent as im
    from .cpu import parse_cpulist, parse_mask
    from .pci import PciAddressError, is_pci, normalize_pci

    try:
        it = im.from_config(root, args.config or im.FORWARDER_CONFIG)
    except ValueError as e:  # forwarder.config.ConfigError names the variable
        raise UsageError(str(e)) from e
    for name in ("driver", "jumbo", "relays", "numa_node", "main_lcore", "huge_dir", "vhost_client",
                 "guest_1g_pages"):
        v = getattr(args, name, None)
        if v is not None:
            setattr(it, name, v)
            it.source = "options"
    if getattr(args, "cpus", None):
        try:
            it.workers = parse_mask(args.cpus) if args.cpus.lower().startswith("0x") else parse_cpulist(args.cpus)
        except ValueError as e:
            raise UsageError(f"--cpus: {e}") from e
        it.source = "options"
    for spec in getattr(args, "vf", []) or []:
        dev, sep, rid = spec.rpartition("=")
        if not sep or not rid.isdigit():
            dev, rid = spec, None
        if is_pci(dev):
            dev = normalize_pci(dev)
        elif "," not in dev and not dev.startswith("net_") and ":" in dev:
            raise UsageError(str(PciAddressError(f"bad PCI address {dev!r}: expected dddd:bb:dd.f like 0000:05:10.1")))
        if rid is None:
            it.extra_vfs.append(dev)
        else:
            it.static_vfs[int(rid)] = dev
        it.source = "options"
    return it


def cmd_capture(args) -> int:
    from . import intent as im
    from .host import Host
    from .root import capture

    root = Root(args.root, record=True)
    Host(root).probe_all()
    im.from_config(root)
    copied = capture(root, args.dir)
    if args.json:
        print(json.dumps({"dir": args.dir, "files": copied, "facts": sorted(k for k, v in root.facts.items()
                                                                            if v is not None)}, indent=1))
    else:
        print(f"captured {len(copied)} files and {sum(v is not None for v in root.facts.values())} facts into {args.dir}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vio4wd-tool", description="Prepare and check hosts for the vio4wd "
                                "virtio forwarder, and drive it.")
    p.add_argument("--version", action="version", version=f"vio4wd-tool {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    d = sub.add_parser("doctor", help="preflight checks: find host setup mistakes and name the fix")
    d.add_argument("--root", default="/", help="check a captured tree instead of this host")
    d.add_argument("--json", action="store_true", help="machine-readable output (schema vio4wd.doctor/1)")
    d.add_argument("-q", "--quiet", action="store_true", help="show only warnings and failures")
    d.add_argument("--only", action="append", metavar="CHECK", help="run only checks with this id or prefix")
    add_intent_args(d)
    d.set_defaults(func=lambda a: __import__("vio4wd_tool.doctor", fromlist=["main"]).main(a))

    c = sub.add_parser("capture", help="copy the files the host model reads into DIR (a test fixture)")
    c.add_argument("dir")
    c.add_argument("--root", default="/", help=argparse.SUPPRESS)
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_capture)

    for mod in COMMAND_MODULES:
        m = importlib.import_module(f"vio4wd_tool.{mod}")
        m.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (UsageError, ActionError) as e:
        print(f"vio4wd-tool {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except PermissionError as e:
        print(f"vio4wd-tool {args.command}: {e}: run as root (sudo vio4wd-tool {args.command} ...)",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # the lab's errors (LabError) name their fix; no traceback for them
        if type(e).__name__ != "LabError":
            raise
        print(f"vio4wd-tool {args.command}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
