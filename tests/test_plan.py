"""`vio4wd-tool plan`: node-local workers, isolation, hugepages, pins; file written atomically."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from testlib import vio4wd_tool

from vio4wd_tool.actions import ActionError
from vio4wd_tool.intent import Intent
from vio4wd_tool.plan import SCHEMA, balance, compute, load_plan, plan_action

PF = "0000:05:00.0"
VF1, VF2 = "0000:05:10.0", "0000:05:10.2"


def make_two_node(tree, vf_node=1, smt=True):
    """Turn a devbox copy into a 2-node, 8-CPU host (node0 0-3, node1 4-7; SMT pairs (0,1),(2,3)...)
    with an SR-IOV PF and two VFs on `vf_node`."""
    cpu = "/sys/devices/system/cpu"
    tree.write(f"{cpu}/present", "0-7\n")
    tree.write(f"{cpu}/online", "0-7\n")
    for c in range(8):
        pair = f"{c - c % 2}-{c - c % 2 + 1}" if smt else str(c)
        tree.write(f"{cpu}/cpu{c}/topology/thread_siblings_list", pair + "\n")
        tree.write(f"{cpu}/cpu{c}/topology/core_id", f"{c // 2 if smt else c}\n")
        tree.write(f"{cpu}/cpu{c}/topology/physical_package_id", f"{c // 4}\n")
    node = "/sys/devices/system/node"
    mem0 = tree.read(f"{node}/node0/meminfo")
    for n in (0, 1):
        tree.write(f"{node}/node{n}/cpulist", f"{4 * n}-{4 * n + 3}\n")
        tree.write(f"{node}/node{n}/meminfo", mem0.replace("Node 0", f"Node {n}"))
        for size in ("2048kB", "1048576kB"):
            for f in ("nr_hugepages", "free_hugepages", "surplus_hugepages"):
                tree.write(f"{node}/node{n}/hugepages/hugepages-{size}/{f}", "0\n")
    tree.write(f"{node}/online", "0-1\n")
    add_nic(tree, vf_node)
    return tree


def add_nic(tree, node):
    devs = "/sys/bus/pci/devices"
    for addr, extra in ((PF, {"sriov_totalvfs": "7", "sriov_numvfs": "2"}), (VF1, {}), (VF2, {})):
        d = tree.p(f"{devs}/{addr}")
        d.mkdir(parents=True, exist_ok=True)
        for k, v in {"class": "0x020000", "vendor": "0x8086", "device": "0x10ca", "numa_node": str(node),
                     **extra}.items():
            (d / k).write_text(v + "\n")
    pf = tree.p(f"{devs}/{PF}")
    for i, vf in enumerate((VF1, VF2)):
        (pf / f"virtfn{i}").symlink_to(f"../{vf}")
        (tree.p(f"{devs}/{vf}") / "physfn").symlink_to(f"../{PF}")


# ------------------------------------------------------------------ devbox (1 node, 2 CPUs)

def test_devbox_best_possible_plan(capture_tree):
    host = capture_tree("devbox").host()
    p = compute(host, Intent(relays=2))
    assert p["schema"] == SCHEMA and p["node"] == 0
    assert p["workers"] == [1] and 0 not in p["workers"]
    assert p["housekeeping"] == [0] and p["main_lcore"] == 0 and p["irq_affinity"] == [0]
    assert p["isolcpus"] == "1" and p["nohz_full"] == "1" and p["rcu_nocbs"] == "1"
    assert p["irqbalance_banned"] == [1]
    assert p["hugepages_2m"] == {"0": 384} and p["hugepages_1g"] == {}
    assert p["cpu_mask"] == "0x2"
    assert [r["id"] for r in p["relays"]] == [1, 2]
    assert all(r["vf2vm_cpu"] == 1 and r["vm2vf_cpu"] == 1 for r in p["relays"])
    assert all(r["socket"] == f"/tmp/virtio-forwarder/virtio-forwarder{r['id']}.sock" for r in p["relays"])
    notes = " ".join(p["notes"])
    assert "cannot satisfy 2 worker CPU(s)" in notes and "only CPU 0 is left for housekeeping" in notes
    assert "splits across NUMA nodes" in notes
    assert p["kernel_args"] == ["default_hugepagesz=2M", "hugepagesz=2M", "hugepages=384", "isolcpus=1",
                                "nohz_full=1", "rcu_nocbs=1", "irqaffinity=0", "iommu=pt"]


def test_devbox_jumbo_and_guest_pages(capture_tree):
    t = capture_tree("devbox")
    p = compute(t.host(), Intent(relays=1, jumbo=True), guest_mem_kb=[1048576 + 1])
    assert p["hugepages_2m"] == {"0": 1375}
    assert p["hugepages_1g"] == {"0": 2}  # rounded up to whole 1 GiB pages
    assert "hugepagesz=1G" in p["kernel_args"] and "hugepages=2" in p["kernel_args"]
    assert p["relays"][0]["guest_mem_mb"] == 1024


def test_vfio_on_intel_adds_intel_iommu_on(capture_tree):
    t = capture_tree("devbox")
    intel = t.host().cpu.vendor == "GenuineIntel"
    p = compute(t.host(), Intent(driver="vfio-pci"))
    assert ("intel_iommu=on" in p["kernel_args"]) == intel and "iommu=pt" in p["kernel_args"]


# ------------------------------------------------------------------ two NUMA nodes

def test_two_node_plan_is_node_local(capture_tree):
    t = make_two_node(capture_tree("devbox"))  # 8 CPUs with SMT: room for a full plan
    host = t.host()
    cpu = host.cpu
    p = compute(host, Intent(relays=2, jumbo=True), pfs=[PF], guest_mem_kb=[1048576], guest_vcpus=1)
    node1 = set(cpu.nodes[1])
    assert p["node"] == 1
    assert set(p["workers"]) <= node1 and 0 not in p["workers"]
    # one thread per core works; siblings idle and isolated
    for w in p["workers"]:
        for s in cpu.siblings_of(w):
            assert s not in p["workers"] and s in p["idle_siblings"]
    assert set(p["irqbalance_banned"]) == set(p["workers"]) | set(p["idle_siblings"])
    assert not set(p["housekeeping"]) & set(p["irqbalance_banned"])
    assert set(p["housekeeping"]) | set(p["irqbalance_banned"]) == set(cpu.online)
    assert p["main_lcore"] in p["housekeeping"] and p["main_lcore"] != 0
    assert p["hugepages_2m"] == {"1": 1375} and p["hugepages_1g"] == {"1": 2}
    # VFs of the PF go to the relays, pins balance the two directions over the workers
    assert [r["vf"] for r in p["relays"]] == [VF1, VF2]
    for r in p["relays"]:
        assert r["vf2vm_cpu"] in p["workers"] and r["vm2vf_cpu"] in p["workers"]
        assert not set(r["vcpus"]) & (set(p["irqbalance_banned"]) | {p["main_lcore"]})
        if not any("guest vCPUs are suggested" in n for n in p["notes"]):
            assert set(r["vcpus"]) <= node1
    if len(p["workers"]) == 2:
        assert sorted(p["worker_load"].values()) == [22, 22]
    # boot-time args: per-node counts (kernel >= 5.13) or N x nodes, explained in the notes
    hp = [a for a in p["kernel_args"] if a.startswith("hugepages=")]
    assert hp[0] in ("hugepages=0:0,1:1375", "hugepages=2750")
    assert any("split evenly across" in n for n in p["notes"])


def test_two_node_make_synthetic_exact(capture_tree):
    """The synthetic 2-node host (always available) gives exactly this plan."""
    host = make_two_node(capture_tree("devbox")).host()
    p = compute(host, Intent(relays=2), pfs=[PF])
    assert p["workers"] == [4, 6] and p["idle_siblings"] == [5, 7]
    assert p["housekeeping"] == [0, 1, 2, 3] and p["main_lcore"] == 1  # node 1 is all workers
    assert p["isolcpus"] == "4-7" and p["nohz_full"] == "4,6" and p["cpu_mask"] == "0x50"
    assert p["irq_affinity"] == [0, 1, 2, 3]
    assert [(r["vf2vm_cpu"], r["vm2vf_cpu"]) for r in p["relays"]] == [(4, 6), (6, 4)]
    assert [r["vcpus"] for r in p["relays"]] == [[2], [3]]  # node 1 has no CPU left: note says so
    assert any("another node" in n for n in p["notes"])
    p = compute(host, Intent(relays=1), pfs=[PF])
    assert p["workers"] == [6] and p["main_lcore"] == 4 and p["housekeeping"] == [0, 1, 2, 3, 4, 5]
    assert p["relays"][0]["vcpus"] == [5]


def test_two_node_vf_node_from_pci(capture_tree):
    t = make_two_node(capture_tree("devbox"), vf_node=0)
    p = compute(t.host(), Intent(static_vfs={3: VF1}))
    assert p["node"] == 0 and p["workers"] == [2]  # CPU 0's core stays housekeeping
    assert p["relays"][0]["id"] == 3 and p["relays"][0]["vf"] == VF1


def test_two_node_needs_a_node_hint(capture_tree):
    host = make_two_node(capture_tree("devbox")).host()
    with pytest.raises(ActionError, match="--node N"):
        compute(host, Intent(relays=1))
    assert compute(host, Intent(relays=1, numa_node=1))["node"] == 1


def test_balance_weights():
    pins, load = balance([1, 2, 3], [2, 4])
    assert sum(load.values()) == 3 * 22
    assert max(load.values()) - min(load.values()) <= 2
    pins, load = balance([1], [2, 4])
    assert pins[1] == (2, 4) and load == {2: 12, 4: 10}


# ------------------------------------------------------------------ bad input

@pytest.mark.parametrize("kw, words", [
    ({"cpus": [0, 1]}, "CPU 0 cannot be a worker"),
    ({"cpus": [9]}, "do not exist"),
    ({"cpus": [1], "main_lcore": 1}, "main lcore"),
    ({"nworkers": 0}, "at least 1"),
    ({"guest_mem_kb": [64 * 1048576]}, "reduce --guest-mem"),
])
def test_bad_input(capture_tree, kw, words):
    with pytest.raises(ActionError, match=words):
        compute(capture_tree("devbox").host(), Intent(), **kw)


def test_bad_node(capture_tree):
    with pytest.raises(ActionError, match=r"--node 3: no such NUMA node .*node\(s\) 0"):
        compute(capture_tree("devbox").host(), Intent(numa_node=3))


def test_cli_bad_input(capture_tree):
    t = capture_tree("devbox")
    for args, words in ((["--cpus", "1-x"], "bad CPU list element"), (["--vf", "05:10.1"], "bad PCI address"),
                        (["--node", "7"], "no such NUMA node"), (["--pf", "00:03"], "bad PCI address"),
                        (["--guest-mem", "lots"], "expected a size")):
        r = vio4wd_tool("plan", "--root", str(t.path), *args)
        assert r.returncode == 2 and words in r.stderr, (args, r.stderr)
        assert not t.p("/etc/vio4wd/plan.json").exists()


# ------------------------------------------------------------------ the action: check, apply, idempotent

def test_action_check_apply_idempotent(capture_tree):
    t = capture_tree("devbox")
    r = plan_action(t.host().root, Intent(relays=1), check=True)
    assert r.changed and r.check and "+++ b/etc/vio4wd/plan.json" in r.changes[0].diff
    assert not t.p("/etc/vio4wd/plan.json").exists()
    r = plan_action(t.host().root, Intent(relays=1))
    assert r.changed and not r.error
    plan = load_plan("/etc/vio4wd/plan.json", root=t.host().root)
    assert plan["workers"] == [1]
    r = plan_action(t.host().root, Intent(relays=1))
    assert not r.changed
    r = plan_action(t.host().root, Intent(relays=1, jumbo=True))
    assert r.changed and '-  "jumbo": false' in r.changes[0].diff
    assert t.p("/etc/vio4wd/plan.json.vio4wd-bak").exists()


def test_plan_file_does_not_change_when_the_vfs_appear(capture_tree):
    """The rollout plans before it creates VFs: the second run (VFs present, MACs set) rewrites nothing."""
    t = capture_tree("devbox")
    root = t.host().root
    r = plan_action(root, Intent(static_vfs={1: VF1}, driver="vfio-pci"))
    assert r.changed and any("does not exist yet" in n for n in r.notes)
    saved = t.read("/etc/vio4wd/plan.json")
    assert "notes" not in json.loads(saved) and "mac" not in json.loads(saved)["relays"][0]
    add_nic(t, 0)
    r = plan_action(t.host().root, Intent(static_vfs={1: VF1}, driver="vfio-pci"))
    assert not r.changed and not any("does not exist yet" in n for n in r.notes)
    assert r.data["notes"] == r.notes  # still reported (--json, the table)


def test_cli_json_and_human(capture_tree):
    t = capture_tree("devbox")
    out = t.path / "p.json"
    r = vio4wd_tool("plan", "--root", str(t.path), "--plan", "/p.json", "--relays", "1", "--json", "--check")
    assert r.returncode == 0, r.stderr
    j = json.loads(r.stdout)
    assert j["schema"] == "vio4wd.action/1" and j["changed"] and j["check"]
    assert j["data"]["workers"] == [1] and not out.exists()
    r = vio4wd_tool("plan", "--root", str(t.path), "--plan", "/p.json", "--relays", "1")
    assert r.returncode == 0 and "worker CPUs" in r.stdout and "changed: write the plan" in r.stdout
    assert json.loads(out.read_text())["schema"] == SCHEMA
    r = vio4wd_tool("plan", "--root", str(t.path), "--plan", "/p.json", "--relays", "1", "--json")
    assert json.loads(r.stdout)["changed"] is False


def test_load_plan_errors(tmp_path):
    with pytest.raises(ActionError, match="run vio4wd-tool plan first"):
        load_plan(str(tmp_path / "missing.json"))
    (tmp_path / "x.json").write_text('{"schema": "other"}')
    with pytest.raises(ActionError, match="not a vio4wd.plan/1 plan"):
        load_plan(str(tmp_path / "x.json"))


@pytest.mark.root
def test_writing_needs_root_and_says_so(tmp_path):
    """As an unprivileged user: --check works, writing names sudo; nothing is written."""
    import shutil
    import subprocess

    from testlib import VENV_BIN

    if not shutil.which("setpriv"):
        pytest.skip("needs setpriv")
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="vio4wd-test-", dir="/tmp"))  # traversable, not writable, by nobody
    d.chmod(0o755)
    out = d / "plan.json"
    as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", str(VENV_BIN / "vio4wd-tool")]
    r = subprocess.run(as_nobody + ["plan", "--relays", "1", "--plan", str(out), "--check", "--json"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and json.loads(r.stdout)["changed"], r.stderr
    r = subprocess.run(as_nobody + ["plan", "--relays", "1", "--plan", str(out)], capture_output=True, text=True)
    assert r.returncode == 2 and "needs root: run it with sudo" in r.stderr and not out.exists()
    shutil.rmtree(d)


def test_lab_two_node_capture_plan(capture_tree):
    """The real two-node lab VM: CPU 0 on node 0, CPU 1 on node 1 with the igb PF and its VFs."""
    host = capture_tree("labvm-2node").host()
    p = compute(host, Intent(relays=2), pfs=["0000:81:00.0"])
    assert p["node"] == 1 and p["workers"] == [1]
    assert p["housekeeping"] == [0] and p["main_lcore"] == 0
    assert p["hugepages_2m"] == {"1": 384}
    assert [r["vf"] for r in p["relays"]] == ["0000:81:10.0", "0000:81:10.2"]
    assert all(r["vf2vm_cpu"] == 1 and r["vm2vf_cpu"] == 1 for r in p["relays"])
