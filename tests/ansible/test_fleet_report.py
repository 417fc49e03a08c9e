"""playbooks/doctor-report.yml for real: two hosts run the doctor module on captured trees (one
healthy-ish, one broken), a third has no result; the fleet JSON and table name who fails what."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from testlib import CAPTURES, REPO

BIN = Path(sys.executable).parent


def test_fleet_report(tmp_path):
    exe = BIN / "ansible-playbook"
    if not exe.exists():
        pytest.skip("ansible-core missing")
    trees = {}
    for h in ("hv1", "hv2"):
        trees[h] = tmp_path / h
        shutil.copytree(CAPTURES / "devbox", trees[h], symlinks=True)
    # hv2: a forwarder config naming a VF that does not exist -> SR-IOV checks FAIL
    (trees["hv2"] / "etc/default").mkdir(parents=True, exist_ok=True)
    (trees["hv2"] / "etc/default/virtioforwarder").write_text('VIRTIOFWD_CPU_MASK=1\nVIRTIOFWD_STATIC_VFS=(0000:99:10.1=1)\n')
    inv = tmp_path / "hosts.yml"
    inv.write_text(json.dumps({"vio4wd": {"hosts": {
        "hv1": {"tree": str(trees["hv1"])}, "hv2": {"tree": str(trees["hv2"])}, "hv3": {"tree": "/nonexistent"}},
        "vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}))
    play = tmp_path / "report.yml"
    play.write_text(f"""
- hosts: vio4wd
  gather_facts: false
  tasks:
    - vio4wd.fleet.doctor:
        root: "{{{{ tree }}}}"
      register: d
      when: inventory_hostname != 'hv3'
    - ansible.builtin.set_fact:
        vio4wd_doctor_result: "{{{{ d.doctor }}}}"
      when: inventory_hostname != 'hv3'
- ansible.builtin.import_playbook: {REPO}/playbooks/doctor-report.yml
""")
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
               ANSIBLE_COLLECTIONS_PATH=str(REPO / "collections"), PYTHONPATH=str(REPO))
    out = tmp_path / "report"
    proc = subprocess.run([str(exe), "-i", str(inv), str(play), "-e", f"vio4wd_report_dir={out}"],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    doc = json.loads((out / "fleet-doctor.json").read_text())
    assert doc["schema"] == "vio4wd.fleet-doctor/1"
    assert set(doc["hosts"]) == {"hv1", "hv2"} and doc["unreachable"] == ["hv3"]
    table = (out / "fleet-doctor.txt").read_text()
    assert table.splitlines()[0].split()[:2] == ["HOST", "PASS"]
    fails = [c for c in doc["hosts"]["hv2"]["checks"] if c["status"] == "FAIL"]
    for c in fails:
        assert any(line.startswith("hv2") and c["id"] in line for line in table.splitlines()), (c["id"], table)
    assert "hv3" in table and "no result" in table
