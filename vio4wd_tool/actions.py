"""What every host action shares: planned changes, --check, diffs, atomic writes, reporting.

An action computes a list of `Change`s against the live host (through a `Root`), then either
reports them (`check=True`) or applies them.  Each change knows how to describe itself, how to
show a diff, and how to apply itself; `ActionResult` carries changed / unchanged / reboot-required
for human output and `--json` (schema "vio4wd.action/1").
"""
from __future__ import annotations

import difflib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .root import Root

SCHEMA = "vio4wd.action/1"
BACKUP_SUFFIX = ".vio4wd-bak"


class ActionError(Exception):
    """A refusal or failure the operator can fix; the message names the fix."""


def require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise ActionError(f"{what} needs root: run it with sudo (or use --check to only see the changes)")


def atomic_write(path: str | os.PathLike, text: str, mode: int | None = None, backup: bool = True) -> str | None:
    """Write `text` to `path` via temp file + fsync + rename; keep the old file as PATH.vio4wd-bak.

    An interrupted run leaves the old or the new file, never a partial one.  Returns the backup path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    bak = None
    old_mode = None
    if path.exists():
        old_mode = path.stat().st_mode & 0o7777
        if backup:
            bak = str(path) + BACKUP_SUFFIX
            shutil.copy2(path, bak)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode if mode is not None else (old_mode if old_mode is not None else 0o644))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return bak


def symlink(root: Root, link: str, target: str) -> None:
    """Make host path `link` a symlink to host path `target` (e.g. a systemd unit's enable link);
    inside a captured tree the link is made relative so it resolves within the tree."""
    real = root.path(link)
    real.parent.mkdir(parents=True, exist_ok=True)
    if os.path.lexists(real):
        real.unlink()
    os.symlink(target if root.live else os.path.relpath(root.path(target), real.parent), real)


def write_sysfs(path: str | os.PathLike, value: str) -> None:
    """Write a kernel file (sysfs/procfs) in one write(); errors carry the path."""
    try:
        with open(path, "w") as f:
            f.write(value)
    except OSError as e:
        raise ActionError(f"writing {value.strip()!r} to {path} failed: {e.strerror}") from e


@dataclass
class Change:
    """One change an action wants.  `apply` is None for a change that is only reported."""

    what: str  # one line: "reserve 384 x 2 MiB pages on node 0"
    diff: str = ""  # unified diff for files
    apply: Callable[[], None] | None = None
    reboot: bool = False  # takes effect only after a reboot

    def to_json(self) -> dict:
        return {"what": self.what, "diff": self.diff, "reboot_required": self.reboot}


def file_change(root: Root, hostpath: str, new: str, what: str | None = None, mode: int | None = None,
                reboot: bool = False, after: Callable[[], None] | None = None) -> Change | None:
    """A Change that makes file `hostpath` (below `root`) hold `new`; None when it already does."""
    real = root.path(hostpath)
    old = real.read_text() if real.exists() else None
    if old == new and (mode is None or (real.stat().st_mode & 0o7777) == mode):
        return None
    diff = "".join(difflib.unified_diff((old or "").splitlines(True), new.splitlines(True),
                                        f"a{hostpath}" if old is not None else "/dev/null", f"b{hostpath}"))

    def apply():
        atomic_write(real, new, mode=mode)
        if after:
            after()

    return Change(what or (f"update {hostpath}" if old is not None else f"create {hostpath}"), diff, apply, reboot)


@dataclass
class ActionResult:
    action: str
    changes: list[Change] = field(default_factory=list)
    check: bool = False
    notes: list[str] = field(default_factory=list)
    data: dict = field(default_factory=dict)  # action-specific facts (the plan, the VF table...)
    error: str | None = None

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    @property
    def reboot_required(self) -> bool:
        return any(c.reboot for c in self.changes) or bool(self.data.get("reboot_required"))

    def to_json(self) -> dict:
        return {"schema": SCHEMA, "action": self.action, "check": self.check, "changed": self.changed,
                "reboot_required": self.reboot_required, "changes": [c.to_json() for c in self.changes],
                "notes": self.notes, "data": self.data, "error": self.error}

    def render(self, diff: bool = True) -> str:
        lines = []
        verb = "would change" if self.check else "changed"
        if not self.changes:
            lines.append(f"{self.action}: unchanged (nothing to do)")
        for c in self.changes:
            lines.append(f"{self.action}: {verb}: {c.what}" + (" [reboot required]" if c.reboot else ""))
            if diff and c.diff:
                lines.append(c.diff.rstrip("\n"))
        lines += [f"{self.action}: {n}" for n in self.notes]
        if self.reboot_required:
            lines.append(f"{self.action}: reboot required for the new settings to take effect")
        if self.error:
            lines.append(f"{self.action}: error: {self.error}")
        return "\n".join(lines)


def execute(result: ActionResult, check: bool, progress: bool = True) -> ActionResult:
    """Apply `result.changes` in order unless `check`; stop at the first failure and report it."""
    result.check = check
    if check:
        return result
    done = []
    for c in result.changes:
        if c.apply is None:
            done.append(c)
            continue
        if progress and sys.stderr.isatty():
            print(f"{result.action}: {c.what} ...", file=sys.stderr)
        try:
            c.apply()
        except (ActionError, OSError, subprocess.CalledProcessError) as e:
            result.error = f"{c.what}: {e}"
            result.changes = done
            return result
        done.append(c)
    return result


def emit(result: ActionResult, as_json: bool) -> int:
    """Print a result; exit code 0 ok, 1 error."""
    if as_json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(result.render())
    return 1 if result.error else 0


def run_cmd(argv: list[str], timeout: float = 600, **kw) -> subprocess.CompletedProcess:
    """Run a host command; raise ActionError naming it and its stderr when it fails."""
    try:
        return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, **kw)
    except FileNotFoundError as e:
        raise ActionError(f"{argv[0]} not found: install it first") from e
    except subprocess.CalledProcessError as e:
        raise ActionError(f"{' '.join(argv)} failed ({e.returncode}): {(e.stderr or e.stdout).strip()[-500:]}") from e
    except subprocess.TimeoutExpired as e:
        raise ActionError(f"{' '.join(argv)} timed out after {timeout:.0f} s") from e


def wait_for(pred: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(interval)
    return pred()
