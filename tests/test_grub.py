"""`vio4wd-tool grub`: token-level GRUB_CMDLINE_LINUX edits, regeneration, reboot-required."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap

import pytest
from testlib import VENV_BIN, vio4wd_tool

from vio4wd_tool.actions import ActionError
from vio4wd_tool.grub import (config_has, desired_args, grub_action, merge, regen_plan, running_mismatch,
                              strip_managed)
from vio4wd_tool.intent import Intent
from vio4wd_tool.plan import compute, dump_plan
from vio4wd_tool.root import Root

ARGS = ["default_hugepagesz=2M", "hugepagesz=2M", "hugepages=384", "hugepagesz=1G", "hugepages=4",
        "isolcpus=1", "nohz_full=1", "rcu_nocbs=1", "irqaffinity=0", "iommu=pt"]


# ------------------------------------------------------------------ token logic

def test_merge_keeps_foreign_tokens_and_positions():
    old = "root=UUID=ab ro console=ttyS0,115200n8 hugepagesz=1G hugepages=2 quiet isolcpus=3 isolcpus=5 foo".split()
    new = merge(old, ARGS)
    assert new == ["root=UUID=ab", "ro", "console=ttyS0,115200n8", "default_hugepagesz=2M", "hugepagesz=2M",
                   "hugepages=384", "hugepagesz=1G", "hugepages=4", "quiet", "isolcpus=1", "foo", "nohz_full=1",
                   "rcu_nocbs=1", "irqaffinity=0", "iommu=pt"]
    assert merge(new, ARGS) == new  # idempotent


def test_merge_appends_when_absent_and_orders_pairs():
    assert merge(["quiet"], ARGS) == ["quiet"] + ARGS
    # a stray hugepages= before any hugepagesz= (default size) is replaced by the ordered block
    new = merge(["hugepages=100", "a", "hugepagesz=1G", "hugepages=1"], ARGS[:5])
    assert new == ARGS[:5] + ["a"]


@pytest.mark.parametrize("old, driver_args, want", [
    (["intel_iommu=pt"], ["iommu=pt"], ["iommu=pt"]),
    (["intel_iommu=on,pt", "x"], ["iommu=pt"], ["intel_iommu=on", "x", "iommu=pt"]),
    (["intel_iommu=pt", "iommu=soft"], ["intel_iommu=on", "iommu=pt"], ["intel_iommu=on", "iommu=pt"]),
    (["intel_iommu=off"], ["intel_iommu=on", "iommu=pt"], ["intel_iommu=on", "iommu=pt"]),
])
def test_merge_iommu(old, driver_args, want):
    assert merge(old, driver_args) == want


def test_strip_managed_from_default():
    assert strip_managed(["quiet", "hugepages=4", "intel_iommu=pt", "splash"], ARGS) == ["quiet", "splash"]


def test_desired_args_overrides():
    plan = {"kernel_args": ARGS}
    a = desired_args(plan, pages_2m=500, pages_1g=0)
    assert a[:3] == ["default_hugepagesz=2M", "hugepagesz=2M", "hugepages=500"] and "hugepagesz=1G" not in a
    a = desired_args({"kernel_args": ARGS[:3] + ARGS[5:]}, pages_1g=8)
    assert a[3:5] == ["hugepagesz=1G", "hugepages=8"]
    a = desired_args(plan, isolation=False, driver="vfio-pci", intel=True)
    assert not any(t.startswith(("isolcpus", "nohz_full", "rcu_nocbs", "irqaffinity")) for t in a)
    assert a[-2:] == ["intel_iommu=on", "iommu=pt"]


def test_running_mismatch():
    assert running_mismatch(ARGS, ARGS) == []
    assert running_mismatch(["quiet"] + ARGS + ["intel_iommu=pt"], ARGS) == ["intel_iommu=pt"]
    swapped = ARGS[:1] + ARGS[3:5] + ARGS[1:3] + ARGS[5:]
    assert running_mismatch(swapped, ARGS) and "(order)" in running_mismatch(swapped, ARGS)[0]


def test_config_has():
    cfg = "menuentry x {\n\tlinux /vmlinuz root=/dev/vda ro " + " ".join(ARGS) + " quiet\n}\n"
    assert config_has(cfg, ARGS, ["intel_iommu=pt"])
    assert not config_has(cfg.replace("iommu=pt", "iommu=soft"), ARGS, [])
    assert not config_has("", ARGS, [])


# ------------------------------------------------------------------ the action on captured trees

GRUB = textwrap.dedent("""\
    # If you change this file, run 'update-grub' afterwards
    GRUB_DEFAULT=0
    GRUB_TIMEOUT=5
    GRUB_CMDLINE_LINUX_DEFAULT='quiet intel_iommu=pt'
    GRUB_CMDLINE_LINUX="console=ttyS0,115200 hugepagesz=1G hugepages=2 net.ifnames=0"   # serial
    """)


def tree_with_grub(capture_tree, text=GRUB):
    t = capture_tree("devbox")
    t.write("/etc/default/grub", text)
    return t


def test_action_check_apply_idempotent(capture_tree):
    t = tree_with_grub(capture_tree)
    root = Root(t.path)
    r = grub_action(root, ARGS, check=True)
    assert r.changed and r.reboot_required
    assert '+GRUB_CMDLINE_LINUX="console=ttyS0,115200 ' + " ".join(ARGS[:5]) + " net.ifnames=0" in r.changes[0].diff
    assert t.read("/etc/default/grub") == GRUB
    r = grub_action(root, ARGS)
    assert r.changed and not r.error
    text = t.read("/etc/default/grub")
    assert "GRUB_CMDLINE_LINUX_DEFAULT='quiet'\n" in text  # quoting kept, override removed
    assert text.endswith("net.ifnames=0 " + " ".join(ARGS[5:]) + '"   # serial\n')
    assert t.read("/etc/default/grub.vio4wd-bak") == GRUB
    r = grub_action(root, ARGS)
    assert not r.changed and r.reboot_required  # the devbox kernel was not booted with them
    assert set(r.data["running_lacks"]) == set(ARGS)


def test_action_reboot_not_required_when_booted_with_args(capture_tree):
    t = tree_with_grub(capture_tree)
    t.write("/proc/cmdline", "BOOT_IMAGE=/vmlinuz ro " + " ".join(ARGS) + " quiet\n")
    r = grub_action(Root(t.path), ARGS)
    assert r.changed and not r.data["reboot_required"]
    r = grub_action(Root(t.path), ARGS)
    assert not r.changed and not r.reboot_required


def test_action_adds_missing_variable(capture_tree):
    t = tree_with_grub(capture_tree, "GRUB_DEFAULT=0")  # no newline, no GRUB_CMDLINE_LINUX
    grub_action(Root(t.path), ARGS[:3])
    assert t.read("/etc/default/grub") == 'GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX="' + " ".join(ARGS[:3]) + '"\n'


def test_action_errors(capture_tree):
    t = capture_tree("devbox")
    with pytest.raises(ActionError, match="no /etc/default/grub"):
        grub_action(Root(t.path), ARGS)
    t.write("/etc/default/grub", 'GRUB_CMDLINE_LINUX="a\nb"\n')
    with pytest.raises(ActionError, match="spans several lines"):
        grub_action(Root(t.path), ARGS)


def test_grub_d_override_is_reported(capture_tree):
    t = tree_with_grub(capture_tree)
    t.write("/etc/default/grub.d/50-cloud.cfg", 'GRUB_CMDLINE_LINUX="console=tty1"\n')
    t.write("/etc/default/grub.d/60-ok.cfg", 'GRUB_CMDLINE_LINUX="$GRUB_CMDLINE_LINUX x"\n')
    r = grub_action(Root(t.path), ARGS, check=True)
    assert any("50-cloud.cfg sets GRUB_CMDLINE_LINUX" in n for n in r.notes)
    assert not any("60-ok.cfg" in n for n in r.notes)


@pytest.mark.parametrize("files, want_tool, want_cfg", [
    (["/usr/sbin/update-grub", "/usr/sbin/grub-mkconfig"], "update-grub", "/boot/grub/grub.cfg"),
    (["/usr/sbin/grub2-mkconfig"], "grub2-mkconfig -o /boot/grub2/grub.cfg", "/boot/grub2/grub.cfg"),
    (["/usr/sbin/grub2-mkconfig", "/sys/firmware/efi/x", "/boot/efi/EFI/centos/grub.cfg:linux /vmlinuz"],
     "grub2-mkconfig -o /boot/efi/EFI/centos/grub.cfg", "/boot/efi/EFI/centos/grub.cfg"),
    (["/usr/sbin/grub2-mkconfig", "/sys/firmware/efi/x",
      "/boot/efi/EFI/fedora/grub.cfg:configfile $prefix/grub.cfg"],
     "grub2-mkconfig -o /boot/grub2/grub.cfg", "/boot/grub2/grub.cfg"),
    (["/usr/sbin/grub2-mkconfig", "/usr/sbin/grubby", "/boot/loader/entries/a.conf:options ro"],
     "grubby (BLS entries)", "/boot/loader/entries/a.conf"),
    (["/usr/sbin/grub-mkconfig"], "grub-mkconfig -o /boot/grub/grub.cfg", "/boot/grub/grub.cfg"),
])
def test_regeneration_tool_per_distribution(tmp_path, files, want_tool, want_cfg):
    for f in files:
        path, _, content = f.partition(":")
        p = tmp_path / path.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(content)
    tool, cmds, cfgs = regen_plan(Root(tmp_path), "", ARGS, ["hugepages"])
    assert tool == want_tool and want_cfg in cfgs
    if "grubby" in tool:
        assert cmds[0][-1] == "--remove-args=hugepages" and cmds[1][-1] == "--args=" + " ".join(ARGS)


def test_cli_uses_the_plan(capture_tree):
    t = tree_with_grub(capture_tree)
    r = vio4wd_tool("grub", "--root", str(t.path), "--json")
    assert r.returncode == 2 and "run vio4wd-tool plan first" in r.stderr
    r = vio4wd_tool("grub", "--root", str(t.path), "--pages-2m", "-1")
    assert r.returncode == 2 and "--pages-2m -1" in r.stderr
    assert vio4wd_tool("plan", "--root", str(t.path), "--relays", "1").returncode == 0
    r = vio4wd_tool("grub", "--root", str(t.path), "--check", "--json")
    j = json.loads(r.stdout)
    assert r.returncode == 0 and j["changed"] and j["check"] and j["reboot_required"]
    assert t.read("/etc/default/grub") == GRUB
    assert vio4wd_tool("grub", "--root", str(t.path)).returncode == 0
    assert "isolcpus=1 nohz_full=1 rcu_nocbs=1 irqaffinity=0 iommu=pt" in t.read("/etc/default/grub")
    r = vio4wd_tool("grub", "--root", str(t.path))
    assert r.returncode == 0 and "grub: unchanged" in r.stdout and "reboot required" in r.stdout
    # without a plan, --pages-2m alone gives hugepage + IOMMU args
    t.write("/etc/default/grub", GRUB)
    r = vio4wd_tool("grub", "--root", str(t.path), "--pages-2m", "512", "--plan", "/nonexistent")
    assert r.returncode == 0 and "no plan at /nonexistent" in r.stdout
    assert "hugepages=512 net.ifnames=0 iommu=pt" in t.read("/etc/default/grub")
    assert "isolcpus" not in t.read("/etc/default/grub")


# ------------------------------------------------------------------ for real: grub-mkconfig in a private mount namespace

@pytest.mark.root
@pytest.mark.skipif(not shutil.which("update-grub") or not shutil.which("unshare"),
                    reason="needs update-grub (grub2-common) and unshare")
def test_real_update_grub(capture_tree, tmp_path):
    """/etc/default and /boot are replaced inside `unshare -m` only: the real ones are untouched."""
    t = capture_tree("devbox")
    plan = compute(t.host(), Intent(relays=1))
    (tmp_path / "plan.json").write_text(dump_plan(plan))
    etc = tmp_path / "etc-default"
    etc.mkdir()
    (etc / "grub").write_text(GRUB)
    boot = tmp_path / "boot"
    (boot / "grub").mkdir(parents=True)
    kver = "6.1.0-99-amd64"
    for f in (f"vmlinuz-{kver}", f"initrd.img-{kver}"):
        (boot / f).write_text("")
    exe = VENV_BIN / "vio4wd-tool"
    out = tmp_path / "out"
    out.mkdir()
    script = f"""set -e
    mount --bind {etc} /etc/default
    mount --bind {boot} /boot
    {exe} grub --plan {tmp_path}/plan.json --check --json > {out}/check.json
    cp /etc/default/grub {out}/after-check
    test ! -e /boot/grub/grub.cfg
    {exe} grub --plan {tmp_path}/plan.json --json > {out}/apply.json
    {exe} grub --plan {tmp_path}/plan.json --json > {out}/again.json
    """
    before = open("/proc/self/mountinfo").read()
    r = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert open("/proc/self/mountinfo").read() == before
    assert not os.path.exists("/etc/default/grub.vio4wd-bak")
    check = json.loads((out / "check.json").read_text())
    assert check["changed"] and [c["what"] for c in check["changes"]][-1].startswith("regenerate the boot config")
    assert (out / "after-check").read_text() == GRUB
    apply = json.loads((out / "apply.json").read_text())
    assert apply["changed"] and apply["error"] is None and apply["reboot_required"]
    assert apply["data"]["tool"] == "update-grub"
    cfg = (boot / "grub" / "grub.cfg").read_text()
    linux = [l for l in cfg.splitlines() if l.strip().startswith("linux")]
    assert linux and all(set(plan["kernel_args"]) | {"net.ifnames=0", "console=ttyS0,115200"} <= set(l.split())
                         for l in linux)
    assert " ".join(plan["kernel_args"][:3]) in linux[0]
    assert not any("intel_iommu=pt" in l for l in linux)
    again = json.loads((out / "again.json").read_text())
    assert not again["changed"] and again["reboot_required"]  # this kernel was not booted with them
    assert (etc / "grub.vio4wd-bak").read_text() == GRUB


def test_args_for_follows_the_iommu_hardware(capture_tree):
    """The TCG lab VM reports an AMD CPU; QEMU's intel-iommu shows as the ACPI DMAR table."""
    from vio4wd_tool.grub import args_for
    from vio4wd_tool.root import Root

    t = capture_tree("labvm-2node")
    assert "intel_iommu=on" not in args_for(Root(t.path), None, pages_2m=384, driver="vfio-pci")
    t.write("/sys/firmware/acpi/tables/DMAR", "DMAR")
    args = args_for(Root(t.path), None, pages_2m=384, driver="vfio-pci")
    assert "intel_iommu=on" in args and "iommu=pt" in args
    with pytest.raises(ActionError, match="--pages-2m -1"):
        args_for(Root(t.path), None, pages_2m=-1)
