"""`vio4wd-tool config`: render `/etc/default/virtioforwarder` from the plan.

Every variable the forwarder reads (`forwarder.config.ForwarderSettings.from_env`) is written,
each with a comment.  The plan owns the CPUs, pins, VFs, driver, jumbo, huge dir and vhost mode;
every other variable keeps the value of the existing file (else the forwarder's default), and
variables the forwarder does not know are kept at the end.  The result is parsed back with the
forwarder's own parser before it is written, so the daemon accepts what this writes.
"""
from __future__ import annotations

import os
import re
import shlex
import tempfile

from .actions import ActionError, ActionResult, emit, execute, file_change, require_root
from .cpu import format_cpulist
from .root import Root

CONFIG = "/etc/default/virtioforwarder"

# variable -> (settings attribute or None, comment); the order is the file's order
VARIABLES: dict[str, tuple[str | None, str]] = {
    "VIRTIOFWD_CPU_MASK": ("cpus", "worker CPUs: a list (1,2,4-6) or a hex mask (0x6)  [plan]"),
    "VIRTIOFWD_MASTER_LCORE": ("master_lcore", "CPU of the main (control) thread, a housekeeping CPU  [plan]"),
    "VIRTIOFWD_CPU_PINS": ("cpu_pins", "relay pins: --virtio-cpu=<relay>:<VF->VM CPU>,<VM->VF CPU>  [plan]"),
    "VIRTIOFWD_STATIC_VFS": ("static_vfs", "VFs attached at start: <PCI dddd:bb:dd.f or devargs>=<relay id>  [plan]"),
    "VIRTIOFWD_BIND_VFIO_PCI": ("bind_vfio_pci", "VFs are bound to vfio-pci (false: igb_uio)  [plan]"),
    "VIRTIOFWD_JUMBO": ("jumbo", "jumbo frames (needs 1375 2 MiB pages per worker node)  [plan]"),
    "VIRTIOFWD_HUGETLBFS_MOUNT_POINT": ("huge_dir", "the 2 MiB hugetlbfs mount  [plan]"),
    "VIRTIOFWD_VHOST_CLIENT": ("vhost_client", "vhost-user client mode: QEMU is the socket server  [plan]"),
    "VIRTIOFWD_TSO": ("tso", "TCP segmentation offload towards the guests"),
    "VIRTIOFWD_MRGBUF": ("mrgbuf", "mergeable rx buffers"),
    "VIRTIOFWD_LOG_LEVEL": ("log_level", "syslog level 0-7"),
    "VIRTIOFWD_SOCKET_DIR": ("socket_dir", "directory of the vhost-user sockets"),
    "VIRTIOFWD_SOCKET_FNAME_PATTERN": ("socket_pattern", "socket file name, %u = relay id"),
    "VIRTIOFWD_SOCKET_OWNER": ("socket_owner", "owner of the sockets ('' = the daemon's user)"),
    "VIRTIOFWD_SOCKET_GROUP": ("socket_group", "group of the sockets"),
    "VIRTIOFWD_DYNAMIC_SOCKETS": ("dynamic_sockets", "create sockets only on ADD_SOCK requests"),
    "VIRTIOFWD_CPU_NIC_SAME_NUMA": ("same_numa", "pin relays to CPUs on the VF's NUMA node"),
    "VIRTIOFWD_OVSDB_SOCK_PATH": ("ovsdb_sock", "OVSDB socket to watch for VF ports ('' = off)"),
    "VIRTIOFWD_VFIO_VF_TOKEN": ("vfio_vf_token", "vfio-pci VF token (UUID), '' = none"),
    "VIRTIOFWD_PID_DIR": ("pid_dir", "pidfile directory"),
    "VIRTIOFWD_ZMQ_CONFIG_EP": ("zmq_config_ep", "ZeroMQ endpoint: relay/CPU map queries"),
    "VIRTIOFWD_ZMQ_PORT_CONTROL_EP": ("zmq_port_control_ep", "ZeroMQ endpoint: attach/detach VFs and sockets"),
    "VIRTIOFWD_ZMQ_STATS_EP": ("zmq_stats_ep", "ZeroMQ endpoint: statistics"),
    "VIRTIOFWD_ZMQ_CORE_SCHED_EP": ("zmq_core_sched_ep", "ZeroMQ endpoint: relay CPU moves"),
    "VIO4WD_CORE_SCHED_ENABLE": ("core_sched.enable", "the load balancer moves relays between workers"),
    "VIO4WD_CORE_SCHED_POLL_INTERVAL": ("core_sched.poll_interval", "seconds between its polls"),
    "VIO4WD_CORE_SCHED_SENSITIVITY": ("core_sched.sensitivity", "rebalance when imbalance improves by this fraction"),
    "VIO4WD_CORE_SCHED_VF2VM_WEIGHT": ("core_sched.vf2vm_weight", "cost of a VF->VM direction"),
    "VIO4WD_CORE_SCHED_VM2VF_WEIGHT": ("core_sched.vm2vf_weight", "cost of a VM->VF direction"),
}
PLAN_OWNED = [v for v, (_, doc) in VARIABLES.items() if doc.endswith("[plan]")]


def _quote(v: str) -> str:
    return v if re.fullmatch(r"[A-Za-z0-9_@%+=:,./-]*", v) else shlex.quote(v)


def _fmt(value) -> str | list[str]:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _defaults() -> dict[str, str]:
    from forwarder.config import ForwarderSettings

    s = ForwarderSettings(cpus=[1])
    out = {}
    for var, (attr, _) in VARIABLES.items():
        obj = s
        for part in attr.split("."):
            obj = getattr(obj, part)
        out[var] = _fmt(obj)
    return out


def plan_values(plan: dict) -> dict[str, str | list[str]]:
    relays = plan.get("relays") or []
    return {
        "VIRTIOFWD_CPU_MASK": format_cpulist(plan["workers"]),
        "VIRTIOFWD_MASTER_LCORE": str(plan["main_lcore"]),
        "VIRTIOFWD_CPU_PINS": [f"--virtio-cpu={r['id']}:{r['vf2vm_cpu']},{r['vm2vf_cpu']}" for r in relays],
        "VIRTIOFWD_STATIC_VFS": [f"{r['vf']}={r['id']}" for r in relays if r.get("vf")],
        "VIRTIOFWD_BIND_VFIO_PCI": _fmt(plan.get("driver") == "vfio-pci"),
        "VIRTIOFWD_JUMBO": _fmt(bool(plan.get("jumbo"))),
        "VIRTIOFWD_HUGETLBFS_MOUNT_POINT": plan.get("huge_dir") or "/dev/hugepages",
        "VIRTIOFWD_VHOST_CLIENT": _fmt(bool(plan.get("vhost_client"))),
    }


def host_socket_owner(root: Root) -> dict[str, str]:
    """Socket owner/group defaults that exist on this host: the QEMU user (libvirt-qemu or qemu)
    and kvm, else '' (keep the daemon's), so the forwarder starts on hosts without libvirt."""
    from .host import Host
    from .virt import KVM_GROUP

    virt = Host(root).virt
    user = virt.qemu_user()
    return {"VIRTIOFWD_SOCKET_OWNER": user.name if user else "",
            "VIRTIOFWD_SOCKET_GROUP": KVM_GROUP if KVM_GROUP in virt.groups else ""}


def render(plan: dict, existing: dict[str, str | list[str]] | None = None,
           host_defaults: dict[str, str] | None = None) -> str:
    existing = existing or {}
    values: dict[str, str | list[str]] = _defaults()
    values.update(host_defaults or {})
    values.update({k: v for k, v in existing.items() if k in VARIABLES})
    values.update(plan_values(plan))
    lines = ["# /etc/default/virtioforwarder: the vio4wd virtio-forwarder's settings.",
             "# Written by `vio4wd-tool config` from the host plan (/etc/vio4wd/plan.json); variables marked",
             "# [plan] are rewritten on the next run, the others keep what is set here.", ""]
    for var, (_, doc) in VARIABLES.items():
        v = values[var]
        lines.append(f"# {doc}")
        lines.append(f"{var}=(" + " ".join(_quote(x) for x in v) + ")" if isinstance(v, list) else f"{var}={_quote(v)}")
    foreign = [k for k in existing if k not in VARIABLES]
    if foreign:
        lines += ["", "# kept from the previous file (not read by the forwarder itself)"]
        for k in foreign:
            v = existing[k]
            lines.append(f"{k}=(" + " ".join(_quote(x) for x in v) + ")" if isinstance(v, list) else f"{k}={_quote(v)}")
    return "\n".join(lines) + "\n"


def validate(text: str, plan: dict):
    """Parse `text` with the forwarder's own parser; check it says what the plan says."""
    from forwarder.config import ConfigError, ForwarderSettings, read_env_file

    fd, tmp = tempfile.mkstemp(prefix="virtioforwarder.", suffix=".check")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        s = ForwarderSettings.from_env(read_env_file(tmp))
    except ConfigError as e:
        raise ActionError(f"the rendered config does not parse: {e}: fix that value in {CONFIG} (or use --fresh)")
    finally:
        os.unlink(tmp)
    relays = plan.get("relays") or []
    want = {"cpus": sorted(plan["workers"]), "master_lcore": plan["main_lcore"],
            "static_vfs": sorted((r["vf"], r["id"]) for r in relays if r.get("vf")),
            "cpu_pins": {r["id"]: (r["vf2vm_cpu"], r["vm2vf_cpu"]) for r in relays},
            "bind_vfio_pci": plan.get("driver") == "vfio-pci", "jumbo": bool(plan.get("jumbo"))}
    got = {"cpus": s.cpus, "master_lcore": s.master_lcore, "static_vfs": sorted(s.static_vfs),
           "cpu_pins": s.cpu_pins, "bind_vfio_pci": s.bind_vfio_pci, "jumbo": s.jumbo}
    bad = [k for k in want if want[k] != got[k]]
    if bad:
        raise ActionError(f"the rendered config reads back differently ({', '.join(bad)}): a vio4wd bug, please report")
    return s


def config_action(root: Root, plan: dict, *, path: str = CONFIG, check: bool = False, fresh: bool = False) -> ActionResult:
    from forwarder.config import ConfigError, read_env_file

    existing = {}
    if not fresh and root.path(path).exists():
        try:
            existing = read_env_file(root.path(path))
        except ConfigError as e:
            raise ActionError(f"cannot keep the settings of {path}: {e} (fix it, or --fresh to start from "
                              "the defaults)") from None
    text = render(plan, existing, host_socket_owner(root))
    s = validate(text, plan)
    if not any(k in existing for k in ("VIRTIOFWD_SOCKET_OWNER", "VIRTIOFWD_SOCKET_GROUP")) and not s.socket_owner:
        notes = ["no QEMU user (libvirt-qemu/qemu) on this host: vhost-user sockets keep the daemon's owner"]
    else:
        notes = []
    result = ActionResult("config", data={"file": path, "workers": s.cpus, "main_lcore": s.master_lcore,
                                          "static_vfs": [f"{vf}={r}" for vf, r in s.static_vfs],
                                          "cpu_pins": {str(k): list(v) for k, v in s.cpu_pins.items()}})
    result.notes += notes
    ch = file_change(root, path, text, mode=0o644, what=f"render {path} from the plan")
    if ch:
        result.changes.append(ch)
        result.notes.append("restart the forwarder to apply: systemctl restart virtio-forwarder")
        if not check and root.live:
            require_root(f"writing {path}")
    return execute(result, check)


def cmd_config(args) -> int:
    from .plan import load_plan

    root = Root(args.root)
    plan = load_plan(args.plan, root=root)
    return emit(config_action(root, plan, path=args.config_file, check=args.check, fresh=args.fresh), args.json)


def register(sub) -> None:
    from .plan import add_common_args

    p = sub.add_parser("config", help="render /etc/default/virtioforwarder from the plan")
    add_common_args(p)
    p.add_argument("--file", dest="config_file", default=CONFIG, metavar="PATH",
                   help=f"the forwarder config to write (default {CONFIG})")
    p.add_argument("--fresh", action="store_true", help="ignore the existing file's values (use the defaults)")
    p.set_defaults(func=cmd_config)
