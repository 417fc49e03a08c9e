"""`vio4wd-tool vm`: QEMU arguments and libvirt XML for a guest of one relay, from the plan.

Rendered with jinja2 from `templates/`: hugepage memory-backend-file with share=on,prealloc=on
and a NUMA node on it (the forwarder maps guest memory), a chardev socket in the mode that pairs
with the forwarder (QEMU is the client when the forwarder serves the socket, and the server in
the forwarder's vhost-client mode), a vhost-user netdev with queues=N, virtio-net-pci with mq=on,
vectors=2N+2, offloads off unless TSO is on, and the VF's MAC; libvirt gets memoryBacking, a
NUMA cell with memAccess='shared', an <interface type='vhostuser'> with <driver queues>, cputune
and numatune from the plan.
"""
from __future__ import annotations

import json
import shlex
from dataclasses import asdict, dataclass

import jinja2

from .actions import ActionError, ActionResult, emit, execute, file_change
from .hugepages import DEFAULT_MOUNTS, SIZE_1G, SIZE_2M, parse_size, size_label
from .root import Root
from .sriov import parse_mac

MAX_QUEUES = 32
DEFAULT_MEMORY_MB = 1024


@dataclass
class VmSpec:
    relay: int
    name: str
    socket: str
    mode: str  # QEMU's side of the socket: 'client' or 'server'
    queues: int
    mac: str
    memory_mb: int
    vcpus: int
    vcpu_pins: list  # host CPU per vCPU ([] = unpinned)
    emulator_cpus: str | None
    host_node: int | None
    page_kb: int
    mem_path: str
    tso: bool


def _env() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.PackageLoader("vio4wd_tool", "templates"),
                              undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True)


def _vars(spec: VmSpec) -> dict:
    return asdict(spec) | {"guest_cpus": "0" if spec.vcpus == 1 else f"0-{spec.vcpus - 1}"}


def render_qemu(spec: VmSpec) -> list[str]:
    """QEMU argv (without the binary): ['-name', 'x', '-m', '1024M', ...]."""
    text = _env().get_template("vm-qemu-args.j2").render(**_vars(spec))
    argv = []
    for line in text.splitlines():
        if line.strip():
            opt, _, val = line.partition(" ")
            argv += [opt, val] if val else [opt]
    return argv


def render_libvirt(spec: VmSpec) -> str:
    return _env().get_template("vm-libvirt.xml.j2").render(**_vars(spec))


def qemu_shell(argv: list[str]) -> str:
    pairs, i = [], 0
    while i < len(argv):
        if i + 1 < len(argv) and not argv[i + 1].startswith("-"):
            pairs.append(f"{argv[i]} {shlex.quote(argv[i + 1])}")
            i += 2
        else:
            pairs.append(argv[i])
            i += 1
    return " \\\n".join(pairs) + "\n"


def _cpu_list(cpus) -> str:
    from .cpu import format_cpulist

    return format_cpulist(cpus)


def build_spec(plan: dict | None, relay: int, *, name=None, socket=None, mode=None, queues=1, mac=None,
               memory=None, vcpus=None, page_size=None, mem_path=None, tso=None, vhost_client=None,
               node=None, notes: list | None = None) -> VmSpec:
    """Merge plan and options into a validated spec; errors name the bad value and the fix."""
    from .intent import Intent

    notes = notes if notes is not None else []
    plan = plan or {}
    if relay < 0:
        raise ActionError(f"--relay {relay}: relay ids are >= 0")
    rel = next((r for r in plan.get("relays", []) if int(r.get("id", -1)) == relay), None)
    if plan and rel is None:
        ids = ", ".join(str(r.get("id")) for r in plan.get("relays", [])) or "none"
        raise ActionError(f"--relay {relay}: the plan has no such relay (relays: {ids}); re-run vio4wd-tool "
                          "plan --relays N")
    rel = rel or {}
    if not 1 <= queues <= MAX_QUEUES:
        raise ActionError(f"--queues {queues}: give 1..{MAX_QUEUES} (vhost-user queue pairs)")
    client = plan.get("vhost_client", False) if vhost_client is None else vhost_client
    qmode = mode or ("server" if client else "client")
    if qmode not in ("client", "server"):
        raise ActionError(f"--mode {qmode}: QEMU's socket side is client or server")
    if mode and mode != ("server" if client else "client"):
        notes.append(f"QEMU as vhost-user {mode} pairs with the forwarder in "
                     f"{'client' if mode == 'server' else 'server'} mode: check VIRTIOFWD_VHOST_CLIENT")
    sock = socket or rel.get("socket") or Intent().socket_path(relay)
    if not sock.startswith("/") or any(c in sock for c in "'\"<>&,\n"):
        raise ActionError(f"--socket {sock!r}: give an absolute path without quotes, commas or markup")
    mac = mac or rel.get("mac")
    if mac:
        mac = parse_mac(mac)
    else:
        mac = f"52:54:00:fc:{relay >> 8 & 0xff:02x}:{relay & 0xff:02x}"
        notes.append(f"no VF MAC known for relay {relay}: using {mac}; give --mac (the VF's MAC) so the "
                     "guest's MAC matches what the VF accepts")
    if memory is not None:
        try:
            mem_kb = parse_size(memory) if not str(memory).isdigit() else int(memory) * 1024
        except ValueError as e:
            raise ActionError(f"--memory {memory!r}: {e}; give e.g. 2G or 2048M") from None
        memory_mb = mem_kb // 1024
    else:
        memory_mb = int(rel.get("guest_mem_mb") or DEFAULT_MEMORY_MB)
    if node is None:
        node = rel.get("node", plan.get("node"))
    node = int(node) if node is not None else None
    if node is not None and node < 0:
        raise ActionError(f"--node {node}: NUMA nodes are numbered from 0")
    if page_size:
        try:
            page_kb = parse_size(page_size)
        except ValueError as e:
            raise ActionError(f"--page-size {page_size!r}: {e}") from None
        if page_kb not in (SIZE_2M, SIZE_1G):
            raise ActionError(f"--page-size {page_size}: give 2M or 1G")
    else:
        g1 = plan.get("hugepages_1g") or {}
        page_kb = SIZE_1G if node is not None and int(g1.get(str(node), 0) or 0) > 0 else SIZE_2M
    if memory_mb <= 0 or (memory_mb * 1024) % page_kb:
        raise ActionError(f"guest memory {memory_mb} MiB is not a multiple of the {size_label(page_kb)} page "
                          "size: give --memory in whole pages")
    pins = list(rel.get("vcpus") or [])
    n = vcpus if vcpus is not None else (len(pins) or 1)
    if n < 1:
        raise ActionError(f"--vcpus {n}: give at least 1")
    if pins and len(pins) != n:
        pins = (pins * n)[:n]
    if queues > n:
        notes.append(f"{queues} queue pairs on {n} vCPU(s): the guest can use at most {n} (ethtool -L eth0 combined {n})")
    house = plan.get("housekeeping") or []
    path = mem_path or (plan.get("huge_dir") if page_kb == SIZE_2M and plan.get("huge_dir") else DEFAULT_MOUNTS[page_kb])
    return VmSpec(relay=relay, name=name or f"vio4wd-relay{relay}", socket=sock, mode=qmode, queues=queues, mac=mac,
                  memory_mb=memory_mb, vcpus=n, vcpu_pins=pins, emulator_cpus=_cpu_list(house) if house else None,
                  host_node=node, page_kb=page_kb, mem_path=path,
                  tso=bool(plan.get("jumbo")) if tso is None else tso)


def register(sub) -> None:
    p = sub.add_parser("vm", help="QEMU args / libvirt XML for a relay's guest",
                       description="Render QEMU arguments (--qemu, default) or libvirt domain XML (--libvirt) "
                       "for the guest of relay N, from the plan file and options.")
    p.add_argument("--relay", type=int, required=True, help="relay id (the N of the socket name)")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--qemu", dest="format", action="store_const", const="qemu", help="QEMU arguments (default)")
    fmt.add_argument("--libvirt", dest="format", action="store_const", const="libvirt", help="libvirt domain XML")
    p.add_argument("--plan", metavar="PATH", help="plan file (default /etc/vio4wd/plan.json when it exists)")
    p.add_argument("--root", default="/", help="read the default plan from a captured tree")
    p.add_argument("--name", help="guest name (default vio4wd-relayN)")
    p.add_argument("--socket", help="vhost-user socket (default: the plan's, else the forwarder's pattern)")
    p.add_argument("--mode", choices=("client", "server"), help="QEMU's socket side (default: pairs with the "
                   "forwarder: client, or server when the forwarder is a vhost-user client)")
    p.add_argument("--vhost-client", action="store_true", default=None,
                   help="the forwarder runs in vhost-user client mode (QEMU serves the socket)")
    p.add_argument("--node", type=int, help="host NUMA node for guest memory (default: the relay's in the plan)")
    p.add_argument("--queues", type=int, default=1, help="queue pairs (1..32)")
    p.add_argument("--mac", help="guest MAC (default: the relay's VF MAC from the plan)")
    p.add_argument("--memory", help="guest memory, e.g. 2G (default: the plan's, else 1G)")
    p.add_argument("--vcpus", type=int, help="vCPUs (default: the plan's pinned vCPUs, else 1)")
    p.add_argument("--page-size", help="2M or 1G (default 1G when the plan reserves 1 GiB pages)")
    p.add_argument("--mem-path", help="hugetlbfs mount for QEMU's memory-backend-file")
    p.add_argument("--tso", action=__import__("argparse").BooleanOptionalAction, default=None,
                   help="keep csum/gso/tso offloads (default: on only with the plan's jumbo/TSO)")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE (diffed, atomic) instead of stdout")
    p.add_argument("--check", action="store_true", help="with --output: show the diff, write nothing")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_vm)


def cmd_vm(args) -> int:
    import os
    from .hugepages import DEFAULT_PLAN, load_plan_file

    root = Root(args.root)
    if args.plan:
        plan = load_plan_file(args.plan)
    elif os.path.exists(root.path(DEFAULT_PLAN)):
        plan = load_plan_file(DEFAULT_PLAN, root)
    else:
        plan = None
    notes: list[str] = [] if plan else [f"no plan ({DEFAULT_PLAN}): defaults and options only, no pinning"]
    mac = args.mac
    if mac is None and plan:
        from .pci import is_pci, normalize_pci, probe as probe_pci
        from .sriov import vf_mac
        vf = next((r.get("vf") for r in plan.get("relays", []) if r.get("id") == args.relay), None)
        if vf and is_pci(vf):
            mac = vf_mac(root, probe_pci(root), normalize_pci(vf))
    spec = build_spec(plan, args.relay, name=args.name, socket=args.socket, mode=args.mode, queues=args.queues,
                      mac=mac, memory=args.memory, vcpus=args.vcpus, page_size=args.page_size,
                      mem_path=args.mem_path, tso=args.tso, vhost_client=args.vhost_client, node=args.node,
                      notes=notes)
    fmt = args.format or "qemu"
    argv = render_qemu(spec)
    xml = render_libvirt(spec)
    text = qemu_shell(argv) if fmt == "qemu" else xml
    if args.output:
        out = Root("/")
        res = ActionResult("vm", notes=notes)
        c = file_change(out, os.path.abspath(args.output), text)
        if c:
            res.changes.append(c)
        res.data = {"spec": asdict(spec), "qemu_args": argv, "libvirt_xml": xml, "format": fmt}
        return emit(execute(res, args.check), args.json)
    if args.json:
        print(json.dumps({"schema": "vio4wd.vm/1", "spec": asdict(spec), "qemu_args": argv, "libvirt_xml": xml,
                          "notes": notes}, indent=2))
    else:
        import sys
        for n in notes:
            print(f"vm: {n}", file=sys.stderr)
        print(text, end="")
    return 0
