"""Shared test harness: captured host trees, mutated per test; root/DPDK/QEMU gates."""
from __future__ import annotations

import os
import shutil

import pytest

from testlib import CAPTURES, Tree


def pytest_collection_modifyitems(config, items):
    skip_root = pytest.mark.skip(reason="needs root (real kernel objects)")
    for item in items:
        if "root" in item.keywords and os.geteuid() != 0:
            item.add_marker(skip_root)


@pytest.fixture
def capture_tree(tmp_path):
    """capture_tree('devbox') -> a mutable copy of tests/fixtures/captures/devbox."""

    def make(name: str) -> Tree:
        src = CAPTURES / name
        if not src.is_dir():
            pytest.fail(f"missing capture {src}")
        dst = tmp_path / name
        n = 1
        while dst.exists():  # a second copy in the same test
            n += 1
            dst = tmp_path / f"{name}-{n}"
        shutil.copytree(src, dst, symlinks=True)
        # git keeps no empty directory: a capture's `lib -> usr/lib` may dangle in a fresh clone
        for d, dirs, files in os.walk(dst):
            for n in dirs + files:
                p = os.path.join(d, n)
                if os.path.islink(p) and not os.path.exists(p):
                    os.makedirs(os.path.realpath(p), exist_ok=True)
        return Tree(dst)

    return make
