"""The VM lab: the whole product on a lab VM with an emulated igb SR-IOV NIC (QEMU 10, TCG).

    vio4wd-tool lab vm [--name lab] [--pings N] [--guest echo|testpmd] [--keep]
                                                             bring it up, roll out, ping, tear down
    vio4wd-tool lab vm --down [--name lab]                    tear down a lab left with --keep

Steps, each with progress: the cached Debian 12 image; a lab VM (igb PF on a tap in the network
namespace vio4wd-lab-NAME, host end 10.213.0.1); doctor before the rollout; the rollout
(`playbooks/site.yml` against `inventory/lab`: kernel args + reboot, hugepages, VFs on vfio-pci,
pinning, the forwarder); doctor after; the guest side on relay 1's vhost-user socket and pings from
the namespace through the PF, the VF and the forwarder (`playbooks/lab-ping.yml`, the molecule
`site` scenario's proof too); the ping summary, the relay's live stats and the QEMU snippet that
`vio4wd-tool vm` renders for it. Everything lives in the VM, its overlay, its namespace and its
state dir (`/run/vio4wd/lab/NAME`); teardown (`lab down`) removes all of it.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

from .common import LabError, say

REPO = Path(__file__).resolve().parents[2]
GUEST_IP = "10.213.0.2"


def _bin(name: str) -> str:
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else name


def _project() -> Path:
    if not (REPO / "playbooks" / "site.yml").exists():
        raise LabError(f"the VM lab runs the repository's playbooks, not found under {REPO}: run it from a "
                       "checkout (scripts/lab.sh, or pip install -e . there)")
    return REPO


class Playbooks:
    """ansible-playbook against one lab VM, its output in a log file and one progress line per task."""

    def __init__(self, vm, log_dir: Path):
        self.vm = vm
        self.log_dir = log_dir

    def run(self, playbook: str, label: str, *extra: str) -> tuple[float, dict]:
        repo = _project()
        log = self.log_dir / f"{label}.log"
        # inventory/lab (groups and group_vars) + this VM's inventory only: group vio4wd_lab is this VM
        # (no --limit: doctor.yml's report play runs on localhost)
        cmd = [_bin("ansible-playbook"), "-i", str(repo / "inventory" / "lab"), "-i", str(self.vm.inventory),
               str(repo / "playbooks" / playbook), *extra]
        env = dict(os.environ, ANSIBLE_CONFIG=str(repo / "ansible.cfg"), ANSIBLE_FORCE_COLOR="0",
                   ANSIBLE_NOCOLOR="1", PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
        t0 = time.monotonic()
        recap: dict = {}
        with open(log, "w") as out:
            out.write(f"$ {shlex.join(cmd)}\n")
            out.flush()
            proc = subprocess.Popen(cmd, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True, stdin=subprocess.DEVNULL)
            task = ""
            for line in proc.stdout:
                out.write(line)
                m = re.match(r"(TASK|RUNNING HANDLER) \[(.*)\] \*+", line)
                if m:
                    task = m.group(2)
                    print(f"    {time.monotonic() - t0:5.0f}s  {task}", flush=True)
                elif line.startswith(("changed:", "fatal:")) and task:
                    print(f"           {line.split(':', 1)[0]}", flush=True)
                m = re.match(rf"{re.escape(self.vm.cfg.name)}\s+: (.*)", line)
                if m:
                    recap = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(1))}
            rc = proc.wait()
        took = time.monotonic() - t0
        if rc != 0:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
            raise LabError(f"{playbook} failed (exit {rc}) after {took:.0f} s; last lines of {log}:\n{tail}")
        return took, recap


def _show(path: Path, indent: str = "    ") -> None:
    try:
        text = path.read_text().rstrip()
    except OSError:
        text = f"(no {path})"
    print("\n".join(indent + line for line in text.splitlines()))


def teardown(name: str) -> None:
    from .vm import LabVM
    try:
        vm = LabVM.load(name)
    except LabError:
        say(f"no lab VM {name!r}: nothing to tear down")
        return
    vm.stop()
    say(f"lab VM {name} removed (QEMU, overlay, namespace {vm.netns}, state dir)")


def run(args) -> int:
    from .image import ensure_image
    from .vm import LabVM

    name = args.name
    if args.down:
        teardown(name)
        return 0
    _project()
    t_all = time.monotonic()
    say("1/7 lab image (Debian 12 + kernel, cached after the first build)")
    ensure_image()

    vm = None
    try:
        existing = LabVM.load(name)
        if existing.pid:
            vm = existing
            say(f"2/7 reusing the running lab VM {name} (vio4wd-tool lab vm --down --name {name} to start afresh)")
    except LabError:
        pass
    if vm is None:
        say(f"2/7 booting lab VM {name} (QEMU 10, TCG, 2 vCPUs, emulated igb PF with SR-IOV)")
        vm = LabVM(name, mem_mb=args.mem)
        vm.start()
        try:
            took = vm.wait_ssh()
        except BaseException:
            print(f"console of the failed VM:\n{vm.console_log()}", file=sys.stderr)
            vm.stop()
            raise
        print(f"    SSH up after {took:.0f} s")
    ok = False
    try:
        books = Playbooks(vm, vm.dir)
        report = vm.dir / "doctor"

        say("3/7 doctor before the rollout: playbooks/doctor.yml (installs vio4wd in the VM, writes the fleet report)")
        took, _ = books.run("doctor.yml", "doctor-before", "-e", f"vio4wd_report_dir={report}-before")
        _show(report.with_name("doctor-before") / "fleet-doctor.txt")

        say("4/7 rollout: ansible-playbook -i inventory/lab playbooks/site.yml (kernel args + reboot, hugepages, "
            "VFs, pinning, forwarder)")
        took, recap = books.run("site.yml", "site")
        print(f"    rollout took {took:.0f} s: {recap.get('changed', '?')} changed, {recap.get('ok', '?')} ok")

        say("5/7 doctor after the rollout (vio4wd-tool doctor -q in the VM: warnings and failures only)")
        after = vm.ssh("vio4wd-tool doctor -q", check=False)
        print("\n".join("    " + line for line in (after.stdout + after.stderr).rstrip().splitlines()))
        if after.returncode != 0:
            raise LabError("doctor reports FAIL on the provisioned lab VM (above)")

        kind = "virtio-forwarder-echo" if args.guest == "echo" else "dpdk-testpmd --forward-mode=icmpecho"
        say(f"6/7 guest side on relay 1's vhost-user socket ({kind}, MAC = VF 0's), ping through "
            "PF -> VF -> forwarder")
        books.run("lab-ping.yml", "lab-ping", "-e", "vio4wd_lab_keep_guest=true",
                  "-e", f"vio4wd_lab_guest={args.guest}")
        ping = subprocess.run(["ip", "netns", "exec", vm.netns, "ping", "-c", str(args.pings), "-i", "0.2",
                               "-W", "2", GUEST_IP], capture_output=True, text=True)
        lines = ping.stdout.strip().splitlines()
        print("\n".join("    " + line for line in lines[-3:]))
        if ping.returncode != 0:
            raise LabError(f"ping {GUEST_IP} from {vm.netns} failed:\n{ping.stdout}{ping.stderr}")

        say("7/7 relay 1 live stats, and the guest QEMU command line `vio4wd-tool vm` renders for it")
        stats = vm.ssh("vio4wd-tool stats --table --active-only", check=False)
        print("\n".join("    " + line for line in (stats.stdout + stats.stderr).rstrip().splitlines()))
        snippet = vm.ssh("vio4wd-tool vm --relay 1", check=False)
        print("\n".join("    " + line for line in (snippet.stdout + snippet.stderr).rstrip().splitlines()))
        ok = True
    finally:
        ssh = f"vio4wd-tool lab ssh --name {name} --"
        if ok:
            say(f"the lab worked end to end in {time.monotonic() - t_all:.0f} s")
        if args.keep or not ok:
            print(f"""
Look around (the lab VM {name} keeps running{'' if ok else ', left for a post-mortem'}):
  {ssh} vio4wd-tool stats --watch            live relay counters (the guest side keeps answering)
  ip netns exec {vm.netns} ping {GUEST_IP}   more traffic through PF, VF and forwarder
  {ssh} vio4wd-tool doctor                  preflight checks on the provisioned VM
  {ssh} vio4wd-tool vm --relay 1 --format libvirt    the libvirt <interface> for relay 1
  vio4wd-tool lab ssh --name {name}                     a shell in the VM
  logs: {vm.dir}/*.log (every ansible-playbook run)
Tear it down: vio4wd-tool lab vm --down --name {name}""")
        else:
            say(f"tearing down lab VM {name} (--keep leaves it running to look around)")
            vm.stop()
    return 0
