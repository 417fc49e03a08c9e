"""The per-host NUMA plan: worker CPUs, isolation, IRQs, hugepages, vCPU and relay pins.

`vio4wd-tool plan` computes the plan from the host model and the operator's intent and saves it
(atomically, `--check` shows the diff) to `/etc/vio4wd/plan.json`; `grub`, `pin`, `config`,
`hugepages`, `vm` and the Ansible roles read it back with `load_plan()`.

Schema "vio4wd.plan/1" (extra keys may be added, never removed or retyped):
  {"schema", "node", "driver", "jumbo", "workers": [cpu..], "main_lcore", "housekeeping": [..],
   "isolcpus": "2-3", "nohz_full": "..", "rcu_nocbs": "..", "irq_affinity": [cpus IRQs may use],
   "irqbalance_banned": [..], "hugepages_2m": {"<node>": pages}, "hugepages_1g": {"<node>": pages},
   "relays": [{"id", "vf", "vf2vm_cpu", "vm2vf_cpu", "socket", "vcpus": [..], "node", "guest_mem_mb"}],
   "cpu_mask": "0x..", "kernel_args": ["default_hugepagesz=2M", ...],
   extra: "nodes", "idle_siblings", "worker_load", "huge_dir", "vhost_client"}
The file holds decisions only, so re-planning an unchanged host rewrites nothing: the computed
"notes" (which may mention transient state, e.g. VFs not created yet) are reported, not saved, and
a VF's MAC is live state (`vio4wd-tool vfs status`, `sriov.vf_mac`), read when `vm` renders a guest.

Rules: workers sit on the VF's NUMA node (VF node from the PCI model, a PF's node, or --node),
never on CPU 0 (nor CPU 0's core); one thread per physical core works, its hyperthread siblings
stay idle (isolated too); housekeeping is every other CPU and carries the main lcore and all
IRQs.  Relay directions are balanced over the workers like the original's balancer (VF->VM
weighs 12, VM->VF 10).
"""
from __future__ import annotations

import json
import math
import re

from .actions import ActionError, ActionResult, emit, execute, file_change, require_root
from .cpu import format_cpulist, format_mask, parse_cpulist, parse_mask
from .hugepages import NEED_2M_JUMBO, NEED_2M_PLAIN, SIZE_1G, SIZE_2M, parse_size
from .iommu import iommu_args, is_intel
from .pci import PciAddressError, is_pci, normalize_pci
from .placement import vf_nodes
from .root import Root

SCHEMA = "vio4wd.plan/1"
DEFAULT_PLAN = "/etc/vio4wd/plan.json"
VF2VM_WEIGHT = 12  # the original's balancer: a VF->VM direction costs a bit more than VM->VF
VM2VF_WEIGHT = 10
HUGE_WARN = 0.6  # fraction of a node's memory in hugepages that earns a note
HUGE_MAX = 0.9  # ... and that is refused
NODE_HUGEPAGES_KERNEL = (5, 13)  # hugepages=<node>:<n>,... on the kernel command line


# ------------------------------------------------------------------ reading the plan

def load_plan(path: str = DEFAULT_PLAN, root: Root | None = None) -> dict:
    """The saved plan; `path` is a host path inside `root` when one is given.

    Raises ActionError naming the fix when the file is missing or not a vio4wd plan."""
    real = root.path(path) if root is not None else path
    try:
        with open(real) as f:
            text = f.read()
    except FileNotFoundError:
        raise ActionError(f"no plan at {path}: run vio4wd-tool plan first "
                          "(or point --plan at the plan file)") from None
    except OSError as e:
        raise ActionError(f"cannot read the plan {path}: {e.strerror}") from None
    try:
        plan = json.loads(text)
    except ValueError as e:
        raise ActionError(f"{path} is not valid JSON ({e}): re-run vio4wd-tool plan") from None
    if not isinstance(plan, dict) or plan.get("schema") != SCHEMA:
        raise ActionError(f"{path} is not a {SCHEMA} plan: re-run vio4wd-tool plan")
    return plan


def dump_plan(plan: dict) -> str:
    """The plan file's text: the decisions, without the reported notes."""
    return json.dumps({k: v for k, v in plan.items() if k != "notes"}, indent=2) + "\n"


# ------------------------------------------------------------------ computing it

def _release(text: str) -> tuple[int, int]:
    m = re.match(r"(\d+)\.(\d+)", text or "")
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def balance(relay_ids: list[int], workers: list[int]) -> tuple[dict[int, tuple[int, int]], dict[int, int]]:
    """Relay -> (VF->VM CPU, VM->VF CPU) by greedy least-load placement, heaviest first.

    Each direction goes to the least-loaded worker (lowest CPU on ties); a relay's second
    direction avoids the CPU of its first when another worker is equally free."""
    load = {c: 0 for c in workers}
    pins: dict[int, list[int]] = {}
    items = [(VF2VM_WEIGHT, r, 0) for r in relay_ids] + [(VM2VF_WEIGHT, r, 1) for r in relay_ids]
    items.sort(key=lambda x: (-x[0], x[1]))
    for w, r, d in items:
        taken = pins.get(r, [])
        cpu = min(workers, key=lambda c: (load[c], c in taken, c))
        load[cpu] += w
        pins.setdefault(r, []).append(cpu)
    return {r: (p[0], p[1]) for r, p in pins.items()}, load


def _choose_node(host, intent, pfs: list[str], notes: list[str]) -> tuple[int, dict[str, int]]:
    nodes = sorted(host.cpu.nodes)
    vfn = vf_nodes(host, intent)
    for spec in intent.vfs:
        if is_pci(spec) and normalize_pci(spec) not in vfn:
            notes.append(f"VF {spec} does not exist yet (create VFs first): its NUMA node is unknown")
    pf_nodes = {}
    for pf in pfs:
        dev = _find_pf(host, pf)
        pf_nodes[dev.addr] = dev.numa_node
    if intent.numa_node is not None:
        if intent.numa_node not in host.cpu.nodes:
            raise ActionError(f"--node {intent.numa_node}: no such NUMA node (this host has node(s) "
                              f"{format_cpulist(nodes)}): pick one of them")
        off = sorted(a for a, n in {**vfn, **pf_nodes}.items() if n != intent.numa_node)
        if off:
            notes.append(f"device(s) {', '.join(off)} sit on another node than --node {intent.numa_node}: "
                         "their packets cross the NUMA interconnect")
        return intent.numa_node, vfn
    seen = list(vfn.values()) + list(pf_nodes.values())
    if seen:
        node = max(sorted(set(seen)), key=seen.count)
        if len(set(seen)) > 1:
            notes.append(f"VFs/PFs span NUMA nodes {format_cpulist(set(seen))}: workers go on node {node} "
                         "(most devices); relays of the others cross the interconnect")
        return node, vfn
    if len(nodes) > 1:
        raise ActionError(f"this host has {len(nodes)} NUMA nodes and no existing VF or PF tells which one "
                          "the NIC is on: give --vf ADDR / --pf IFACE of an existing device, or --node N")
    return nodes[0], vfn


def _find_pf(host, spec: str):
    if is_pci(spec):
        dev = host.pci.get(normalize_pci(spec))
    elif ":" in spec:
        raise ActionError(str(PciAddressError(f"--pf {spec!r}: bad PCI address: expected dddd:bb:dd.f "
                                              "like 0000:05:00.0, or an interface name")))
    else:
        dev = host.pci.by_ifname(spec)
    if dev is None:
        raise ActionError(f"--pf {spec}: no such PCI device or interface on this host "
                          "(see ip link / lspci -D)")
    return dev


def compute(host, intent, *, pfs: list[str] = (), cpus: list[int] | None = None, main_lcore: int | None = None,
            nworkers: int | None = None, guest_mem_kb: list[int] = (), guest_vcpus: int = 1) -> dict:
    """The plan (a JSON-able dict) for `host` and `intent`; raises ActionError on bad input."""
    notes: list[str] = []
    cpu = host.cpu
    online = sorted(cpu.online)
    all_nodes = sorted(cpu.nodes)
    if nworkers is not None and nworkers < 1:
        raise ActionError(f"--workers {nworkers}: need at least 1 worker CPU")
    if guest_vcpus < 1:
        raise ActionError(f"--guest-vcpus {guest_vcpus}: a guest needs at least 1 vCPU")
    if intent.relays is not None and not 1 <= intent.relays <= 64:
        raise ActionError(f"--relays {intent.relays}: expected 1..64 relays")
    node, vfn = _choose_node(host, intent, list(pfs), notes)

    # --- relays and their VFs
    ids = dict(sorted(intent.static_vfs.items()))
    free_id = (lambda used: next(i for i in range(1, 65) if i not in used))
    for spec in intent.extra_vfs:
        ids[free_id(ids)] = spec
    pf_vfs = []
    for pf in pfs:
        pf_vfs += _find_pf(host, pf).virtfns
    nrelays = intent.relays or len(ids) or len(pf_vfs) or 1
    if not intent.relays and not ids and not pf_vfs:
        notes.append("no relay count, VF or PF given: planning 1 relay (use --relays N / --vf ADDR=ID)")
    if ids and len(ids) > nrelays:
        raise ActionError(f"--relays {nrelays} but {len(ids)} VFs are configured: raise --relays or drop VFs")
    for vf in pf_vfs:
        if len(ids) >= nrelays:
            break
        if vf not in ids.values():
            ids[free_id(ids)] = vf
    while len(ids) < nrelays:
        ids[free_id(ids)] = None
    relay_ids = sorted(ids)

    # --- workers
    sib = {c: sorted(set(cpu.cpus[c].siblings) | {c}) for c in cpu.cpus}
    if cpus is not None:
        bad = [c for c in cpus if c not in cpu.cpus]
        if bad:
            raise ActionError(f"--cpus: CPU(s) {format_cpulist(bad)} do not exist (this host has "
                              f"{format_cpulist(cpu.cpus)}): choose from them, or leave --cpus out")
        off = [c for c in cpus if c not in online]
        if off:
            raise ActionError(f"--cpus: CPU(s) {format_cpulist(off)} are offline: bring them online "
                              "(echo 1 > /sys/devices/system/cpu/cpuN/online) or choose others")
        if 0 in cpus:
            raise ActionError("--cpus: CPU 0 cannot be a worker (it carries timers and boot-time IRQs "
                              "that cannot be moved): choose others")
        if main_lcore is not None and main_lcore in cpus:
            raise ActionError(f"--main-lcore {main_lcore} is one of --cpus: the main lcore belongs on a "
                              "housekeeping CPU")
        workers = sorted(cpus)
        wnodes = {cpu.node_of(c) for c in workers}
        if wnodes != {node}:
            notes.append(f"--cpus {format_cpulist(workers)} lie on node(s) {format_cpulist(wnodes)}, not on "
                         f"the VF's node {node}: expect cross-node traffic")
        shared = sorted({c for w in workers for c in sib[w] if c != w and c in workers})
        if shared:
            notes.append(f"--cpus include hyperthread siblings {format_cpulist(shared)}: those workers share "
                         "a core")
    else:
        want = nworkers or min(len(relay_ids), 64)
        busy = {0} | set(sib.get(0, [0]))
        if main_lcore is not None:
            busy |= set(sib.get(main_lcore, [main_lcore]))
        cores = []
        for c in sorted(cpu.nodes.get(node, [])):
            if c not in online or c in busy:
                continue
            core = tuple(sib[c])
            if core not in cores:
                cores.append(core)
        limit = len(cores)
        if limit == 0:
            raise ActionError(f"node {node} has no CPU left for a worker (online: "
                              f"{format_cpulist(cpu.nodes.get(node, []))}; CPU 0 and its core stay "
                              "housekeeping): choose another --node or give --cpus")
        # take cores from the top: low CPUs keep the housekeeping work
        chosen = sorted(cores, key=lambda core: core[0])[-min(want, limit):]
        workers = sorted(core[0] for core in chosen)
        if want > limit:
            notes.append(f"cannot satisfy {want} worker CPU(s) on node {node}: only {limit} free physical "
                         f"core(s) besides CPU 0's; {len(relay_ids)} relay(s) share worker(s) "
                         f"{format_cpulist(workers)}")
    idle = sorted({s for w in workers for s in sib[w] if s not in workers and s != 0 and s in online})
    if main_lcore is not None and main_lcore in idle:
        idle.remove(main_lcore)
        notes.append(f"--main-lcore {main_lcore} is a worker's hyperthread sibling: that worker shares its core")
    isolated = sorted(set(workers) | set(idle))
    housekeeping = [c for c in online if c not in isolated]
    if not housekeeping:
        raise ActionError("no housekeeping CPU left: leave at least one CPU (CPU 0) out of --cpus")

    # --- main lcore
    if main_lcore is not None:
        if main_lcore not in cpu.cpus or main_lcore not in online:
            raise ActionError(f"--main-lcore {main_lcore}: no such online CPU (online: {format_cpulist(online)})")
        main = main_lcore
    else:
        local = [c for c in housekeeping if cpu.node_of(c) == node]
        # on the workers' node if possible; CPU 0 (timers, unmovable IRQs) last
        main = next((c for c in local if c != 0), None)
        if main is None:
            main = next((c for c in housekeeping if c != 0), housekeeping[0])
    if len(housekeeping) == 1:
        notes.append(f"only CPU {housekeeping[0]} is left for housekeeping: the main lcore, all IRQs, the "
                     "host and any guest vCPUs share it; a bigger host (or VM) gives a cleaner split")

    # --- relay pins
    pins, load = balance(relay_ids, workers)
    if len(workers) == 1:
        notes.append(f"a single worker CPU {workers[0]} polls both directions of all {len(relay_ids)} "
                     f"relay(s) (load {load[workers[0]]}); more physical cores on node {node} spread them")

    # --- guests: memory (1 GiB pages) and vCPUs
    if guest_mem_kb:
        if len(guest_mem_kb) not in (1, len(relay_ids)):
            raise ActionError(f"--guest-mem given {len(guest_mem_kb)} times for {len(relay_ids)} relays: give "
                              "it once (every guest) or once per relay")
        per_guest = guest_mem_kb * len(relay_ids) if len(guest_mem_kb) == 1 else list(guest_mem_kb)
        pages_1g = sum(math.ceil(kb / SIZE_1G) for kb in per_guest)
    else:
        per_guest = [None] * len(relay_ids)
        pages_1g = intent.guest_1g_pages or 0
    if pages_1g and "pdpe1gb" not in cpu.flags and cpu.flags:
        notes.append("this CPU lacks pdpe1gb: no 1 GiB pages; guests must use 2 MiB pages "
                     "(reserve them with vio4wd-tool hugepages)")
        pages_1g = 0
    local = [c for c in housekeeping if cpu.node_of(c) == node]
    vcpu_pool = [c for c in local if c not in (0, main)]
    if not vcpu_pool:
        vcpu_pool = ([c for c in local if c != main] or [c for c in housekeeping if c not in (0, main)]
                     or [c for c in housekeeping if c != main] or housekeeping)
        notes.append(f"no CPU on node {node} is free of workers, CPU 0 and the main lcore: guest vCPUs "
                     f"are suggested on {format_cpulist(vcpu_pool)}"
                     + ("" if all(cpu.node_of(c) == node for c in vcpu_pool) else " (another node: guest "
                        "memory and packets cross the interconnect)"))
    need_vcpus = guest_vcpus * len(relay_ids)
    if need_vcpus > len(vcpu_pool):
        notes.append(f"{need_vcpus} guest vCPU(s) wanted but only {len(vcpu_pool)} suitable CPU(s) on node "
                     f"{node} ({format_cpulist(vcpu_pool)}): vCPUs share CPUs")
    vcpus = {r: [vcpu_pool[(i * guest_vcpus + k) % len(vcpu_pool)] for k in range(guest_vcpus)]
             for i, r in enumerate(relay_ids)}

    # --- hugepages
    need2m = NEED_2M_JUMBO if intent.jumbo else NEED_2M_PLAIN
    wnodes = sorted({cpu.node_of(c) for c in workers})
    huge2 = {str(n): need2m for n in wnodes}
    huge1 = {str(node): pages_1g} if pages_1g else {}
    mem = host.huge.node_mem_kb or {all_nodes[0]: host.huge.mem_total_kb}
    for n in sorted(set(wnodes) | ({node} if pages_1g else set())):
        kb = huge2.get(str(n), 0) * SIZE_2M + huge1.get(str(n), 0) * SIZE_1G
        have = mem.get(n) or (host.huge.mem_total_kb // max(len(all_nodes), 1))
        if have and kb > HUGE_MAX * have:
            raise ActionError(f"node {n} would hold {kb // 1024} MiB of hugepages but has {have // 1024} MiB of "
                              f"memory: reduce --guest-mem (or use --no-jumbo: {NEED_2M_PLAIN} instead of "
                              f"{NEED_2M_JUMBO} 2 MiB pages)")
        if have and kb > HUGE_WARN * have:
            notes.append(f"node {n}: {kb // 1024} MiB of {have // 1024} MiB go to hugepages")
    multi = len(all_nodes) > 1
    node_syntax = multi and _release(host.kernel.release) >= NODE_HUGEPAGES_KERNEL
    if node_syntax:
        boot2 = ",".join(f"{n}:{huge2.get(str(n), 0)}" for n in all_nodes)
        boot1 = ",".join(f"{n}:{huge1.get(str(n), 0)}" for n in all_nodes) if pages_1g else None
        notes.append("boot-time hugepages=N is split evenly across the NUMA nodes; this kernel "
                     f"takes per-node counts, so the kernel args reserve hugepages={boot2} for 2 MiB pages")
    elif multi:
        boot2 = str(need2m * len(all_nodes))
        boot1 = str(pages_1g * len(all_nodes)) if pages_1g else None
        notes.append(f"boot-time hugepages=N is split evenly across the {len(all_nodes)} NUMA nodes: the kernel "
                     f"args reserve {need2m} x {len(all_nodes)} = {boot2} 2 MiB pages so node(s) "
                     f"{format_cpulist(wnodes)} get {need2m}; vio4wd-tool hugepages can then trim the "
                     "other nodes at runtime")
    else:
        boot2 = str(need2m)
        boot1 = str(pages_1g) if pages_1g else None
        notes.append(f"boot-time hugepages=N splits across NUMA nodes; with a single node all {need2m} "
                     "2 MiB pages land on node 0")

    # --- kernel args (vio4wd-tool grub applies them)
    intel = is_intel(host)
    kargs = ["default_hugepagesz=2M", "hugepagesz=2M", f"hugepages={boot2}"]
    if boot1:
        kargs += ["hugepagesz=1G", f"hugepages={boot1}"]
    kargs += [f"isolcpus={format_cpulist(isolated)}", f"nohz_full={format_cpulist(workers)}",
              f"rcu_nocbs={format_cpulist(workers)}", f"irqaffinity={format_cpulist(housekeeping)}"]
    kargs += iommu_args(intent.driver, intel)

    relays = []
    for i, r in enumerate(relay_ids):
        vf = ids[r]
        relays.append({"id": r, "vf": vf, "vf2vm_cpu": pins[r][0], "vm2vf_cpu": pins[r][1],
                       "socket": intent.socket_path(r), "vcpus": vcpus[r],
                       "node": vfn.get(vf, node) if vf else node,
                       "guest_mem_mb": per_guest[i] // 1024 if per_guest[i] else None})
    return {
        "schema": SCHEMA, "node": node, "driver": intent.driver, "jumbo": bool(intent.jumbo),
        "workers": workers, "main_lcore": main, "housekeeping": housekeeping,
        "isolcpus": format_cpulist(isolated), "nohz_full": format_cpulist(workers),
        "rcu_nocbs": format_cpulist(workers), "irq_affinity": housekeeping, "irqbalance_banned": isolated,
        "hugepages_2m": huge2, "hugepages_1g": huge1, "relays": relays,
        "cpu_mask": "0x" + format_mask(workers), "kernel_args": kargs,
        "nodes": all_nodes, "idle_siblings": idle, "worker_load": {str(c): v for c, v in load.items()},
        "huge_dir": intent.huge_dir, "vhost_client": bool(intent.vhost_client), "notes": notes,
    }


def render_table(plan: dict) -> str:
    rows = [
        ("NUMA node", str(plan["node"]) + f" (host nodes {format_cpulist(plan['nodes'])})"),
        ("driver / jumbo", f"{plan['driver']} / {'yes' if plan['jumbo'] else 'no'}"),
        ("worker CPUs", f"{format_cpulist(plan['workers'])} (mask {plan['cpu_mask']})"),
        ("idle HT siblings", format_cpulist(plan["idle_siblings"]) or "-"),
        ("main lcore", str(plan["main_lcore"])),
        ("housekeeping CPUs", format_cpulist(plan["housekeeping"])),
        ("isolcpus", plan["isolcpus"]),
        ("nohz_full / rcu_nocbs", f"{plan['nohz_full']} / {plan['rcu_nocbs']}"),
        ("IRQ affinity", format_cpulist(plan["irq_affinity"])),
        ("irqbalance banned", format_cpulist(plan["irqbalance_banned"])),
        ("2 MiB pages", ", ".join(f"node {n}: {p}" for n, p in plan["hugepages_2m"].items()) or "-"),
        ("1 GiB pages", ", ".join(f"node {n}: {p}" for n, p in plan["hugepages_1g"].items()) or "-"),
        ("kernel args", " ".join(plan["kernel_args"])),
    ]
    w = max(len(k) for k, _ in rows)
    lines = [f"{k:<{w}}  {v}" for k, v in rows]
    lines.append("")
    lines.append(f"{'relay':>5}  {'VF':<14} {'VF->VM':>6} {'VM->VF':>6}  {'vCPUs':<8}  socket")
    for r in plan["relays"]:
        lines.append(f"{r['id']:>5}  {r['vf'] or '-':<14} {r['vf2vm_cpu']:>6} {r['vm2vf_cpu']:>6}  "
                     f"{format_cpulist(r['vcpus']):<8}  {r['socket']}")
    return "\n".join(lines)


# ------------------------------------------------------------------ the action

def plan_action(root: Root, intent, *, path: str = DEFAULT_PLAN, check: bool = False, **kw) -> ActionResult:
    from .host import Host

    host = Host(root)
    intent.resolve(host)
    plan = compute(host, intent, **kw)
    result = ActionResult("plan", data=plan)
    ch = file_change(root, path, dump_plan(plan), what=f"write the plan to {path}")
    if ch:
        result.changes.append(ch)
        if not check and root.live:
            require_root(f"writing {path}")
    result.notes = list(plan["notes"])
    return execute(result, check)


def add_common_args(p, plan_file: bool = True) -> None:
    """--root/--check/--json (+ --plan) shared by the actions of this module family."""
    p.add_argument("--root", default="/", help="act on a copy of a host tree instead of this host (tests)")
    p.add_argument("--check", action="store_true", help="show what would change (diffs); write nothing")
    p.add_argument("--json", action="store_true", help="machine-readable result (schema vio4wd.action/1)")
    if plan_file:
        p.add_argument("--plan", default=DEFAULT_PLAN, metavar="PATH", help=f"the plan file (default {DEFAULT_PLAN})")


def _size_kb(text: str) -> int:
    try:
        kb = parse_size(text if re.search(r"[kKmMgG]", text) else text + "G")
    except ValueError:
        raise ActionError(f"--guest-mem {text!r}: expected a size like 4G or 2048M") from None
    if kb <= 0:
        raise ActionError(f"--guest-mem {text!r}: a guest needs memory (e.g. 4G)")
    return kb


def cmd_plan(args) -> int:
    from .cli import UsageError, intent_from_args

    root = Root(args.root)
    intent = intent_from_args(root, args)
    cpus = None
    if args.cpus:
        try:
            cpus = parse_mask(args.cpus) if args.cpus.lower().startswith("0x") else parse_cpulist(args.cpus)
        except ValueError as e:
            raise UsageError(f"--cpus: {e}") from e
    result = plan_action(root, intent, path=args.plan, check=args.check, pfs=args.pf, cpus=cpus,
                         main_lcore=args.main_lcore, nworkers=args.workers,
                         guest_mem_kb=[_size_kb(s) for s in args.guest_mem], guest_vcpus=args.guest_vcpus)
    if not args.json:
        print(render_table(result.data))
        print()
    return emit(result, args.json)


def register(sub) -> None:
    from .cli import add_intent_args

    p = sub.add_parser("plan", help="compute the per-host NUMA plan (workers, isolation, IRQs, hugepages, "
                       "pins) and save it for the other actions")
    add_common_args(p)
    p.add_argument("--pf", action="append", default=[], metavar="IFACE|PCI",
                   help="the VFs' physical function: its NUMA node and VFs feed the plan; repeatable")
    p.add_argument("--workers", type=int, metavar="N", help="worker CPUs wanted (default: one per relay)")
    p.add_argument("--guest-mem", action="append", default=[], metavar="SIZE",
                   help="guest memory (e.g. 4G) backed by 1 GiB pages: once for every guest, or once per relay")
    p.add_argument("--guest-vcpus", type=int, default=1, metavar="N", help="vCPUs per guest (default 1)")
    add_intent_args(p)
    p.set_defaults(func=cmd_plan)
