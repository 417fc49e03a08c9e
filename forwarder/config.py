"""Forwarder configuration: `/etc/default/virtioforwarder`, daemon options, EAL arguments.

Pure Python (no DPDK import): `vio4wd_tool`'s doctor imports this module to validate a host's
configuration.  Three sources build one `ForwarderSettings`:

* the environment file, read by `read_env_file()` without executing it (the original start
  script sources it with bash; the subset used there is understood: comments, `export`,
  quotes, `VAR=value` and `VAR=(a b c)` arrays), then `ForwarderSettings.from_env()`;
* the daemon's command line, `parse_args()`, compatible with Netronome's virtio-forwarder;
* `eal_args()`, which derives the DPDK EAL arguments from the settings.

VF specification (``-P``/``--add-pci-vf``, ``VIRTIOFWD_STATIC_VFS``, port control):
    ``<VF>=<relay id>`` where ``<VF>`` is either a PCI address ``dddd:bb:dd.f`` (hex; normalised
    to lower case, a missing domain means ``0000``) or any DPDK device argument string naming a
    virtual device, e.g. ``net_tap0,iface=vf0`` or ``net_pcap0,rx_pcap=in.pcap,tx_pcap=out.pcap``.
    The relay id is what follows the LAST ``=``, so devargs may contain ``=`` themselves:
    ``net_tap0,iface=vf0=3`` attaches ``net_tap0,iface=vf0`` to relay 3.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

VERSION = "1.2.99-vio4wd"  # virtio-forwarder version this one stands in for
ENV_FILE = Path("/etc/default/virtioforwarder")
SYSFS_CPU = Path("/sys/devices/system/cpu")

DEFAULT_SOCKET_DIR = "/tmp/virtio-forwarder"
DEFAULT_SOCKET_PATTERN = "virtio-forwarder%u.sock"
DEFAULT_PID_DIR = "/var/run/virtio-forwarder"
DEFAULT_HUGE_DIR = "/dev/hugepages"
DEFAULT_FILE_PREFIX = "virtio-forwarder"
DEFAULT_ZMQ = {name: f"ipc:///var/run/virtio-forwarder/{name}"
               for name in ("config", "port_control", "stats", "core_sched")}
MAX_RELAYS = 64           # protocol limit; the DPDK build's RTE_MAX_ETHPORTS may lower it
MAX_QUEUE_PAIRS = 32
BOND_MODES = range(0, 7)  # net_bonding modes 0-6
DEFAULT_BOND_MODE = 1     # active-backup
SOCKET_MEM_MB = 256       # preallocated per NUMA node that has workers; more grows on demand
HIGH_LCORE = 127          # lcore id for the main thread when it shares a worker's CPU

PCI_RE = re.compile(r"^(?:(?P<dom>[0-9a-fA-F]{1,4}):)?(?P<bus>[0-9a-fA-F]{1,2}):"
                    r"(?P<dev>[0-9a-fA-F]{1,2})\.(?P<fn>[0-7])$")
BOOL_TRUE = {"1", "y", "yes", "true", "on"}
BOOL_FALSE = {"", "0", "n", "no", "false", "off"}


class ConfigError(ValueError):
    """A configuration value is missing or malformed; the message names it and what is accepted."""


# ---------------------------------------------------------------------------------------------
# the environment file

_ASSIGN_RE = re.compile(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$")


def _bash_words(text: str, what: str, array: bool = False) -> list[str]:
    """Split like bash word splitting of unexpanded text (quotes, backslashes, comments); no
    expansion.  With `array`, stop at the first unquoted ')' and raise EOFError if none yet."""
    lex = shlex.shlex(text, posix=True, punctuation_chars=")" if array else "")
    lex.whitespace_split = True
    lex.commenters = "#"
    words = []
    try:
        for word in lex:
            if array and word == ")":
                return words
            words.append(word)
    except ValueError as exc:
        if array:
            raise EOFError from None  # an open quote: the array goes on on the next line
        raise ConfigError(f"{what}: {exc} (check the quotes)") from None
    if array:
        raise EOFError
    return words


def read_env_file(path: str | os.PathLike) -> dict[str, str | list[str]]:
    """Parse a bash-style variables file like `/etc/default/virtioforwarder` without running it.

    Understood: blank lines, `# comments`, an optional `export`, `VAR=value` with single or double
    quotes or backslashes, `VAR=(a "b c" d)` arrays (also spanning several lines).  Variable
    expansion and command substitution are not performed (`$` is kept literally).
    Returns scalars as `str` and arrays as `list[str]`.
    """
    lines = Path(path).read_text().splitlines()
    result: dict[str, str | list[str]] = {}
    i = 0
    while i < len(lines):
        lineno, line = i + 1, lines[i].strip()
        i += 1
        if not line or line.startswith("#") or re.fullmatch(r"export(\s+\w+)+", line):
            continue
        m = _ASSIGN_RE.match(line)
        if not m:
            raise ConfigError(f"{path}:{lineno}: cannot parse {line!r}: expected VAR=value "
                              "or VAR=(a b c)")
        name, value = m.group(1), m.group(2)
        where = f"{path}:{lineno}: {name}"
        if value.startswith("("):
            body = value[1:]
            while True:
                try:
                    result[name] = _bash_words(body, where, array=True)
                    break
                except EOFError:
                    if i >= len(lines):
                        raise ConfigError(f"{where}: array has no closing ')'") from None
                    body += "\n" + lines[i]
                    i += 1
        else:
            words = _bash_words(value, where)
            if len(words) > 1:
                raise ConfigError(f"{where}: value {value!r} has unquoted spaces: quote it "
                                  "or use an array VAR=(a b)")
            result[name] = words[0] if words else ""
    return result


# ---------------------------------------------------------------------------------------------
# value parsers (each names the variable/option in its error)

def parse_bool(name: str, value: str) -> bool:
    v = value.strip().lower()
    if v in BOOL_TRUE:
        return True
    if v in BOOL_FALSE:
        return False
    raise ConfigError(f"{name}={value!r}: expected one of true/false, yes/no, y/n, 1/0, on/off")


def parse_int(name: str, value: str, lo: int, hi: int) -> int:
    try:
        n = int(value.strip(), 0)
    except ValueError:
        raise ConfigError(f"{name}={value!r}: expected an integer {lo}..{hi}") from None
    if not lo <= n <= hi:
        raise ConfigError(f"{name}={value!r}: expected an integer {lo}..{hi}")
    return n


def parse_float(name: str, value: str, lo: float, hi: float) -> float:
    try:
        x = float(value.strip())
    except ValueError:
        raise ConfigError(f"{name}={value!r}: expected a number {lo}..{hi}") from None
    if not lo <= x <= hi:
        raise ConfigError(f"{name}={value!r}: expected a number {lo}..{hi}")
    return x


def parse_cpus(name: str, value: str) -> list[int]:
    """`1,2,4-6` (list with ranges) or `0x16` (hex mask) -> sorted distinct CPU ids."""
    v = value.strip()
    accepted = "expected a CPU list like 1,2,4-6 or a hex mask like 0x6"
    if not v:
        raise ConfigError(f"{name} is empty: {accepted}")
    cpus: set[int] = set()
    if v.lower().startswith("0x"):
        try:
            mask = int(v, 16)
        except ValueError:
            raise ConfigError(f"{name}={value!r}: {accepted}") from None
        cpus = {bit for bit in range(mask.bit_length()) if mask >> bit & 1}
    else:
        for part in v.split(","):
            m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
            if not m or (m.group(2) and int(m.group(2)) < int(m.group(1))):
                raise ConfigError(f"{name}={value!r}: {accepted}")
            lo = int(m.group(1))
            cpus.update(range(lo, int(m.group(2) or lo) + 1))
    if not cpus:
        raise ConfigError(f"{name}={value!r} selects no CPU: {accepted}")
    return sorted(cpus)


def normalise_pci(addr: str) -> str | None:
    """`5:8.1` / `0000:05:08.1` / `0000:05:08.1` upper case -> `0000:05:08.1`; None if not PCI."""
    m = PCI_RE.match(addr.strip())
    if not m:
        return None
    return "%04x:%02x:%02x.%x" % (int(m["dom"] or "0", 16), int(m["bus"], 16),
                                  int(m["dev"], 16), int(m["fn"]))


def parse_vf_spec(name: str, spec: str) -> str:
    """A VF: PCI address (normalised) or DPDK vdev devargs (`net_tap0,iface=vf0`)."""
    s = spec.strip()
    pci = normalise_pci(s)
    if pci:
        return pci
    if re.fullmatch(r"net_[A-Za-z0-9_]+(,[^\s]*)?", s):
        return s
    raise ConfigError(f"{name}: {spec!r} is neither a PCI address dddd:bb:dd.f nor DPDK devargs "
                      "of a virtual device such as net_tap0,iface=vf0")


def parse_static_vf(name: str, item: str, max_relays: int) -> tuple[str, int]:
    """`<VF>=<relay id>`; the id follows the LAST `=`."""
    vf, sep, rid = item.strip().rpartition("=")
    if not sep or not vf:
        raise ConfigError(f"{name}: {item!r}: expected <PCI address or devargs>=<relay id>, "
                          "e.g. 0000:05:08.1=1 or net_tap0,iface=vf0=1")
    return parse_vf_spec(name, vf), parse_int(f"{name} relay id in {item!r}", rid, 0,
                                                max_relays - 1)


def parse_cpu_pin(name: str, item: str, max_relays: int) -> tuple[int, tuple[int, int | None]]:
    """`<relay>:<cpu>[,<cpu>]` (first CPU = VF->VM, second = VM->VF)."""
    m = re.fullmatch(r"\s*(?:--virtio-cpu=|-c)?\s*(\d+):(\d+)(?:,(\d+))?\s*", item)
    if not m:
        raise ConfigError(f"{name}: {item!r}: expected <relay>:<cpu>[,<cpu>], e.g. 1:2,3")
    relay = parse_int(f"{name} relay in {item!r}", m.group(1), 0, max_relays - 1)
    vf2vm = int(m.group(2))
    vm2vf = int(m.group(3)) if m.group(3) is not None else None
    return relay, (vf2vm, vm2vf)


def _items(value: str | list[str]) -> list[str]:
    """A scalar (`"a b"`, also a literal `(a b)` left by systemd's EnvironmentFile) or an array."""
    if isinstance(value, list):
        return [w for v in value for w in v.split()]
    v = value.strip()
    if v.startswith("(") and v.endswith(")"):
        v = v[1:-1]
    return _bash_words(v, "list") if v else []


# ---------------------------------------------------------------------------------------------
# settings

@dataclass
class CoreSchedSettings:
    """The load balancer of the control plane (VIO4WD_CORE_SCHED_*)."""
    enable: bool = False
    poll_interval: float = 5.0   # seconds between stats polls (VIO4WD_CORE_SCHED_POLL_INTERVAL)
    sensitivity: float = 0.25    # rebalance only when imbalance improves by this fraction
    vf2vm_weight: int = 12       # VF->VM costs a bit more than VM->VF, as in the original
    vm2vf_weight: int = 10


CORE_SCHED_VARS = {
    "VIO4WD_CORE_SCHED_POLL_INTERVAL": ("poll_interval", lambda n, v: parse_float(n, v, 0.1, 3600)),
    "VIO4WD_CORE_SCHED_SENSITIVITY": ("sensitivity", lambda n, v: parse_float(n, v, 0.0, 1.0)),
    "VIO4WD_CORE_SCHED_VF2VM_WEIGHT": ("vf2vm_weight", lambda n, v: parse_int(n, v, 1, 1000)),
    "VIO4WD_CORE_SCHED_VM2VF_WEIGHT": ("vm2vf_weight", lambda n, v: parse_int(n, v, 1, 1000)),
}


@dataclass
class ForwarderSettings:
    cpus: list[int]
    master_lcore: int | None = None
    log_level: int = 6
    log_syslog: bool = False
    daemonize: bool = True
    ovsdb_sock: str | None = None
    jumbo: bool = False
    mrgbuf: bool = False
    tso: bool = False
    socket_owner: str = "libvirt-qemu"   # empty: inherit the daemon's user
    socket_group: str = "kvm"
    huge_dir: str = DEFAULT_HUGE_DIR
    static_vfs: list[tuple[str, int]] = field(default_factory=list)
    dynamic_sockets: bool = False
    same_numa: bool = False
    vfio_vf_token: str | None = None
    cpu_pins: dict[int, tuple[int, int | None]] = field(default_factory=dict)
    pid_dir: str = DEFAULT_PID_DIR
    zmq_config_ep: str = DEFAULT_ZMQ["config"]
    zmq_port_control_ep: str = DEFAULT_ZMQ["port_control"]
    zmq_stats_ep: str = DEFAULT_ZMQ["stats"]
    zmq_core_sched_ep: str = DEFAULT_ZMQ["core_sched"]
    socket_dir: str = DEFAULT_SOCKET_DIR
    socket_pattern: str = DEFAULT_SOCKET_PATTERN
    vhost_client: bool = False
    bind_vfio_pci: bool = False
    core_sched: CoreSchedSettings = field(default_factory=CoreSchedSettings)
    max_relays: int = MAX_RELAYS
    file_prefix: str = DEFAULT_FILE_PREFIX
    extra_eal_args: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for relay, (a, b) in self.cpu_pins.items():
            for cpu in (a, b):
                if cpu is not None and cpu not in self.cpus:
                    raise ConfigError(f"VIRTIOFWD_CPU_PINS/-c {relay}:{a}"
                                      f"{'' if b is None else f',{b}'}: CPU {cpu} is not a "
                                      f"worker CPU {self.cpus} (VIRTIOFWD_CPU_MASK/-C)")

    @property
    def pidfile(self) -> str:
        return os.path.join(self.pid_dir, "virtio-forwarder.pid")

    def socket_path(self, relay_id: int) -> str:
        """The vhost-user socket of a relay: `<socket_dir>/<pattern with %u = relay_id>`."""
        return os.path.join(self.socket_dir, self.socket_pattern.replace("%u", str(relay_id)))

    @classmethod
    def from_env(cls, env: dict[str, str | list[str]]) -> "ForwarderSettings":
        """Settings from `/etc/default/virtioforwarder` variables (as `read_env_file` returns)."""
        def scalar(name: str) -> str | None:
            v = env.get(name)
            if v is None:
                return None
            if isinstance(v, list):
                raise ConfigError(f"{name} is an array: expected a single value")
            return v

        if not scalar("VIRTIOFWD_CPU_MASK"):
            raise ConfigError("VIRTIOFWD_CPU_MASK is not set: give the worker CPUs, e.g. "
                              "VIRTIOFWD_CPU_MASK=1,2 or 0x6")
        kw: dict = {"cpus": parse_cpus("VIRTIOFWD_CPU_MASK", scalar("VIRTIOFWD_CPU_MASK"))}
        simple = {
            "VIRTIOFWD_LOG_LEVEL": ("log_level", lambda n, v: parse_int(n, v, 0, 7)),
            "VIRTIOFWD_OVSDB_SOCK_PATH": ("ovsdb_sock", lambda n, v: v or None),
            "VIRTIOFWD_JUMBO": ("jumbo", parse_bool),
            "VIRTIOFWD_MRGBUF": ("mrgbuf", parse_bool),
            "VIRTIOFWD_TSO": ("tso", parse_bool),
            "VIRTIOFWD_SOCKET_OWNER": ("socket_owner", lambda n, v: v),
            "VIRTIOFWD_SOCKET_GROUP": ("socket_group", lambda n, v: v),
            "VIRTIOFWD_HUGETLBFS_MOUNT_POINT": ("huge_dir", _nonempty_path),
            "VIRTIOFWD_DYNAMIC_SOCKETS": ("dynamic_sockets", parse_bool),
            "VIRTIOFWD_CPU_NIC_SAME_NUMA": ("same_numa", parse_bool),
            "VIRTIOFWD_VFIO_VF_TOKEN": ("vfio_vf_token", _uuid_or_none),
            "VIRTIOFWD_PID_DIR": ("pid_dir", _nonempty_path),
            "VIRTIOFWD_ZMQ_CONFIG_EP": ("zmq_config_ep", _endpoint),
            "VIRTIOFWD_ZMQ_PORT_CONTROL_EP": ("zmq_port_control_ep", _endpoint),
            "VIRTIOFWD_ZMQ_STATS_EP": ("zmq_stats_ep", _endpoint),
            "VIRTIOFWD_ZMQ_CORE_SCHED_EP": ("zmq_core_sched_ep", _endpoint),
            "VIRTIOFWD_SOCKET_DIR": ("socket_dir", _nonempty_path),
            "VIRTIOFWD_SOCKET_FNAME_PATTERN": ("socket_pattern", parse_socket_pattern),
            "VIRTIOFWD_MASTER_LCORE": ("master_lcore",
                                       lambda n, v: parse_int(n, v, 0, 4095) if v else None),
            "VIRTIOFWD_VHOST_CLIENT": ("vhost_client", parse_bool),
            "VIRTIOFWD_BIND_VFIO_PCI": ("bind_vfio_pci", parse_bool),
        }
        for name, (attr, parse) in simple.items():
            v = scalar(name)
            if v is not None:
                kw[attr] = parse(name, v)
        if env.get("VIRTIOFWD_STATIC_VFS") is not None:
            kw["static_vfs"] = [parse_static_vf("VIRTIOFWD_STATIC_VFS", item, MAX_RELAYS)
                                for item in _items(env["VIRTIOFWD_STATIC_VFS"])]
        if env.get("VIRTIOFWD_CPU_PINS") is not None:
            kw["cpu_pins"] = dict(parse_cpu_pin("VIRTIOFWD_CPU_PINS", item, MAX_RELAYS)
                                  for item in _cpu_pin_items(env["VIRTIOFWD_CPU_PINS"]))
        cs = CoreSchedSettings()
        if scalar("VIO4WD_CORE_SCHED_ENABLE") is not None:
            cs.enable = parse_bool("VIO4WD_CORE_SCHED_ENABLE", scalar("VIO4WD_CORE_SCHED_ENABLE"))
        for name in env:
            if name.startswith("VIO4WD_CORE_SCHED_") and name != "VIO4WD_CORE_SCHED_ENABLE":
                if name not in CORE_SCHED_VARS:
                    raise ConfigError(f"{name}: unknown core scheduler knob; known: "
                                      f"VIO4WD_CORE_SCHED_ENABLE, {', '.join(CORE_SCHED_VARS)}")
                attr, parse = CORE_SCHED_VARS[name]
                setattr(cs, attr, parse(name, scalar(name)))
        kw["core_sched"] = cs
        _check_static_vfs(kw.get("static_vfs", []), "VIRTIOFWD_STATIC_VFS")
        return cls(**kw)


def _cpu_pin_items(value: str | list[str]) -> list[str]:
    # accepts "1:2,3 2:3", "--virtio-cpu=1:2,3 --virtio-cpu=2:3", "-c 1:2,3" and arrays of these
    words = _items(value)
    items, i = [], 0
    while i < len(words):
        if words[i] in ("-c", "--virtio-cpu") and i + 1 < len(words):
            items.append(words[i + 1])
            i += 2
        else:
            items.append(words[i])
            i += 1
    return items


def _check_static_vfs(vfs: list[tuple[str, int]], name: str) -> None:
    seen: dict[int, str] = {}
    for vf, relay in vfs:
        if relay in seen:
            raise ConfigError(f"{name}: relay {relay} given twice ({seen[relay]} and {vf}); "
                              "one VF per relay")
        seen[relay] = vf


def parse_socket_pattern(name: str, value: str) -> str:
    if value.count("%u") != 1 or "%" in value.replace("%u", "") or "/" in value:
        raise ConfigError(f"{name}={value!r}: expected a file name with exactly one %u, no "
                          "other % and no '/', e.g. virtio-forwarder%u.sock")
    return value


def _nonempty_path(name: str, value: str) -> str:
    if not value.strip():
        raise ConfigError(f"{name} is empty: expected an absolute path")
    if not value.startswith("/"):
        raise ConfigError(f"{name}={value!r}: expected an absolute path")
    return value


def _uuid_or_none(name: str, value: str) -> str | None:
    if not value:
        return None
    if not re.fullmatch(r"[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}", value):
        raise ConfigError(f"{name}={value!r}: expected a UUID like "
                          "14d63f20-8445-11ea-8900-1f9ce7d5650d")
    return value.lower()


def _endpoint(name: str, value: str) -> str:
    if not re.fullmatch(r"(ipc|tcp|inproc)://\S+", value):
        raise ConfigError(f"{name}={value!r}: expected a ZeroMQ endpoint such as "
                          "ipc:///var/run/virtio-forwarder/stats or tcp://127.0.0.1:5555")
    return value


# ---------------------------------------------------------------------------------------------
# the daemon's command line

def _arg(parse, name):
    def conv(value: str):
        try:
            return parse(name, value)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return conv


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="virtio-forwarder",
        description="Relay SR-IOV VFs (DPDK ethdevs) to QEMU guests over vhost-user "
                    "(vio4wd, a drop-in replacement for Netronome's virtio-forwarder).",
        epilog="Arguments after '--' go to the DPDK EAL verbatim (e.g. '-- --no-huge -m 256 "
               "--vdev net_null0'); --env-file reads /etc/default/virtioforwarder variables "
               "first, options given here override them. VF syntax: <PCI dddd:bb:dd.f or "
               "devargs such as net_tap0,iface=vf0>=<relay id> (id after the last '=').")
    a = p.add_argument
    a("--env-file", metavar="PATH", help="read VIRTIOFWD_* variables from this file first "
      f"(e.g. {ENV_FILE}); without it and without -C, VIRTIOFWD_* environment variables are used")
    a("-C", "--cpus", type=_arg(parse_cpus, "-C/--cpus"),
      help="worker CPUs: list (1,2,4-6) or hex mask (0x6); mandatory")
    a("-M", "--master-lcore", type=_arg(lambda n, v: parse_int(n, v, 0, 4095), "-M"),
      help="CPU of the main (control) thread")
    a("-n", "--nodaemon", nargs="?", const="", metavar="log_syslog",
      help="stay in the foreground; '-n log_syslog' / '--nodaemon=log_syslog' logs to syslog")
    a("-l", "--loglevel", type=_arg(lambda n, v: parse_int(n, v, 0, 7), "-l/--loglevel"),
      help="syslog level 0-7 (default 6)")
    a("-p", "--pid-path", metavar="DIR", type=_arg(_nonempty_path, "-p/--pid-path"),
      help=f"pidfile directory (default {DEFAULT_PID_DIR})")
    a("-H", "--huge-dir", type=_arg(_nonempty_path, "-H/--huge-dir"),
      help=f"hugetlbfs mount (default {DEFAULT_HUGE_DIR})")
    a("-O", "--ovsdb-sock", help="OVSDB unix socket to watch for VF ports")
    a("-Y", "--zmq-config-ep", type=_arg(_endpoint, "-Y"))
    a("-Z", "--zmq-port-control-ep", type=_arg(_endpoint, "-Z"))
    a("-z", "--zmq-stats-ep", type=_arg(_endpoint, "-z"))
    a("-s", "--zmq-core-sched-ep", type=_arg(_endpoint, "-s"))
    a("-u", "--vhost-username", help="owner of the sockets (default libvirt-qemu; '' inherit)")
    a("-g", "--vhost-groupname", help="group of the sockets (default kvm; '' inherit)")
    a("-V", "--vhost-path", type=_arg(_nonempty_path, "-V/--vhost-path"),
      help=f"socket directory (default {DEFAULT_SOCKET_DIR})")
    a("-S", "--vhost-socket", type=_arg(parse_socket_pattern, "-S/--vhost-socket"),
      help=f"socket file pattern with one %%u (default "
      f"{DEFAULT_SOCKET_PATTERN.replace('%', '%%')})")
    a("-c", "--virtio-cpu", action="append", default=[], metavar="RELAY:CPU[,CPU]",
      help="pin a relay: first CPU VF->VM, second VM->VF")
    a("-J", "--enable-jumbo", action="store_true")
    a("-R", "--enable-mrgbuf", action="store_true")
    a("-T", "--enable-tso", action="store_true")
    a("-P", "--add-pci-vf", action="append", default=[], metavar="VF=ID",
      help="static VF: PCI address or devargs, '=' relay id")
    a("-i", "--vhostuser-client", action="store_true", help="vhost-user client mode")
    a("-d", "--dynamic-sockets", action="store_true",
      help="create sockets only on ADD_SOCK requests")
    a("-a", "--same-numa", action="store_true", help="pin relays to CPUs on the VF's node")
    a("-t", "--vfio-vf-token", type=_arg(_uuid_or_none, "-t"))
    a("-v", "--version", action="version", version=f"virtio-forwarder {VERSION}")
    a("--file-prefix", help=f"EAL file prefix (default {DEFAULT_FILE_PREFIX})")
    return p


def parse_args(argv: list[str], environ: dict[str, str] | None = None) -> ForwarderSettings:
    """Daemon command line -> settings (env file / environment first, options override)."""
    eal_extra: list[str] = []
    if "--" in argv:
        idx = argv.index("--")
        argv, eal_extra = argv[:idx], argv[idx + 1:]
    ns = build_parser().parse_args(argv)
    env: dict[str, str | list[str]] = {}
    environ = os.environ if environ is None else environ
    env.update({k: v for k, v in environ.items() if k.startswith(("VIRTIOFWD_", "VIO4WD_CORE_"))})
    if ns.env_file:
        env.update(read_env_file(ns.env_file))
    if ns.cpus is not None:
        env["VIRTIOFWD_CPU_MASK"] = ",".join(map(str, ns.cpus))
    elif not env.get("VIRTIOFWD_CPU_MASK"):
        raise ConfigError("no worker CPUs: give -C/--cpus (e.g. -C 1,2 or -C 0x6) or "
                          "VIRTIOFWD_CPU_MASK in --env-file")
    s = ForwarderSettings.from_env(env)
    over = {
        "master_lcore": ns.master_lcore, "log_level": ns.loglevel, "pid_dir": ns.pid_path,
        "huge_dir": ns.huge_dir, "ovsdb_sock": ns.ovsdb_sock, "zmq_config_ep": ns.zmq_config_ep,
        "zmq_port_control_ep": ns.zmq_port_control_ep, "zmq_stats_ep": ns.zmq_stats_ep,
        "zmq_core_sched_ep": ns.zmq_core_sched_ep, "socket_owner": ns.vhost_username,
        "socket_group": ns.vhost_groupname, "socket_dir": ns.vhost_path,
        "socket_pattern": ns.vhost_socket, "vfio_vf_token": ns.vfio_vf_token,
        "file_prefix": ns.file_prefix,
    }
    changes = {k: v for k, v in over.items() if v is not None}
    for flag, attr in (("enable_jumbo", "jumbo"), ("enable_mrgbuf", "mrgbuf"),
                       ("enable_tso", "tso"), ("vhostuser_client", "vhost_client"),
                       ("dynamic_sockets", "dynamic_sockets"), ("same_numa", "same_numa")):
        if getattr(ns, flag):
            changes[attr] = True
    if ns.nodaemon is not None:
        changes["daemonize"] = False
        if ns.nodaemon not in ("", "log_syslog"):
            raise ConfigError(f"-n/--nodaemon={ns.nodaemon!r}: the only accepted value is "
                              "log_syslog")
        changes["log_syslog"] = ns.nodaemon == "log_syslog"
    else:
        changes["log_syslog"] = True  # a daemon has no terminal
    if ns.add_pci_vf:
        changes["static_vfs"] = s.static_vfs + [parse_static_vf("-P/--add-pci-vf", v, MAX_RELAYS)
                                                for v in ns.add_pci_vf]
        _check_static_vfs(changes["static_vfs"], "-P/--add-pci-vf")
    if ns.virtio_cpu:
        changes["cpu_pins"] = {**s.cpu_pins, **dict(parse_cpu_pin("-c/--virtio-cpu", v, MAX_RELAYS)
                                                    for v in ns.virtio_cpu)}
    changes["extra_eal_args"] = eal_extra
    return dataclasses.replace(s, **changes)


# ---------------------------------------------------------------------------------------------
# EAL arguments

def host_numa_map() -> dict[int, int]:
    """Online CPU -> NUMA node, from sysfs (node 0 when the kernel has no NUMA info)."""
    result = {}
    online = (SYSFS_CPU / "online").read_text().strip()
    for cpu in parse_cpus("/sys/devices/system/cpu/online", online):
        nodes = sorted((SYSFS_CPU / f"cpu{cpu}").glob("node[0-9]*"))
        result[cpu] = int(nodes[0].name[4:]) if nodes else 0
    return result


def main_lcore_cpu(settings: ForwarderSettings, numa_of_cpu: dict[int, int]) -> int:
    """The main thread's CPU: -M, else the first online CPU that is not a worker, else the first
    worker."""
    if settings.master_lcore is not None:
        return settings.master_lcore
    free = [c for c in sorted(numa_of_cpu) if c not in settings.cpus]
    return free[0] if free else settings.cpus[0]


def eal_args(settings: ForwarderSettings, numa_of_cpu: dict[int, int]) -> list[str]:
    """EAL arguments: lcore id == CPU id for workers (pinned); the main lcore on its CPU (id 127
    if it shares a worker's CPU); huge dir, file prefix, socket-mem only on nodes with workers;
    no PCI probing at start (an allow-list naming no usable device: VFs are hot-plugged).
    `settings.extra_eal_args` come last; when they choose memory themselves (`--no-huge`,
    `--in-memory`, `-m`, `--socket-mem`, `--file-prefix`, `--huge-dir`) ours are left out."""
    for cpu in settings.cpus:
        if cpu not in numa_of_cpu:
            raise ConfigError(f"worker CPU {cpu} is not online (online: {sorted(numa_of_cpu)}); "
                              "fix VIRTIOFWD_CPU_MASK / -C")
    main_cpu = main_lcore_cpu(settings, numa_of_cpu)
    if main_cpu not in numa_of_cpu:
        raise ConfigError(f"main lcore CPU {main_cpu} is not online; fix "
                          "VIRTIOFWD_MASTER_LCORE / -M")
    main_id = HIGH_LCORE if main_cpu in settings.cpus else main_cpu
    lcores = [f"{main_id}@{main_cpu}"] + [f"{c}@{c}" for c in settings.cpus]
    args = ["virtio-forwarder", "--lcores", ",".join(lcores), "--main-lcore", str(main_id),
            "--log-level", str(settings.log_level + 1)]     # EAL levels are syslog's + 1
    if settings.log_level < 7:      # vhost-user message traces only when debugging
        args += ["--log-level", "lib.vhost.config:notice"]
    extra = settings.extra_eal_args
    has = lambda *opts: any(e == o or e.startswith(o + "=") for e in extra for o in opts)
    if not has("--no-huge", "--in-memory", "--file-prefix"):
        args += ["--file-prefix", settings.file_prefix]
    if not has("--no-huge", "--huge-dir"):
        args += ["--huge-dir", settings.huge_dir]
    if not has("--no-huge", "-m", "--socket-mem"):
        nodes = {numa_of_cpu[c] for c in settings.cpus}
        args += ["--socket-mem", ",".join(str(SOCKET_MEM_MB if n in nodes else 0)
                                          for n in range(max(numa_of_cpu.values()) + 1))]
    if not has("--no-pci", "-a", "--allow", "-b", "--block"):
        args += ["-a", "0000:00:00.0"]  # probe nothing at start; VFs are hot-plugged
    if settings.vfio_vf_token:
        args += ["--vfio-vf-token", settings.vfio_vf_token]
    return args + extra
