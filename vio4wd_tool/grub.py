"""Kernel arguments in `/etc/default/grub`, edited at the token level, and the boot config regenerated.

`vio4wd-tool grub` takes the kernel args of the plan (`plan["kernel_args"]`: hugepages, isolation,
IRQ affinity, IOMMU passthrough) and puts them into `GRUB_CMDLINE_LINUX`:

* foreign tokens, their order and the quoting of the value stay as they are;
* only managed tokens are replaced (a managed key keeps its position, duplicates go);
* `default_hugepagesz=`/`hugepagesz=`/`hugepages=` form one ordered block (the kernel binds each
  `hugepages=` to the `hugepagesz=` before it), put where the first such token was;
* `intel_iommu=pt` is dropped: the kernel's intel_iommu= parser has no `pt`, so it is ignored;
  `iommu=pt` gives effective passthrough (plus `intel_iommu=on` for vfio-pci on Intel);
* managed tokens in `GRUB_CMDLINE_LINUX_DEFAULT` (appended after ours, so they would win) go.

Then the boot config is regenerated with the distribution's tool (update-grub; grub2-mkconfig to
the right grub.cfg; grubby on BLS systems) when it lacks the args, and reboot-required is
reported by comparing with `/proc/cmdline`.
"""
from __future__ import annotations

import re
import shutil

from .actions import ActionError, ActionResult, Change, emit, execute, file_change, require_root, run_cmd
from .kernel import split_cmdline
from .root import Root

GRUB_DEFAULT = "/etc/default/grub"
GRUB_DEFAULT_D = "/etc/default/grub.d"
CMDLINE = "/proc/cmdline"
VAR = "GRUB_CMDLINE_LINUX"
VAR_DEFAULT = "GRUB_CMDLINE_LINUX_DEFAULT"
HUGE_KEYS = ("default_hugepagesz", "hugepagesz", "hugepages")
ISOLATION_KEYS = ("isolcpus", "nohz_full", "rcu_nocbs", "irqaffinity")
IOMMU_KEYS = ("iommu", "intel_iommu")
MANAGED_KEYS = HUGE_KEYS + ISOLATION_KEYS + IOMMU_KEYS
BLS_ENTRIES = "/boot/loader/entries"
SBIN = ("/usr/sbin", "/sbin", "/usr/bin", "/bin")


def key(token: str) -> str:
    return token.partition("=")[0]


# ------------------------------------------------------------------ the file

class Assignment:
    """The last `VAR=...` line of a shell variables file: prefix, quote, tokens, rest of line."""

    def __init__(self, lines: list[str], var: str):
        self.lines, self.var, self.index = lines, var, None
        self.prefix, self.quote, self.value, self.rest = f"{var}=", '"', "", "\n"
        pat = re.compile(rf"^(\s*(?:export\s+)?{var}=)(.*?)(\r?\n?)$")
        for i, line in enumerate(lines):
            m = pat.match(line)
            if m:
                self.index = i
                self.prefix, body, eol = m.group(1), m.group(2), m.group(3) or "\n"
                self.quote, self.value, self.rest = self._split(body, i)
                self.rest += eol

    def _split(self, body: str, i: int) -> tuple[str, str, str]:
        if body[:1] in ('"', "'"):
            q = body[0]
            j = 1
            while j < len(body):
                if body[j] == "\\" and q == '"':
                    j += 2
                    continue
                if body[j] == q:
                    return q, body[1:j], body[j + 1:]
                j += 1
            raise ActionError(f"{GRUB_DEFAULT}:{i + 1}: {self.var} spans several lines (no closing {q}): "
                              "join it onto one line, then re-run")
        m = re.match(r"(\S*)(.*)", body)
        return "", m.group(1), m.group(2)

    @property
    def tokens(self) -> list[str]:
        return self.value.split()

    def set(self, tokens: list[str]) -> None:
        q = self.quote or '"'
        value = " ".join(tokens)
        line = f"{self.prefix}{q}{value}{q}{self.rest if self.index is not None else chr(10)}"
        if self.index is None:
            if self.lines and not self.lines[-1].endswith("\n"):
                self.lines[-1] += "\n"
            self.lines.append(line)
            self.index = len(self.lines) - 1
        else:
            self.lines[self.index] = line
        self.value, self.quote = value, q


def fix_intel_iommu(token: str) -> str | None:
    """intel_iommu=pt / intel_iommu=on,pt -> None / intel_iommu=on ('pt' is no intel_iommu value)."""
    k, _, v = token.partition("=")
    opts = [o for o in v.split(",") if o and o != "pt"]
    return f"{k}={','.join(opts)}" if opts else None


def merge(tokens: list[str], desired: list[str]) -> list[str]:
    """`tokens` with the managed ones replaced by `desired` (see the module doc)."""
    block = [t for t in desired if key(t) in HUGE_KEYS]
    singles: dict[str, str] = {}
    for t in desired:
        if key(t) not in HUGE_KEYS:
            singles[key(t)] = t
    out: list[str] = []
    placed_block = not block
    seen: set[str] = set()
    for t in tokens:
        k = key(t)
        if k in HUGE_KEYS and block:
            if not placed_block:
                out += block
                placed_block = True
            continue
        if k in singles:
            if k not in seen:
                out.append(singles[k])
                seen.add(k)
            continue
        if k == "intel_iommu":
            t = fix_intel_iommu(t)
            if t is None:
                continue
        out.append(t)
    if not placed_block:
        out += block
    out += [t for k, t in singles.items() if k not in seen]
    return out


def strip_managed(tokens: list[str], desired: list[str]) -> list[str]:
    """Tokens of GRUB_CMDLINE_LINUX_DEFAULT minus those that would override `desired`."""
    keys = {key(t) for t in desired}
    out = []
    for t in tokens:
        if key(t) in keys:
            continue
        if key(t) == "intel_iommu":
            t = fix_intel_iommu(t)
            if t is None:
                continue
        out.append(t)
    return out


def desired_args(plan: dict, *, pages_2m: int | None = None, pages_1g: int | None = None,
                 driver: str | None = None, intel: bool = False, isolation: bool = True) -> list[str]:
    """The plan's kernel args with the operator's overrides applied."""
    from .iommu import iommu_args

    args = list(plan.get("kernel_args") or [])
    if pages_2m is not None or pages_1g is not None:
        out, size = [], None
        for t in args:
            if key(t) == "hugepagesz":
                size = t.split("=", 1)[1]
            if key(t) == "hugepages" and size == "2M" and pages_2m is not None:
                t = f"hugepages={pages_2m}"
            if key(t) == "hugepages" and size == "1G" and pages_1g is not None:
                t = f"hugepages={pages_1g}"
            out.append(t)
        if pages_1g and not any(t == "hugepagesz=1G" for t in out):
            last = max(i for i, t in enumerate(out) if key(t) in HUGE_KEYS)
            out[last + 1:last + 1] = ["hugepagesz=1G", f"hugepages={pages_1g}"]
        if pages_1g == 0 and "hugepagesz=1G" in out:
            i = out.index("hugepagesz=1G")
            del out[i:i + 2]
        args = out
    if not isolation:
        args = [t for t in args if key(t) not in ISOLATION_KEYS]
    if driver is not None:
        args = [t for t in args if key(t) not in IOMMU_KEYS] + iommu_args(driver, intel)
    return args


def default_args(pages_2m: int, pages_1g: int | None, driver: str, intel: bool) -> list[str]:
    """Kernel args without a plan (hugepages and IOMMU only)."""
    from .iommu import iommu_args

    args = ["default_hugepagesz=2M", "hugepagesz=2M", f"hugepages={pages_2m}"]
    if pages_1g:
        args += ["hugepagesz=1G", f"hugepages={pages_1g}"]
    return args + iommu_args(driver, intel)


# ------------------------------------------------------------------ regeneration

def _which(root: Root, name: str) -> str | None:
    if root.live:
        return shutil.which(name, path=":".join(SBIN) + ":" + __import__("os").environ.get("PATH", ""))
    return next((f"{d}/{name}" for d in SBIN if root.exists(f"{d}/{name}")), None)


def _bls(root: Root, grub_text: str) -> bool:
    if not root.listdir(BLS_ENTRIES):
        return False
    m = re.search(r"^\s*GRUB_ENABLE_BLSCFG=['\"]?(\w+)", grub_text, re.M)
    return (m.group(1).lower() == "true") if m else True


def grub2_cfg(root: Root) -> str:
    """grub2-mkconfig's target: the EFI grub.cfg on EFI systems whose one is not a stub, else /boot/grub2."""
    if root.exists("/sys/firmware/efi"):
        for d in root.glob("/boot/efi/EFI", "*"):
            cfg = f"{d}/grub.cfg"
            text = root.read(cfg)
            if text is not None and "configfile" not in text and "linux" in text:
                return cfg
    return "/boot/grub2/grub.cfg"


def regen_plan(root: Root, grub_text: str, args: list[str], keys: list[str]):
    """(tool description, argvs, config files holding the result) for this host.

    On BLS systems grubby first removes every managed key (`keys`), then adds `args` in order."""
    grubby = _which(root, "grubby")
    if _bls(root, grub_text) and grubby:
        cmds = [[grubby, "--update-kernel=ALL", f"--remove-args={' '.join(keys)}"],
                [grubby, "--update-kernel=ALL", f"--args={' '.join(args)}"]]
        return "grubby (BLS entries)", cmds, root.glob(BLS_ENTRIES, "*.conf")
    tool = _which(root, "update-grub")
    if tool:
        return "update-grub", [[tool]], ["/boot/grub/grub.cfg"]
    tool = _which(root, "grub2-mkconfig")
    if tool:
        cfg = grub2_cfg(root)
        return f"grub2-mkconfig -o {cfg}", [[tool, "-o", cfg]], [cfg]
    tool = _which(root, "grub-mkconfig")
    if tool:
        return "grub-mkconfig -o /boot/grub/grub.cfg", [[tool, "-o", "/boot/grub/grub.cfg"]], ["/boot/grub/grub.cfg"]
    return None, [], []


def config_has(text: str, args: list[str], drop: list[str]) -> bool:
    """Every kernel line (`linux ...` in grub.cfg, `options ...` in BLS entries) has `args`."""
    lines = [l.split() for l in text.splitlines() if re.match(r"\s*(linux(efi|16)?|options)\s", l)]
    if not lines:
        return False
    return all(all(a in toks for a in args) and not any(d in toks for d in drop) for toks in lines)


def running_mismatch(cmdline: list[str], args: list[str]) -> list[str]:
    """Desired args the running kernel was not booted with (plus ineffective ones it was)."""
    missing = [a for a in args if a not in cmdline]
    block = [a for a in args if key(a) in HUGE_KEYS]
    if block and not missing and [t for t in cmdline if key(t) in HUGE_KEYS] != block:
        missing.append(" ".join(block) + " (order)")
    missing += [t for t in cmdline if key(t) == "intel_iommu" and fix_intel_iommu(t) != t]
    return missing


# ------------------------------------------------------------------ the action

def grub_action(root: Root, args: list[str], *, check: bool = False, regenerate: bool = True) -> ActionResult:
    result = ActionResult("grub")
    text = root.read(GRUB_DEFAULT)
    if text is None:
        raise ActionError(f"no {GRUB_DEFAULT}: is GRUB the boot loader? (systemd-boot: put the args "
                          f"into /etc/kernel/cmdline; they are: {' '.join(args)})")
    raw = root.path(GRUB_DEFAULT).read_text()
    lines = raw.splitlines(True)
    a = Assignment(lines, VAR)
    old_tokens = a.tokens
    new_tokens = merge(old_tokens, args)
    drop = [t for t in old_tokens if t not in new_tokens]
    if new_tokens != old_tokens or a.index is None:
        a.set(new_tokens)
    d = Assignment(lines, VAR_DEFAULT)
    if d.index is not None:
        stripped = strip_managed(d.tokens, args)
        if stripped != d.tokens:
            result.notes.append(f"removed {' '.join(t for t in d.tokens if t not in stripped)} from {VAR_DEFAULT} "
                                f"(it comes after {VAR} on the kernel command line and would override it)")
            drop += [t for t in d.tokens if t not in stripped]
            d.set(stripped)
    new = "".join(lines)
    ch = file_change(root, GRUB_DEFAULT, new, what=f"set kernel args in {GRUB_DEFAULT} {VAR}", reboot=True)
    if ch:
        result.changes.append(ch)
    for cfg in root.glob(GRUB_DEFAULT_D, "*.cfg"):
        if re.search(rf"^\s*(export\s+)?{VAR}=(?!['\"]?\${VAR}\b)", root.read(cfg, "") or "", re.M):
            result.notes.append(f"{cfg} sets {VAR} itself and overrides {GRUB_DEFAULT}: edit it by hand")

    managed = [t for t in new_tokens if key(t) in MANAGED_KEYS]
    tool, cmds, cfgs = regen_plan(root, raw, managed, sorted({key(t) for t in drop + managed}))
    cfg_ok = bool(cfgs) and all(config_has(root.read(c, "") or "", args, drop) for c in cfgs)
    if regenerate and (ch is not None or not cfg_ok):
        if not root.live:
            result.notes.append(f"not regenerating the boot config ({tool or 'no tool found'}): --root is not /")
        elif tool is None:
            raise ActionError("no update-grub, grub2-mkconfig, grub-mkconfig or grubby found: install "
                              "grub2-common (Debian/Ubuntu) or grub2-tools (RHEL/Fedora)")
        else:
            def regen(cmds=cmds):
                for c in cmds:
                    run_cmd(c, timeout=300)
            result.changes.append(Change(f"regenerate the boot config with {tool}", apply=regen, reboot=True))
    running = split_cmdline(root.read(CMDLINE, "") or "")
    stale = running_mismatch(running, args)
    result.data = {"file": GRUB_DEFAULT, VAR: " ".join(new_tokens), "args": args, "tool": tool,
                   "configs": cfgs, "running_lacks": stale, "reboot_required": bool(stale)}
    if stale:
        result.notes.append("the running kernel lacks: " + " ".join(stale))
    if result.changes and not check and root.live:
        require_root(f"editing {GRUB_DEFAULT}")
    return execute(result, check)


def args_for(root: Root, plan: dict | None, *, pages_2m: int | None = None, pages_1g: int | None = None,
             driver: str | None = None, isolation: bool = True) -> list[str]:
    """The kernel args to manage on this host: the plan's with the operator's overrides (or, with
    no plan, only hugepage and IOMMU args); the IOMMU args follow the host's IOMMU hardware."""
    from .host import Host
    from .iommu import is_intel

    for name, v in (("pages_2m", pages_2m), ("pages_1g", pages_1g)):
        if v is not None and v < 0:
            raise ActionError(f"--{name.replace('_', '-')} {v}: expected a page count >= 0")
    intel = is_intel(Host(root))
    if plan is None:
        return default_args(pages_2m, pages_1g, driver or "igb_uio", intel)
    return desired_args(plan, pages_2m=pages_2m, pages_1g=pages_1g, driver=driver, intel=intel,
                        isolation=isolation)


def cmd_grub(args) -> int:
    from .plan import load_plan

    root = Root(args.root)
    try:
        plan = load_plan(args.plan, root=root)
    except ActionError:
        if args.pages_2m is None:
            raise
        plan = None
    want = args_for(root, plan, pages_2m=args.pages_2m, pages_1g=args.pages_1g, driver=args.driver,
                    isolation=args.isolation)
    result = grub_action(root, want, check=args.check, regenerate=args.regenerate)
    if plan is None:
        result.notes.insert(0, f"no plan at {args.plan}: only hugepage and IOMMU args "
                               "(vio4wd-tool plan adds isolation)")
    return emit(result, args.json)


def register(sub) -> None:
    import argparse

    from .plan import add_common_args

    p = sub.add_parser("grub", help="put the plan's kernel args into /etc/default/grub and regenerate the "
                       "boot config")
    add_common_args(p)
    p.add_argument("--pages-2m", type=int, metavar="N", help="boot-time 2 MiB pages (overrides the plan)")
    p.add_argument("--pages-1g", type=int, metavar="N", help="boot-time 1 GiB pages (overrides the plan; 0 drops)")
    p.add_argument("--driver", choices=("igb_uio", "vfio-pci"), help="VF driver for the IOMMU args "
                   "(default: the plan's)")
    p.add_argument("--isolation", action=argparse.BooleanOptionalAction, default=True,
                   help="manage isolcpus/nohz_full/rcu_nocbs/irqaffinity (default yes)")
    p.add_argument("--regenerate", action=argparse.BooleanOptionalAction, default=True,
                   help="regenerate grub.cfg / BLS entries (default yes)")
    p.set_defaults(func=cmd_grub)
