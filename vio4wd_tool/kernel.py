"""The running kernel: release, command line tokens, sysctls."""
from __future__ import annotations

import shlex
from dataclasses import dataclass

from .root import Root

CMDLINE = "/proc/cmdline"
OSRELEASE = "/proc/sys/kernel/osrelease"


def split_cmdline(text: str) -> list[str]:
    """Kernel command line -> tokens (quotes honoured; stops at '--', the init's arguments)."""
    try:
        toks = shlex.split(text)
    except ValueError:
        toks = text.split()
    return toks[:toks.index("--")] if "--" in toks else toks


def token_values(tokens: list[str], key: str) -> list[str]:
    """All values of `key=` in order ('' for a bare `key`)."""
    out = []
    for t in tokens:
        k, eq, v = t.partition("=")
        if k == key:
            out.append(v if eq else "")
    return out


@dataclass
class Kernel:
    release: str
    cmdline: list[str]

    def value(self, key: str) -> str | None:
        vals = token_values(self.cmdline, key)
        return vals[-1] if vals else None


def probe(root: Root) -> Kernel:
    return Kernel(release=root.read(OSRELEASE, "") or "", cmdline=split_cmdline(root.read(CMDLINE, "") or ""))


def sysctl(root: Root, name: str) -> str | None:
    return root.read("/proc/sys/" + name.replace(".", "/"))
