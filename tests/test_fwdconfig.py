"""`vio4wd-tool config`: /etc/default/virtioforwarder from the plan, read back by the forwarder's parser."""
from __future__ import annotations

import json
import re

import pytest
from testlib import REPO, vio4wd_tool
from test_plan import PF, VF1, VF2, make_two_node

from forwarder.config import ForwarderSettings, read_env_file
from vio4wd_tool import intent as im
from vio4wd_tool.actions import ActionError
from vio4wd_tool.fwdconfig import CONFIG, VARIABLES, config_action, render
from vio4wd_tool.intent import Intent
from vio4wd_tool.plan import compute
from vio4wd_tool.root import Root


def test_every_variable_the_forwarder_reads_is_written():
    src = (REPO / "forwarder" / "config.py").read_text()
    read = set(re.findall(r'"((?:VIRTIOFWD|VIO4WD_CORE_SCHED)_[A-Z0-9_]+)"', src))
    read -= {"VIO4WD_CORE_SCHED_"}
    assert read and read <= set(VARIABLES), read - set(VARIABLES)
    text = render({"workers": [1], "main_lcore": 0, "relays": []})
    assert set(re.findall(r"^([A-Z0-9_]+)=", text, re.M)) == set(VARIABLES)


def two_node_plan(capture_tree, **kw):
    t = make_two_node(capture_tree("devbox"))
    return t, compute(t.host(), Intent(relays=2, jumbo=True, driver="vfio-pci", **kw), pfs=[PF])


def test_render_two_node_plan_round_trips(capture_tree):
    t, plan = two_node_plan(capture_tree)
    r = config_action(Root(t.path), plan)
    assert r.changed and not r.error
    s = ForwarderSettings.from_env(read_env_file(t.p(CONFIG)))
    assert s.cpus == [4, 6] and s.master_lcore == 1 and s.jumbo and s.bind_vfio_pci
    assert sorted(s.static_vfs) == [(VF1, 1), (VF2, 2)]
    assert s.cpu_pins == {1: (4, 6), 2: (6, 4)}
    # doctor and plan read the intent back from it
    it = im.from_config(Root(t.path))
    assert it.workers == [4, 6] and it.main_lcore == 1 and it.driver == "vfio-pci" and it.jumbo
    assert it.static_vfs == {1: VF1, 2: VF2}
    assert not config_action(Root(t.path), plan).changed


def test_check_apply_idempotent_and_keeps_settings(capture_tree):
    t = capture_tree("devbox")
    plan = compute(t.host(), Intent(relays=1))
    t.write(CONFIG, "# mine\nVIRTIOFWD_CPU_MASK=0x3\nVIRTIOFWD_LOG_LEVEL=7\nexport VIRTIOFWD_SOCKET_DIR=/run/vf\n"
                    "VIRTIOFWD_ZMQ_STATS_EP='tcp://127.0.0.1:5555'\nMY_OWN=(a 'b c')\n")
    old = t.read(CONFIG)
    r = config_action(Root(t.path), plan, check=True)
    assert r.changed and r.check and "-VIRTIOFWD_CPU_MASK=0x3" in r.changes[0].diff
    assert "+VIRTIOFWD_CPU_MASK=1" in r.changes[0].diff and t.read(CONFIG) == old
    r = config_action(Root(t.path), plan)
    assert r.changed and t.read(CONFIG + ".vio4wd-bak") == old
    env = read_env_file(t.p(CONFIG))
    assert env["VIRTIOFWD_LOG_LEVEL"] == "7" and env["VIRTIOFWD_SOCKET_DIR"] == "/run/vf"
    assert env["VIRTIOFWD_ZMQ_STATS_EP"] == "tcp://127.0.0.1:5555" and env["MY_OWN"] == ["a", "b c"]
    assert env["VIRTIOFWD_CPU_MASK"] == "1" and env["VIRTIOFWD_MASTER_LCORE"] == "0"
    assert t.p(CONFIG).stat().st_mode & 0o777 == 0o644
    assert not config_action(Root(t.path), plan).changed
    r = config_action(Root(t.path), plan, fresh=True)
    assert r.changed and "LOG_LEVEL=6" in t.read(CONFIG) and "MY_OWN" not in t.read(CONFIG)


def test_bad_existing_file(capture_tree):
    t = capture_tree("devbox")
    plan = compute(t.host(), Intent(relays=1))
    t.write(CONFIG, "VIRTIOFWD_LOG_LEVEL=\"unterminated\n")
    with pytest.raises(ActionError, match="--fresh"):
        config_action(Root(t.path), plan)
    t.write(CONFIG, "VIRTIOFWD_LOG_LEVEL=12\n")  # parses, but the forwarder refuses the value
    with pytest.raises(ActionError, match=r"VIRTIOFWD_LOG_LEVEL='12'.*0\.\.7"):
        config_action(Root(t.path), plan)
    assert config_action(Root(t.path), plan, fresh=True).changed


def test_cli(capture_tree):
    t = capture_tree("devbox")
    r = vio4wd_tool("config", "--root", str(t.path))
    assert r.returncode == 2 and "run vio4wd-tool plan first" in r.stderr
    assert vio4wd_tool("plan", "--root", str(t.path), "--relays", "2").returncode == 0
    r = vio4wd_tool("config", "--root", str(t.path), "--check", "--json")
    j = json.loads(r.stdout)
    assert r.returncode == 0 and j["changed"] and j["check"] and not t.p(CONFIG).exists()
    r = vio4wd_tool("config", "--root", str(t.path))
    assert r.returncode == 0 and "config: changed: render /etc/default/virtioforwarder" in r.stdout
    r = vio4wd_tool("config", "--root", str(t.path), "--json")
    j = json.loads(r.stdout)
    assert j["changed"] is False and j["data"]["cpu_pins"] == {"1": [1, 1], "2": [1, 1]}
    # the doctor reads the rendered file and agrees on the workers
    r = vio4wd_tool("doctor", "--root", str(t.path), "--json", "--only", "cpu.workers")
    assert json.loads(r.stdout)["intent"]["workers"] == [1]


def test_socket_owner_is_one_the_host_has(capture_tree):
    """The original's default owner libvirt-qemu:kvm only where it exists: a host without libvirt
    (this machine, the lab VMs) gets '' (the daemon's user), else the forwarder cannot start."""
    t, plan = two_node_plan(capture_tree)
    r = config_action(Root(t.path), plan)
    s = ForwarderSettings.from_env(read_env_file(t.p(CONFIG)))
    assert (s.socket_owner, s.socket_group) == ("", "kvm")  # this machine has a kvm group, no QEMU user
    assert any("no QEMU user" in n for n in r.notes)
    t.append("/etc/passwd", "libvirt-qemu:x:64055:107::/var/lib/libvirt:/usr/sbin/nologin\n")
    config_action(Root(t.path), plan, fresh=True)
    s = ForwarderSettings.from_env(read_env_file(t.p(CONFIG)))
    assert (s.socket_owner, s.socket_group) == ("libvirt-qemu", "kvm")
