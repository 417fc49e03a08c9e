"""Fast tier of the fleet rollout: syntax of every playbook, role conventions (argument specs for
every role, prefixed and documented public variables), ansible-lint at the production profile."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from testlib import REPO

BIN = Path(sys.executable).parent
ROLES = sorted(p for p in (REPO / "roles").iterdir() if (p / "tasks").is_dir())
PLAYBOOKS = sorted((REPO / "playbooks").glob("*.yml")) + sorted((REPO / "molecule").glob("*/[cdv]*.yml"))
ENV = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"))


def tool(name: str) -> str:
    exe = BIN / name
    if exe.exists():
        return str(exe)
    found = shutil.which(name)
    if not found:
        pytest.skip(f"{name} missing: pip install -e '.[ansible]'")
    return found


@pytest.mark.parametrize("playbook", PLAYBOOKS, ids=lambda p: str(p.relative_to(REPO)))
def test_syntax(playbook):
    if playbook.name.startswith("verify-"):
        pytest.skip("included task file")
    proc = subprocess.run([tool("ansible-playbook"), "-i", str(REPO / "inventory" / "example"), "--syntax-check",
                           str(playbook)], capture_output=True, text=True, cwd=REPO, env=ENV)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_role_conventions(role):
    specs = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"]
    options = specs.get("options", {})
    defaults_file = role / "defaults" / "main.yml"
    defaults = yaml.safe_load(defaults_file.read_text()) if defaults_file.exists() else {}
    text = defaults_file.read_text() if defaults_file.exists() else ""
    for name in defaults or {}:
        assert name.startswith(role.name + "_"), f"{name}: public variables carry the role prefix"
        assert name in options, f"{name} is missing from {role.name}/meta/argument_specs.yml"
        before = text.split(f"\n{name}:")[0].rstrip().splitlines()
        assert before and before[-1].startswith("#"), f"{name}: document it with a comment in defaults/main.yml"
    for name, spec in options.items():
        assert spec.get("description"), f"{name}: no description in the argument spec"


def test_inventories_parse():
    for inv in ("example", "lab"):
        proc = subprocess.run([tool("ansible-inventory"), "-i", str(REPO / "inventory" / inv), "--list"],
                              capture_output=True, text=True, cwd=REPO, env=ENV)
        assert proc.returncode == 0, proc.stderr


def test_example_fleet_has_per_host_numa_choices():
    proc = subprocess.run([tool("ansible-inventory"), "-i", str(REPO / "inventory" / "example"), "--list"],
                          capture_output=True, text=True, cwd=REPO, env=ENV)
    import json

    hostvars = json.loads(proc.stdout)["_meta"]["hostvars"]
    nodes = {h: v.get("vio4wd_host_numa_node") for h, v in hostvars.items()}
    assert {0, 1} <= set(nodes.values()), nodes


def test_ansible_lint_production():
    proc = subprocess.run([tool("ansible-lint"), "--nocolor"], capture_output=True, text=True, cwd=REPO,
                          env=dict(ENV, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"), timeout=600)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
