"""IRQ affinities and irqbalance: probe and the checks that keep IRQs off worker CPUs."""
from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field

from .checks import check, fail, ok, skip, warn
from .cpu import format_cpulist, format_mask, parse_cpulist, parse_mask
from .root import Root

IRQ_DIR = "/proc/irq"
DEFAULT_AFFINITY = "/proc/irq/default_smp_affinity"
IRQBALANCE_CONFS = ("/etc/default/irqbalance", "/etc/sysconfig/irqbalance")
IRQBALANCE_BIN = ("/usr/sbin/irqbalance", "/usr/bin/irqbalance")


@dataclass
class IrqInfo:
    affinity: dict[int, list[int]]  # irq -> effective affinity list
    default_affinity: list[int]
    irqbalance_installed: bool
    banned: list[int] | None  # from IRQBALANCE_BANNED_CPULIST / _CPUS; None = unset
    conf_path: str | None
    unmovable: set[int] = field(default_factory=set)  # IRQs the kernel refused to move (recorded by pin)


def parse_irqbalance_conf(text: str) -> list[int] | None:
    vals = {}
    for line in text.splitlines():
        m = re.match(r"\s*(?:export\s+)?(IRQBALANCE_BANNED_CPU(?:S|LIST))\s*=\s*['\"]?([^'\"#]*)", line)
        if m:
            vals[m.group(1)] = m.group(2).strip()
    if vals.get("IRQBALANCE_BANNED_CPULIST"):
        return parse_cpulist(vals["IRQBALANCE_BANNED_CPULIST"])
    if vals.get("IRQBALANCE_BANNED_CPUS"):
        return parse_mask(vals["IRQBALANCE_BANNED_CPUS"])
    return None


def probe(root: Root) -> IrqInfo:
    aff = {}
    for d in root.glob(IRQ_DIR, "[0-9]*"):
        text = root.read(f"{d}/smp_affinity_list")
        if text:
            try:
                aff[int(d.rsplit("/", 1)[1])] = parse_cpulist(text)
            except ValueError:
                pass
    dflt = root.read(DEFAULT_AFFINITY)
    conf_path, banned = None, None
    for p in IRQBALANCE_CONFS:
        text = root.read(p)
        if text is not None:
            conf_path, banned = p, parse_irqbalance_conf(text)
            break
    return IrqInfo(affinity=aff, default_affinity=parse_mask(dflt) if dflt else [],
                   irqbalance_installed=any(root.exists(b) for b in IRQBALANCE_BIN),
                   banned=banned, conf_path=conf_path, unmovable=_unmovable(root))


@check("irq.affinity", "CPU", "Checking IRQ affinities avoid worker CPUs",
       "no IRQ's affinity (nor the default affinity) includes a forwarder worker CPU")
def check_affinity(host, intent):
    workers = set(intent.workers)
    if not workers:
        return skip("no worker CPUs configured (VIRTIOFWD_CPU_MASK or --cpus)")
    irqs = host.irq
    hit = sorted(i for i, cpus in irqs.affinity.items() if workers & set(cpus))
    managed = [i for i in hit if i in irqs.unmovable and set(irqs.affinity[i]) <= workers]
    hit = [i for i in hit if i not in managed]
    out = []
    if managed:
        shown = ",".join(map(str, managed[:8])) + ("..." if len(managed) > 8 else "")
        out.append(warn(f"{len(managed)} kernel-managed IRQ(s) bound to worker CPUs only (IRQ {shown}): the kernel "
                        "refused to move them; a per-queue IRQ fires only for I/O issued on its own CPU",
                        "nothing to do while no I/O runs on the worker CPUs; isolcpus=managed_irq,domain,<workers> "
                        "keeps them off where the device has other queues", subject="managed"))
    if hit:
        shown = ",".join(map(str, hit[:8])) + ("..." if len(hit) > 8 else "")
        out.append(fail(f"{len(hit)} IRQ(s) may run on worker CPUs {format_cpulist(workers)} (IRQ {shown})",
                        "vio4wd-tool pin --irqs (writes /proc/irq/N/smp_affinity_list) or role var "
                        "vio4wd_tuning_irq_affinity", subject="irqs"))
    if workers & set(irqs.default_affinity):
        out.append(warn(f"default_smp_affinity {format_cpulist(irqs.default_affinity)} includes workers: "
                        "new IRQs will land on them", "vio4wd-tool pin --irqs sets default_smp_affinity",
                        subject="default"))
    return out or ok(f"no IRQ on workers {format_cpulist(workers)}")


@check("irq.balance", "CPU", "Checking irqbalance bans worker CPUs",
       "irqbalance, when installed, bans the worker CPUs (IRQBALANCE_BANNED_CPULIST)")
def check_irqbalance(host, intent):
    workers = set(intent.workers)
    if not workers:
        return skip("no worker CPUs configured")
    irqs = host.irq
    if not irqs.irqbalance_installed:
        return skip("irqbalance not installed")
    banned = set(irqs.banned or [])
    missing = workers - banned
    if missing:
        return fail(f"irqbalance does not ban worker CPUs {format_cpulist(missing)}: it will move IRQs onto them",
                    f"IRQBALANCE_BANNED_CPULIST={format_cpulist(workers | banned)} in "
                    f"{irqs.conf_path or IRQBALANCE_CONFS[0]}, restart irqbalance (vio4wd-tool pin --irqbalance)")
    return ok(f"irqbalance bans {format_cpulist(banned)}")


# ---------------------------------------------------------------- the pin action

UNMOVABLE_STATE = "/run/vio4wd/irq-unmovable"  # IRQs the kernel refused to move (EIO): not retried until reboot
SYSTEM_CONF_DROPIN = "/etc/systemd/system.conf.d/50-vio4wd-cpuaffinity.conf"
FORWARDER_UNIT = "virtio-forwarder.service"
FORWARDER_DROPIN = f"/etc/systemd/system/{FORWARDER_UNIT}.d/50-vio4wd-cpuaffinity.conf"


def _plan_cpus(root: Root, plan: dict) -> tuple[list[int], list[int]]:
    """(CPUs IRQs may use, CPUs to keep IRQs off) from the plan, checked against this host."""
    from .actions import ActionError
    from .cpu import probe as cpu_probe

    try:
        allowed = sorted(int(c) for c in plan["irq_affinity"])
        banned = sorted(int(c) for c in plan.get("irqbalance_banned") or plan["workers"])
    except (KeyError, TypeError, ValueError) as e:
        raise ActionError(f"the plan lacks a valid irq_affinity/irqbalance_banned ({e}): re-run vio4wd-tool plan")
    online = set(cpu_probe(root).online)
    bad = [c for c in allowed + banned if c not in online]
    if bad or not allowed:
        raise ActionError(f"the plan names CPU(s) {format_cpulist(bad) or '(none for IRQs)'} that this host does "
                          f"not have online (online: {format_cpulist(online)}): re-run vio4wd-tool plan on this host")
    if set(allowed) & set(banned):
        raise ActionError(f"the plan lets IRQs use worker CPU(s) {format_cpulist(set(allowed) & set(banned))}: "
                          "re-run vio4wd-tool plan")
    return allowed, banned


def _unmovable(root: Root) -> set[int]:
    text = root.read(UNMOVABLE_STATE, "") or ""
    return {int(x) for x in text.split() if x.isdigit()}


def irq_changes(root: Root, info: IrqInfo, allowed: list[int], banned: list[int], result) -> list:
    import errno

    from .actions import Change, atomic_write, write_sysfs

    changes = []
    ban = set(banned)
    skip_irqs = _unmovable(root)
    moves = {}
    for n, cpus in sorted(info.affinity.items()):
        if ban & set(cpus):
            if n in skip_irqs:
                continue
            moves[n] = [c for c in cpus if c not in ban] or list(allowed)
    if skip_irqs & {n for n, c in info.affinity.items() if ban & set(c)}:
        result.notes.append(f"IRQ(s) {format_cpulist(skip_irqs)} cannot be moved (kernel-managed or per-CPU); "
                            "isolcpus=managed_irq,... keeps managed IRQs off isolated CPUs")
    if moves:
        def apply(moves=moves):
            refused = []
            for n, cpus in moves.items():
                path = root.path(f"{IRQ_DIR}/{n}/smp_affinity_list")
                try:
                    with open(path, "w") as f:
                        f.write(format_cpulist(cpus))
                except OSError as e:
                    if e.errno == errno.ENOENT:
                        continue  # the IRQ went away meanwhile
                    # managed/per-CPU IRQs: EIO (EPERM under some hypervisors, even for root)
                    if e.errno in (errno.EIO, errno.EINVAL) or (e.errno == errno.EPERM and os.geteuid() == 0):
                        refused.append(n)
                        continue
                    raise
            if refused:
                atomic_write(root.path(UNMOVABLE_STATE),
                             " ".join(map(str, sorted(_unmovable(root) | set(refused)))) + "\n", backup=False)
                result.notes.append(f"the kernel refused to move IRQ(s) {','.join(map(str, refused))} "
                                    "(kernel-managed or per-CPU); not retried until reboot")

        shown = ",".join(map(str, list(moves)[:12])) + ("..." if len(moves) > 12 else "")
        changes.append(Change(f"move {len(moves)} IRQ(s) off CPUs {format_cpulist(ban)} (IRQ {shown})",
                              apply=apply))
    if set(info.default_affinity) != set(allowed) and root.exists(DEFAULT_AFFINITY):
        mask = format_mask(allowed)
        changes.append(Change(f"set {DEFAULT_AFFINITY} to {mask} (CPUs {format_cpulist(allowed)}; was "
                              f"{format_cpulist(info.default_affinity) or '?'})",
                              apply=lambda: write_sysfs(root.path(DEFAULT_AFFINITY), mask)))
    return changes


def irqbalance_conf_text(text: str, banned: list[int]) -> str:
    """Set IRQBALANCE_BANNED_CPULIST; comment out the older IRQBALANCE_BANNED_CPUS mask."""
    want = f"IRQBALANCE_BANNED_CPULIST={format_cpulist(banned)}"
    out, done = [], False
    for line in text.splitlines():
        if re.match(r"\s*(export\s+)?IRQBALANCE_BANNED_CPULIST\s*=", line):
            if not done:
                out.append(want)
                done = True
            continue
        if re.match(r"\s*(export\s+)?IRQBALANCE_BANNED_CPUS\s*=", line):
            out.append(f"# {line.strip()}  # vio4wd: superseded by IRQBALANCE_BANNED_CPULIST")
            continue
        out.append(line)
    if not done:
        out += ["# vio4wd: keep IRQs off the forwarder's worker CPUs (vio4wd-tool pin --irqbalance)", want]
    return "\n".join(out) + "\n"


def irqbalance_changes(root: Root, info: IrqInfo, banned: list[int], result) -> list:
    from .actions import file_change, run_cmd

    if not info.irqbalance_installed:
        result.notes.append("irqbalance is not installed: nothing to ban (IRQs stay where pin --irqs put them)")
        return []
    path = info.conf_path or (IRQBALANCE_CONFS[1] if root.is_dir("/etc/sysconfig") and
                              not root.is_dir("/etc/default") else IRQBALANCE_CONFS[0])

    def restart():
        if root.live and shutil.which("systemctl"):
            run_cmd(["systemctl", "try-restart", "irqbalance.service"], timeout=60)

    ch = file_change(root, path, irqbalance_conf_text(root.read(path, "") or "", banned),
                     what=f"ban CPUs {format_cpulist(banned)} in {path} and restart irqbalance", after=restart)
    return [ch] if ch else []


def cpu_affinity_changes(root: Root, plan: dict, allowed: list[int]) -> list:
    from .actions import file_change

    fwd = sorted(set(plan["workers"]) | {plan["main_lcore"]})
    out = [
        file_change(root, SYSTEM_CONF_DROPIN,
                    "# vio4wd: services run on the housekeeping CPUs (vio4wd-tool pin --cpu-affinity)\n"
                    f"[Manager]\nCPUAffinity={format_cpulist(allowed)}\n",
                    what=f"confine systemd services to housekeeping CPUs {format_cpulist(allowed)}", reboot=True),
        file_change(root, FORWARDER_DROPIN,
                    "# vio4wd: the forwarder's workers and main lcore (vio4wd-tool pin --cpu-affinity)\n"
                    f"[Service]\nCPUAffinity={format_cpulist(fwd)}\n",
                    what=f"let {FORWARDER_UNIT} run on CPUs {format_cpulist(fwd)}", reboot=True),
    ]
    return [c for c in out if c]


def pin_action(root: Root, plan: dict, *, irqs: bool = True, irqbalance: bool = True, cpu_affinity: bool = False,
               check: bool = False):
    """Keep IRQs (and optionally every service) off the plan's worker CPUs."""
    from .actions import ActionResult, execute, require_root

    allowed, banned = _plan_cpus(root, plan)
    info = probe(root)
    result = ActionResult("pin", data={"irq_affinity": allowed, "banned": banned})
    if irqs:
        result.changes += irq_changes(root, info, allowed, banned, result)
    if irqbalance:
        result.changes += irqbalance_changes(root, info, banned, result)
    if cpu_affinity:
        result.changes += cpu_affinity_changes(root, plan, allowed)
        if any(c.reboot for c in result.changes):
            result.notes.append("CPUAffinity takes effect at the next boot (or systemctl daemon-reexec and "
                                "a restart of each service)")
    if result.changes and not check and root.live:
        require_root("moving IRQs and writing irqbalance/systemd config")
    return execute(result, check)


def cmd_pin(args) -> int:
    from .actions import emit
    from .plan import load_plan

    root = Root(args.root)
    plan = load_plan(args.plan, root=root)
    chosen = args.irqs or args.irqbalance or args.cpu_affinity
    result = pin_action(root, plan, irqs=args.irqs or not chosen, irqbalance=args.irqbalance or not chosen,
                        cpu_affinity=args.cpu_affinity, check=args.check)
    return emit(result, args.json)


def register(sub) -> None:
    from .plan import add_common_args

    # `pin` pins the host (IRQs, irqbalance, systemd) to the plan; a later `pin relay` sub-mode can move
    # relay CPUs on a running forwarder (issue 5) next to these flags.
    p = sub.add_parser("pin", help="keep IRQs (and optionally services) off the plan's worker CPUs")
    add_common_args(p)
    p.add_argument("--irqs", action="store_true", help="move IRQs off workers, set default_smp_affinity")
    p.add_argument("--irqbalance", action="store_true", help="ban workers in irqbalance's config and restart it")
    p.add_argument("--cpu-affinity", action="store_true",
                   help="systemd CPUAffinity: services on housekeeping CPUs, the forwarder on its own")
    p.epilog = "Without --irqs/--irqbalance/--cpu-affinity: --irqs --irqbalance."
    p.set_defaults(func=cmd_pin)
