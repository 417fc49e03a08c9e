"""IRQ affinities and irqbalance: probe and the checks that keep IRQs off worker CPUs."""
from __future__ import annotations

import re
from dataclasses import dataclass

from .checks import check, fail, ok, skip, warn
from .cpu import format_cpulist, parse_cpulist, parse_mask
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
                   banned=banned, conf_path=conf_path)


@check("irq.affinity", "CPU", "Checking IRQ affinities avoid worker CPUs",
       "no IRQ's affinity (nor the default affinity) includes a forwarder worker CPU")
def check_affinity(host, intent):
    workers = set(intent.workers)
    if not workers:
        return skip("no worker CPUs configured (VIRTIOFWD_CPU_MASK or --cpus)")
    irqs = host.irq
    hit = sorted(i for i, cpus in irqs.affinity.items() if workers & set(cpus))
    out = []
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
