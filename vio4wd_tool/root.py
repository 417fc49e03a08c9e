"""A read-only view of a host's files under a root prefix, with recording for `capture`.

Every probe reads the host through a `Root`, never through `open()` directly, so that the same
code runs against the live machine (`Root("/")`) and against a captured tree
(`Root("tests/fixtures/captures/x")`).  Facts that are not files (a command's output, whether
`/dev/kvm` opens) go through `Root.fact()`: computed live, read back from `FACTS_DIR` in a
captured tree.
"""
from __future__ import annotations

import errno
import fnmatch
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Callable

FACTS_DIR = ".vio4wd/facts"  # inside a captured tree: one file per fact
META_FILE = ".vio4wd/capture.json"


class Root:
    """Files of a host below `prefix`; `record=True` remembers every path read."""

    def __init__(self, prefix: str | os.PathLike = "/", record: bool = False):
        self.prefix = Path(prefix).resolve()
        self.live = str(self.prefix) == "/"
        self.recorded: set[str] | None = set() if record else None
        self.facts: dict[str, str | None] = {}

    def __repr__(self) -> str:
        return f"Root({str(self.prefix)!r})"

    def path(self, p: str) -> Path:
        """The real path of host path `p` (absolute, as seen on the host)."""
        return self.prefix / p.lstrip("/")

    def _note(self, p: str) -> None:
        if self.recorded is not None:
            self.recorded.add("/" + p.lstrip("/"))

    def read(self, p: str, default: str | None = None) -> str | None:
        """Text of a file, stripped of the trailing newline; `default` when unreadable."""
        self._note(p)
        try:
            with open(self.path(p), "rb") as f:
                data = f.read()
        except OSError:
            return default
        return data.decode("utf-8", "replace").rstrip("\n")

    def read_bytes(self, p: str) -> bytes | None:
        self._note(p)
        try:
            with open(self.path(p), "rb") as f:
                return f.read()
        except OSError:
            return None

    def read_int(self, p: str, default: int | None = None, base: int = 10) -> int | None:
        text = self.read(p)
        if text is None:
            return default
        try:
            return int(text.strip(), base)
        except ValueError:
            return default

    def exists(self, p: str) -> bool:
        self._note(p)
        return os.path.lexists(self.path(p))

    def is_dir(self, p: str) -> bool:
        self._note(p)
        return self.path(p).is_dir()

    def listdir(self, p: str) -> list[str]:
        """Sorted entries of a directory; [] when it does not exist."""
        self._note(p)
        try:
            return sorted(os.listdir(self.path(p)))
        except OSError:
            return []

    def glob(self, directory: str, pattern: str) -> list[str]:
        """Host paths of the entries of `directory` matching `pattern`."""
        d = directory.rstrip("/")
        return [f"{d}/{n}" for n in self.listdir(directory) if fnmatch.fnmatch(n, pattern)]

    def link_name(self, p: str) -> str | None:
        """Last component of a symlink's target (e.g. a device's driver name)."""
        self._note(p)
        try:
            return os.path.basename(os.readlink(self.path(p)))
        except OSError:
            return None

    def stat(self, p: str) -> os.stat_result | None:
        self._note(p)
        try:
            return os.stat(self.path(p))
        except OSError:
            return None

    def fact(self, name: str, compute: Callable[[], str | None]) -> str | None:
        """A non-file fact: computed on the live host, read from FACTS_DIR in a captured tree."""
        if name in self.facts:
            return self.facts[name]
        if self.live:
            value = compute()
        else:  # not recorded as a file: capture() writes every fact itself
            try:
                value = self.path(f"{FACTS_DIR}/{name}").read_text()
            except OSError:
                value = None
        self.facts[name] = value
        return value

    def command(self, name: str, argv: list[str], timeout: float = 10) -> str | None:
        """stdout of a command run on the live host (None if missing or failing)."""

        def run() -> str | None:
            if shutil.which(argv[0]) is None:
                return None
            try:
                out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                                     stdin=subprocess.DEVNULL)
            except (OSError, subprocess.TimeoutExpired):
                return None
            return out.stdout if out.returncode == 0 else None

        return self.fact(name, run)


def capture(root: Root, dest: str | os.PathLike) -> list[str]:
    """Copy every recorded path of `root` (plus symlinks on the way) and its facts into `dest`.

    Returns the host paths copied.  Symlinks are recreated (absolute targets made relative to
    the tree) and their targets captured too, so sysfs device links resolve inside the copy.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    copied: list[str] = []
    seen: set[str] = set()
    for p in sorted(root.recorded or ()):
        _mirror(root.prefix, dest, p, copied, seen, depth=0)
    facts = dest / FACTS_DIR
    facts.mkdir(parents=True, exist_ok=True)
    for name, value in sorted(root.facts.items()):
        if value is not None:
            (facts / name).write_text(value)
    (dest / META_FILE).write_text(json.dumps({"files": len(copied), "facts": sorted(root.facts)},
                                             indent=1) + "\n")
    return copied


def _mirror(src: Path, dst: Path, hostpath: str, copied: list[str], seen: set[str], depth: int) -> None:
    if hostpath in seen or depth > 40:
        return
    seen.add(hostpath)
    parts = [x for x in hostpath.split("/") if x]
    cur = ""
    for i, part in enumerate(parts):
        cur = f"{cur}/{part}"
        s = src / cur.lstrip("/")
        d = dst / cur.lstrip("/")
        if s.is_symlink():
            target = os.readlink(s)
            if not os.path.lexists(d):
                d.parent.mkdir(parents=True, exist_ok=True)
                if os.path.isabs(target):
                    rel = os.path.relpath(target, os.path.dirname(cur))
                    os.symlink(rel, d)
                else:
                    os.symlink(target, d)
            resolved = os.path.normpath(os.path.join(os.path.dirname(cur), target))
            rest = "/".join(parts[i + 1:])
            _mirror(src, dst, resolved + ("/" + rest if rest else ""), copied, seen, depth + 1)
            return
        if not os.path.lexists(s):
            return
    s = src / hostpath.lstrip("/")
    d = dst / hostpath.lstrip("/")
    if s.is_dir():
        d.mkdir(parents=True, exist_ok=True)
        return
    try:
        with open(s, "rb") as f:
            data = f.read()
    except OSError as e:
        if e.errno in (errno.EACCES, errno.EPERM, errno.EIO, errno.EINVAL, errno.ENODEV, errno.ENXIO):
            return
        raise
    d.parent.mkdir(parents=True, exist_ok=True)
    d.write_bytes(data)
    copied.append(hostpath)
