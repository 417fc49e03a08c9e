#!/usr/bin/env python3
"""Build the vio4wd wheel (+ its dependencies' wheels) on the controller, cached by source hash.

Prints JSON {"key", "dir", "built", "wheel"}: `dir` holds every wheel a target needs for an offline
`pip install --no-index --find-links DIR vio4wd`; `key` changes when any source file changes, so
targets reinstall exactly when the code changed (idempotent rollouts).
"""
import hashlib
import json
import tarfile
import os
import subprocess
import sys
from pathlib import Path

SOURCES = ("pyproject.toml", "setup.py", "vio4wd_tool", "forwarder")
SKIP_SUFFIX = (".pyc", ".so", ".o")


def source_key(project: Path) -> str:
    h = hashlib.sha256()
    for top in SOURCES:
        p = project / top
        files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file())
        for f in files:
            rel = f.relative_to(project).as_posix()
            if "__pycache__" in rel or rel.endswith(SKIP_SUFFIX) or ".egg-info" in rel:
                continue
            h.update(rel.encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def main() -> int:
    project = Path(sys.argv[1]).resolve()
    cache = Path(sys.argv[2]).resolve()
    key = source_key(project)
    out = cache / key
    done = out / ".complete"
    built = False
    if not done.exists():
        out.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, SOURCE_DATE_EPOCH="315532800", PIP_DISABLE_PIP_VERSION_CHECK="1")
        proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "-w", str(out), str(project)],
                              capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            print(json.dumps({"failed": True, "msg": "pip wheel failed", "stderr": proc.stderr[-4000:]}))
            return 1
        done.write_text(key + "\n")
        built = True
    wheel = sorted(out.glob("vio4wd-*.whl"))
    # one archive KEY/<wheels> for the target: one transfer and one checksum instead of one per wheel
    tar = cache / f"{key}.tar"
    if not tar.exists():
        tmp = tar.with_suffix(".tar.tmp")
        with tarfile.open(tmp, "w") as tf:
            for w in sorted(out.glob("*.whl")):
                info = tf.gettarinfo(str(w), arcname=f"{key}/{w.name}")
                info.mtime, info.uid, info.gid, info.uname, info.gname = 315532800, 0, 0, "root", "root"
                with open(w, "rb") as fh:
                    tf.addfile(info, fh)
        os.replace(tmp, tar)
    print(json.dumps({"key": key, "dir": str(out), "tar": str(tar), "built": built,
                      "wheel": wheel[-1].name if wheel else None}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
