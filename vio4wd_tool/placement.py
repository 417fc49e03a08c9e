"""CPU and NUMA placement of forwarder workers, VFs, guest memory and vCPUs: the checks."""
from __future__ import annotations

from .checks import check, fail, ok, skip, warn
from .cpu import format_cpulist
from .pci import is_pci, normalize_pci


def vf_nodes(host, intent) -> dict[str, int]:
    out = {}
    for spec in intent.vfs:
        if is_pci(spec):
            dev = host.pci.get(normalize_pci(spec))
            if dev is not None:
                out[dev.addr] = dev.numa_node
    return out


def pinned_vcpus(host) -> dict[str, set[int]]:
    return {d.name: set().union(*d.vcpu_pins.values()) for d in host.virt.domains if d.vcpu_pins}


@check("cpu.workers", "CPU", "Checking forwarder worker CPUs",
       "worker CPUs exist, are online and exclude the main lcore; their hyperthread siblings are idle")
def check_workers(host, intent):
    workers = intent.workers
    if not workers:
        return skip("no worker CPUs configured (VIRTIOFWD_CPU_MASK or --cpus)")
    cpu = host.cpu
    out = []
    missing = [c for c in workers if c not in cpu.cpus]
    offline = [c for c in workers if c in cpu.cpus and not cpu.cpus[c].online]
    if missing:
        out.append(fail(f"worker CPU(s) {format_cpulist(missing)} do not exist (host has "
                        f"{format_cpulist(cpu.cpus)})", "choose workers from the online CPUs: vio4wd-tool plan",
                        subject="exist"))
    if offline:
        out.append(fail(f"worker CPU(s) {format_cpulist(offline)} are offline",
                        "echo 1 > /sys/devices/system/cpu/cpuN/online, or pick others", subject="online"))
    if intent.main_lcore is not None and intent.main_lcore in workers:
        out.append(fail(f"the main lcore {intent.main_lcore} is also a worker: its control work stalls "
                        "the worker's relays", "set VIRTIOFWD_MASTER_LCORE to a housekeeping CPU",
                        subject="main"))
    busy = set()
    vcpus = set().union(*pinned_vcpus(host).values()) if host.virt.domains else set()
    for c in workers:
        for s in cpu.siblings_of(c):
            if s in workers:
                continue
            if s == intent.main_lcore or s in vcpus:
                busy.add(s)
    if busy:
        out.append(warn(f"hyperthread sibling(s) {format_cpulist(busy)} of workers are in use (main lcore "
                        "or vCPUs): the worker shares its core", "leave worker siblings idle: vio4wd-tool plan",
                        subject="siblings"))
    return out or ok(f"workers {format_cpulist(workers)} online, siblings idle")


@check("cpu.vcpu_overlap", "CPU", "Checking vCPU pins avoid worker CPUs",
       "no guest vCPU is pinned to a forwarder worker CPU")
def check_vcpu_overlap(host, intent):
    workers = set(intent.workers)
    if not workers:
        return skip("no worker CPUs configured")
    pins = pinned_vcpus(host)
    if not pins:
        return skip("no pinned vCPUs")
    out = []
    for name, cpus in pins.items():
        both = cpus & workers
        if both:
            out.append(fail(f"{name} pins vCPUs to worker CPU(s) {format_cpulist(both)}",
                            f"virsh edit {name}: move <vcpupin> off {format_cpulist(workers)}", subject=name))
    return out or ok("vCPU pins avoid workers")


@check("numa.locality", "NUMA", "Checking VF, workers, guest memory and vCPUs share one NUMA node",
       "one NUMA node for VF, worker CPUs, guest memory and vCPUs")
def check_locality(host, intent):
    cpu = host.cpu
    if len(cpu.nodes) < 2:
        return ok("single NUMA node")
    where: dict[str, set[int]] = {}
    for addr, n in vf_nodes(host, intent).items():
        where.setdefault(f"VF {addr}", set()).add(n)
    if intent.workers:
        where["workers"] = {cpu.node_of(c) for c in intent.workers if cpu.node_of(c) is not None}
    for d in host.virt.domains:
        if not d.vhost:
            continue
        if d.mem_nodes:
            where[f"{d.name} memory"] = set(d.mem_nodes)
        if d.vcpu_pins:
            where[f"{d.name} vCPUs"] = {cpu.node_of(c) for cs in d.vcpu_pins.values() for c in cs
                                        if cpu.node_of(c) is not None}
    if intent.numa_node is not None:
        where["intended node"] = {intent.numa_node}
    nodes = set().union(*where.values()) if where else set()
    if len(nodes) <= 1:
        return ok(f"all on node {nodes.pop()}" if nodes else "nothing placed yet")
    crossing = ", ".join(f"{k} on node {format_cpulist(v)}" for k, v in sorted(where.items()))
    return warn(f"placement crosses NUMA nodes: {crossing}: every packet crosses the interconnect",
                "vio4wd-tool plan --node N picks workers on the VF's node; pin guest memory and vCPUs there")
