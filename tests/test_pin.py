"""`vio4wd-tool pin`: IRQs off workers, default_smp_affinity, irqbalance ban list, systemd CPUAffinity."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from testlib import vio4wd_tool

from vio4wd_tool.actions import ActionError
from vio4wd_tool.intent import Intent
from vio4wd_tool.irq import (FORWARDER_DROPIN, SYSTEM_CONF_DROPIN, UNMOVABLE_STATE, irqbalance_conf_text,
                             pin_action, probe)
from vio4wd_tool.plan import compute, dump_plan
from vio4wd_tool.root import Root


def devbox_plan(t):
    return compute(t.host(), Intent(relays=1))  # workers [1], IRQs on [0]


def with_irqbalance(t, conf=None):
    t.write("/usr/sbin/irqbalance", "")
    if conf is not None:
        t.write("/etc/default/irqbalance", conf)


def test_irqbalance_conf_text():
    text = "#IRQBALANCE_ONESHOT=\nIRQBALANCE_BANNED_CPUS=0000000f\nIRQBALANCE_BANNED_CPULIST=7\nX=1\n"
    out = irqbalance_conf_text(text, [1, 2, 3])
    assert out == ("#IRQBALANCE_ONESHOT=\n# IRQBALANCE_BANNED_CPUS=0000000f  # vio4wd: superseded by "
                   "IRQBALANCE_BANNED_CPULIST\nIRQBALANCE_BANNED_CPULIST=1-3\nX=1\n")
    assert irqbalance_conf_text(out, [1, 2, 3]) == out
    assert irqbalance_conf_text("", [5]).endswith("IRQBALANCE_BANNED_CPULIST=5\n")


def test_pin_check_apply_idempotent_on_tree(capture_tree):
    t = capture_tree("devbox")
    with_irqbalance(t, "#IRQBALANCE_ONESHOT=\n")
    plan = devbox_plan(t)
    root = Root(t.path)
    n_irqs = len(probe(root).affinity)
    r = pin_action(root, plan, check=True)
    whats = [c.what for c in r.changes]
    assert r.changed and r.check and len(whats) == 3, whats
    assert whats[0].startswith(f"move {n_irqs} IRQ(s) off CPUs 1")
    assert "default_smp_affinity to 1 " in whats[1] and "was 0-1" in whats[1]
    assert "+IRQBALANCE_BANNED_CPULIST=1" in r.changes[2].diff
    assert t.read("/proc/irq/24/smp_affinity_list").strip() == "0-1"  # nothing written
    r = pin_action(root, plan)
    assert r.changed and not r.error
    info = probe(root)
    assert all(c == [0] for c in info.affinity.values()) and info.default_affinity == [0]
    assert info.banned == [1]
    r = pin_action(root, plan)
    assert not r.changed, [c.what for c in r.changes]
    # doctor agrees
    from vio4wd_tool.doctor import run
    from vio4wd_tool.checks import Status
    res = run(t.host(), Intent(workers=[1], main_lcore=0), only=["irq"])
    assert {x.status for x in res} == {Status.PASS}, [x.finding for x in res]


def test_pin_keeps_allowed_cpus_of_an_irq(capture_tree):
    t = capture_tree("devbox")
    plan = devbox_plan(t)
    plan = dict(plan, irq_affinity=[0], irqbalance_banned=[1])
    t.write("/proc/irq/24/smp_affinity_list", "1\n")
    pin_action(Root(t.path), plan, irqbalance=False)
    assert t.read("/proc/irq/24/smp_affinity_list") == "0"
    assert t.read("/proc/irq/25/smp_affinity_list") == "0"


def test_pin_unmovable_irqs_are_remembered(capture_tree):
    t = capture_tree("devbox")
    t.write(UNMOVABLE_STATE, "24 25\n")
    r = pin_action(Root(t.path), devbox_plan(t), irqbalance=False)
    assert t.read("/proc/irq/24/smp_affinity_list").strip() == "0-1"
    assert any("IRQ(s) 24-25 cannot be moved" in n for n in r.notes)
    assert not pin_action(Root(t.path), devbox_plan(t), irqbalance=False).changed


def test_pin_without_irqbalance(capture_tree):
    t = capture_tree("devbox")
    r = pin_action(Root(t.path), devbox_plan(t), irqs=False)
    assert not r.changed and any("irqbalance is not installed" in n for n in r.notes)


def test_pin_cpu_affinity(capture_tree):
    t = capture_tree("devbox")
    root = Root(t.path)
    plan = devbox_plan(t)
    r = pin_action(root, plan, irqs=False, irqbalance=False, cpu_affinity=True, check=True)
    assert len(r.changes) == 2 and r.reboot_required and not t.p(SYSTEM_CONF_DROPIN).exists()
    r = pin_action(root, plan, irqs=False, irqbalance=False, cpu_affinity=True)
    assert t.read(SYSTEM_CONF_DROPIN).endswith("[Manager]\nCPUAffinity=0\n")
    assert t.read(FORWARDER_DROPIN).endswith("[Service]\nCPUAffinity=0-1\n")
    assert not pin_action(root, plan, irqs=False, irqbalance=False, cpu_affinity=True).changed


@pytest.mark.parametrize("change, words", [
    ({"irq_affinity": [7]}, "not have online"),
    ({"irq_affinity": [0, 1], "irqbalance_banned": [1]}, "lets IRQs use worker"),
    ({"irq_affinity": "x"}, "re-run vio4wd-tool plan"),
])
def test_pin_bad_plan(capture_tree, change, words):
    t = capture_tree("devbox")
    with pytest.raises(ActionError, match=words):
        pin_action(Root(t.path), {**devbox_plan(t), **change}, check=True)


def test_cli(capture_tree):
    t = capture_tree("devbox")
    r = vio4wd_tool("pin", "--root", str(t.path))
    assert r.returncode == 2 and "run vio4wd-tool plan first" in r.stderr
    assert vio4wd_tool("plan", "--root", str(t.path), "--relays", "1").returncode == 0
    r = vio4wd_tool("pin", "--root", str(t.path), "--check", "--json")
    j = json.loads(r.stdout)
    assert r.returncode == 0 and j["action"] == "pin" and j["check"] and len(j["changes"]) == 2
    assert t.read("/proc/irq/26/smp_affinity_list").strip() == "0-1"
    r = vio4wd_tool("pin", "--root", str(t.path), "--irqs")
    assert r.returncode == 0 and "pin: changed: move" in r.stdout
    r = vio4wd_tool("pin", "--root", str(t.path), "--irqs", "--json")
    assert json.loads(r.stdout)["changed"] is False


# ------------------------------------------------------------------ for real on this machine

@pytest.mark.root
def test_pin_irqs_for_real(tmp_path):
    """Moves this machine's IRQs off CPU 1 and back; every affinity is restored even on failure."""
    from vio4wd_tool.host import Host

    root = Root("/")

    host = Host(root)
    if len(host.cpu.online) < 2:
        pytest.skip("needs 2 online CPUs")
    plan_path = tmp_path / "plan.json"
    plan = compute(host, Intent(relays=1))
    plan_path.write_text(dump_plan(plan))
    irqs = sorted(Path("/proc/irq").glob("[0-9]*"))
    saved = {p: (p / "smp_affinity_list").read_text().strip() for p in irqs}
    default = Path("/proc/irq/default_smp_affinity").read_text().strip()
    banned = set(plan["irqbalance_banned"])
    state_existed = Path(UNMOVABLE_STATE).exists()
    try:
        r = vio4wd_tool("pin", "--irqs", "--plan", str(plan_path), "--check", "--json")
        assert r.returncode == 0, r.stderr
        assert {p: (p / "smp_affinity_list").read_text().strip() for p in irqs} == saved
        r = vio4wd_tool("pin", "--irqs", "--plan", str(plan_path), "--json")
        j = json.loads(r.stdout)
        assert r.returncode == 0 and j["error"] is None and j["changed"], r.stdout + r.stderr
        info = probe(root)
        unmovable = {int(x) for x in (Path(UNMOVABLE_STATE).read_text().split()
                                      if Path(UNMOVABLE_STATE).exists() else [])}
        assert not [n for n, c in info.affinity.items() if banned & set(c) and n not in unmovable]
        assert not banned & set(info.default_affinity)
        r = vio4wd_tool("pin", "--irqs", "--plan", str(plan_path), "--json")
        assert json.loads(r.stdout)["changed"] is False, r.stdout
    finally:
        for p, v in saved.items():
            try:
                (p / "smp_affinity_list").write_text(v)
            except OSError:
                pass
        Path("/proc/irq/default_smp_affinity").write_text(default)
        if not state_existed and Path(UNMOVABLE_STATE).exists():
            os.unlink(UNMOVABLE_STATE)
    assert {p: (p / "smp_affinity_list").read_text().strip() for p in irqs} == saved
