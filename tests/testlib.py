"""Helpers shared by the tests (import as `from testlib import ...`; pythonpath includes tests/)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path


REPO = Path(__file__).resolve().parent.parent
CAPTURES = REPO / "tests" / "fixtures" / "captures"
VENV_BIN = Path(sys.executable).parent

class Tree:
    """A copy of a captured host tree that a test may mutate."""

    def __init__(self, path: Path):
        self.path = path

    def p(self, hostpath: str) -> Path:
        return self.path / hostpath.lstrip("/")

    def write(self, hostpath: str, text: str) -> None:
        # resolve symlinks on the way, dangling ones too (a capture's /lib -> usr/lib whose
        # target git could not keep because it held no file)
        f = Path(os.path.realpath(self.p(hostpath)))
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text)

    def read(self, hostpath: str) -> str:
        return self.p(hostpath).read_text()

    def append(self, hostpath: str, text: str) -> None:
        self.write(hostpath, (self.read(hostpath) if self.p(hostpath).exists() else "") + text)

    def rm(self, hostpath: str) -> None:
        f = self.p(hostpath)
        if f.is_dir() and not f.is_symlink():
            shutil.rmtree(f)
        else:
            f.unlink()

    def fact(self, name: str, text: str) -> None:
        self.write(f"/.vio4wd/facts/{name}", text)

    def host(self):
        from vio4wd_tool.host import Host

        return Host(str(self.path))


def vio4wd_tool(*args, check=False, **kw) -> subprocess.CompletedProcess:
    """Run the installed CLI (the real entry point) and capture its output."""
    exe = VENV_BIN / "vio4wd-tool"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "vio4wd_tool"]
    return subprocess.run(cmd + list(args), capture_output=True, text=True, check=check, **kw)


def wait_for(pred, timeout: float = 20, what: str = "condition", interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)
