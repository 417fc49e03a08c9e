"""Every doctor check: a passing and a failing case over real captured trees (mutated)."""
from __future__ import annotations

import pytest

from vio4wd_tool.checks import REGISTRY, Status
from vio4wd_tool.doctor import run
from vio4wd_tool.intent import Intent

REL = "6.18.44-fc-v657"  # the devbox capture's kernel
NIC = "0000:00:03.0"  # the devbox capture's virtio NIC (eth0, 02:fc:00:00:00:01)
HP2 = "/sys/devices/system/node/node0/hugepages/hugepages-2048kB"
HP1G = "/sys/kernel/mm/hugepages/hugepages-1048576kB"
MOUNT_2M = "hugetlbfs /dev/hugepages hugetlbfs rw,relatime,pagesize=2M 0 0\n"
MOUNT_1G = "hugetlbfs /dev/hugepages-1G hugetlbfs rw,relatime,pagesize=1024M 0 0\n"


def statuses(tree, check_id, **intent):
    res = run(tree.host(), Intent(**intent), only=[check_id])
    assert res, f"{check_id} yielded nothing"
    assert all(r.check == check_id for r in res)
    return {r.status for r in res}, res


def worst(tree, check_id, **intent):
    sts, res = statuses(tree, check_id, **intent)
    for s in (Status.FAIL, Status.WARN, Status.PASS, Status.SKIP):
        if s in sts:
            return s, res


def domain_xml(name="g1", mac="02:fc:00:00:00:01", path="/tmp/virtio-forwarder/virtio-forwarder1.sock",
               mode="client", queues=1, hugepages=True, shared=True, pin="0", page_kb=None, mem_kb=1048576):
    pages = f"<page size='{page_kb}' unit='KiB'/>" if page_kb else ""
    mb = f"<memoryBacking><hugepages>{pages}</hugepages></memoryBacking>" if hugepages else ""
    acc = " memAccess='shared'" if shared else ""
    return f"""<domain type='kvm'><name>{name}</name><memory unit='KiB'>{mem_kb}</memory>{mb}
<vcpu>1</vcpu><cputune><vcpupin vcpu='0' cpuset='{pin}'/></cputune>
<cpu><numa><cell id='0' cpus='0' memory='{mem_kb}' unit='KiB'{acc}/></numa></cpu>
<devices><interface type='vhostuser'><mac address='{mac}'/>
<source type='unix' path='{path}' mode='{mode}'/><model type='virtio'/><driver queues='{queues}'/>
</interface></devices></domain>"""


def add_domain(tree, **kw):
    tree.write(f"/etc/libvirt/qemu/{kw.get('name', 'g1')}.xml", domain_xml(**kw))


def with_libvirt(tree):
    tree.fact("libvirtd-version", "libvirtd (libvirt) 9.0.0\n")
    tree.append("/etc/passwd", "libvirt-qemu:x:64055:108:Libvirt Qemu,,,:/var/lib/libvirt:/usr/sbin/nologin\n")
    tree.append("/etc/group", "kvm:x:108:\n")


# ------------------------------------------------------------------ CPU

def test_cpu_flags_pass(capture_tree):
    assert worst(capture_tree("devbox"), "cpu.flags")[0] is Status.PASS


def test_cpu_flags_fail(capture_tree):
    t = capture_tree("devbox")
    t.write("/proc/cpuinfo", t.read("/proc/cpuinfo").replace(" sse4_2", ""))
    st, res = worst(t, "cpu.flags")
    assert st is Status.FAIL and "sse4_2" in res[0].finding


def test_cpu_workers_pass(capture_tree):
    assert worst(capture_tree("devbox"), "cpu.workers", workers=[1], main_lcore=0)[0] is Status.PASS


@pytest.mark.parametrize("kw, words", [
    ({"workers": [5], "main_lcore": 0}, "do not exist"),
    ({"workers": [0, 1], "main_lcore": 0}, "main lcore 0 is also a worker"),
])
def test_cpu_workers_fail(capture_tree, kw, words):
    st, res = worst(capture_tree("devbox"), "cpu.workers", **kw)
    assert st is Status.FAIL and any(words in r.finding for r in res)


def test_cpu_workers_offline_fail(capture_tree):
    t = capture_tree("devbox")
    t.write("/sys/devices/system/cpu/online", "0\n")
    st, res = worst(t, "cpu.workers", workers=[1], main_lcore=0)
    assert st is Status.FAIL and "offline" in res[0].finding


def test_cpu_vcpu_overlap_pass(capture_tree):
    t = capture_tree("devbox")
    add_domain(t, pin="0")
    assert worst(t, "cpu.vcpu_overlap", workers=[1])[0] is Status.PASS


def test_cpu_vcpu_overlap_fail(capture_tree):
    t = capture_tree("devbox")
    add_domain(t, pin="1")
    st, res = worst(t, "cpu.vcpu_overlap", workers=[1])
    assert st is Status.FAIL and "g1" in res[0].finding


def test_irq_affinity_pass(capture_tree):
    t = capture_tree("devbox")
    for d in t.p("/proc/irq").iterdir():
        if (d / "smp_affinity_list").exists():
            (d / "smp_affinity_list").write_text("0\n")
    t.write("/proc/irq/default_smp_affinity", "1\n")
    assert worst(t, "irq.affinity", workers=[1])[0] is Status.PASS


def test_irq_affinity_fail(capture_tree):
    # the real capture: every IRQ may run on 0-1
    st, res = worst(capture_tree("devbox"), "irq.affinity", workers=[1])
    assert st is Status.FAIL and "IRQ" in res[0].finding and "pin --irqs" in res[0].fix


def test_irq_affinity_kernel_managed_is_a_warning(capture_tree):
    """A per-queue managed IRQ (EIO on write; `pin` records it) bound to the worker only: WARN, not FAIL."""
    t = capture_tree("devbox")
    irqs = sorted(int(d.name) for d in t.p("/proc/irq").iterdir() if (d / "smp_affinity_list").exists())
    for i in irqs:
        t.write(f"/proc/irq/{i}/smp_affinity_list", "0\n")
    t.write(f"/proc/irq/{irqs[0]}/smp_affinity_list", "1\n")
    t.write("/proc/irq/default_smp_affinity", "1\n")
    st, res = worst(t, "irq.affinity", workers=[1])
    assert st is Status.FAIL  # not known to be unmovable: pin it
    t.write("/run/vio4wd/irq-unmovable", f"{irqs[0]}\n")
    st, res = worst(t, "irq.affinity", workers=[1])
    assert st is Status.WARN and "kernel-managed" in res[0].finding and "managed_irq" in res[0].fix


def test_irq_balance_pass(capture_tree):
    t = capture_tree("devbox")
    t.write("/usr/sbin/irqbalance", "")
    t.write("/etc/default/irqbalance", 'IRQBALANCE_BANNED_CPULIST="1"\n')
    assert worst(t, "irq.balance", workers=[1])[0] is Status.PASS


def test_irq_balance_fail(capture_tree):
    t = capture_tree("devbox")
    t.write("/usr/sbin/irqbalance", "")
    t.write("/etc/default/irqbalance", "#IRQBALANCE_BANNED_CPUS=\nIRQBALANCE_BANNED_CPUS=00000001\n")
    st, res = worst(t, "irq.balance", workers=[1])
    assert st is Status.FAIL and "IRQBALANCE_BANNED_CPULIST=0-1" in res[0].fix


# ------------------------------------------------------------------ Memory

def test_hugepages_2m_pass(capture_tree):
    t = capture_tree("devbox")
    t.write(f"{HP2}/nr_hugepages", "400\n")
    t.write(f"{HP2}/free_hugepages", "400\n")
    assert worst(t, "hugepages.2m")[0] is Status.PASS


def test_hugepages_2m_fail(capture_tree):
    st, res = worst(capture_tree("devbox"), "hugepages.2m")
    assert st is Status.FAIL and "need 384" in res[0].finding and "--pages-2m 384" in res[0].fix


# /proc/PID/numa_maps lines of the forwarder on a lab VM (file-backed hugetlbfs maps, 2 MiB each)
NUMA_MAPS = "".join(f"{0x100200000 + i * 0x200000:x} local file=/dev/hugepages/virtio-forwardermap_{i} huge "
                    f"dirty=1 N0=1 kernelpagesize_kB=2048\n" for i in range(128))
NUMA_MAPS += "7f0000000000 default file=/usr/lib/libc.so.6 mapped=50 mapmax=9 N0=50 kernelpagesize_kB=4\n"


def test_hugepages_2m_counts_the_running_forwarders_pages(capture_tree):
    """On a lab VM with the forwarder running: 256 free of 384 + its own 128 is enough."""
    t = capture_tree("devbox")
    t.write(f"{HP2}/nr_hugepages", "384\n")
    t.write(f"{HP2}/free_hugepages", "256\n")
    assert worst(t, "hugepages.2m")[0] is Status.FAIL
    t.write("/var/run/virtio-forwarder/virtio-forwarder.pid", "889\n")
    t.write("/proc/889/numa_maps", NUMA_MAPS)
    st, res = worst(t, "hugepages.2m")
    assert st is Status.PASS and "256 free + 128 held by the running forwarder (pid 889)" in res[0].finding
    t.write("/proc/889/numa_maps", NUMA_MAPS.replace("N0=1", "N1=1"))  # its pages on another node
    assert worst(t, "hugepages.2m")[0] is Status.FAIL


def test_hugepages_2m_jumbo_needs_more(capture_tree):
    t = capture_tree("devbox")
    t.write(f"{HP2}/nr_hugepages", "400\n")
    t.write(f"{HP2}/free_hugepages", "400\n")
    st, res = worst(t, "hugepages.2m", jumbo=True)
    assert st is Status.FAIL and "need 1375" in res[0].finding


def test_hugepages_1g_pass(capture_tree):
    t = capture_tree("devbox")
    t.write(f"{HP1G}/nr_hugepages", "2\n")
    t.write(f"{HP1G}/free_hugepages", "2\n")
    assert worst(t, "hugepages.1g", guest_1g_pages=2)[0] is Status.PASS


def test_hugepages_1g_fail(capture_tree):
    st, res = worst(capture_tree("devbox"), "hugepages.1g", guest_1g_pages=2)
    assert st is Status.FAIL and "hugepagesz=1G hugepages=2" in res[0].fix


def test_hugepages_1g_needs_pdpe1gb(capture_tree):
    t = capture_tree("devbox")
    t.write("/proc/cpuinfo", t.read("/proc/cpuinfo").replace(" pdpe1gb", ""))
    st, res = worst(t, "hugepages.1g", guest_1g_pages=1)
    assert st is Status.FAIL and "pdpe1gb" in res[0].finding


def test_hugepages_1g_from_guest_xml(capture_tree):
    t = capture_tree("devbox")
    add_domain(t, page_kb=1048576, mem_kb=2 * 1048576)
    st, res = worst(t, "hugepages.1g")
    assert st is Status.FAIL and "guests need 2" in res[0].finding


def test_hugetlbfs_mounts_pass(capture_tree):
    t = capture_tree("devbox")
    t.append("/proc/mounts", MOUNT_2M)
    assert worst(t, "hugetlbfs.mounts")[0] is Status.PASS


def test_hugetlbfs_mounts_fail_not_mounted(capture_tree):
    st, res = worst(capture_tree("devbox"), "hugetlbfs.mounts")
    assert st is Status.FAIL and "not a hugetlbfs mount" in res[0].finding


def test_hugetlbfs_mounts_fail_twice(capture_tree):
    t = capture_tree("devbox")
    t.append("/proc/mounts", MOUNT_2M + MOUNT_2M)
    st, res = worst(t, "hugetlbfs.mounts")
    assert st is Status.FAIL and any("mounted 2 times" in r.finding for r in res)


def test_hugetlbfs_mounts_fail_two_sizes_one_dir(capture_tree):
    t = capture_tree("devbox")
    t.append("/proc/mounts", MOUNT_2M + MOUNT_2M.replace("pagesize=2M", "pagesize=1024M"))
    st, res = worst(t, "hugetlbfs.mounts")
    assert st is Status.FAIL and any("two page sizes" in r.finding for r in res)


def test_hugetlbfs_mounts_fail_huge_dir_is_1g(capture_tree):
    t = capture_tree("devbox")
    t.append("/proc/mounts", MOUNT_1G)
    st, res = worst(t, "hugetlbfs.mounts", huge_dir="/dev/hugepages-1G")
    assert st is Status.FAIL and "not a 2 MiB hugetlbfs" in res[0].finding


def test_sysctl_max_map_count_pass(capture_tree):
    assert worst(capture_tree("devbox"), "sysctl.max_map_count")[0] is Status.PASS


def test_sysctl_max_map_count_fail(capture_tree):
    t = capture_tree("devbox")
    t.write("/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages", "40000\n")
    st, res = worst(t, "sysctl.max_map_count")
    assert st is Status.FAIL and "vm.max_map_count=80001" in res[0].fix


# ------------------------------------------------------------------ IOMMU and kernel

def iommu_group(t, n, typ):
    t.write(f"/sys/kernel/iommu_groups/{n}/type", typ + "\n")


def test_iommu_mode_pass_igb_uio_off(capture_tree):
    assert worst(capture_tree("devbox"), "iommu.mode", driver="igb_uio")[0] is Status.PASS


def test_iommu_mode_pass_igb_uio_passthrough(capture_tree):
    t = capture_tree("devbox")
    iommu_group(t, 0, "identity")
    assert worst(t, "iommu.mode", driver="igb_uio")[0] is Status.PASS


def test_iommu_mode_fail_igb_uio_translation(capture_tree):
    t = capture_tree("devbox")
    iommu_group(t, 0, "DMA-FQ")
    iommu_group(t, 1, "identity")
    st, res = worst(t, "iommu.mode", driver="igb_uio")
    assert st is Status.FAIL and "iommu=pt" in res[0].fix


def test_iommu_mode_fail_then_pass_vfio(capture_tree):
    t = capture_tree("devbox")
    st, res = worst(t, "iommu.mode", driver="vfio-pci")
    assert st is Status.FAIL and "intel_iommu=on iommu=pt" in res[0].fix  # the devbox CPU is Intel
    iommu_group(t, 0, "DMA")
    assert worst(t, "iommu.mode", driver="vfio-pci")[0] is Status.PASS


def test_iommu_kernel_args_pass(capture_tree):
    assert worst(capture_tree("devbox"), "iommu.kernel_args")[0] is Status.PASS


def test_iommu_kernel_args_warn_intel_iommu_pt(capture_tree):
    t = capture_tree("devbox")
    t.write("/proc/cmdline", "root=/dev/sda1 intel_iommu=pt quiet\n")
    st, res = worst(t, "iommu.kernel_args")
    assert st is Status.WARN and "no 'pt'" in res[0].finding and "iommu=pt" in res[0].fix


def test_kmod_driver_fail(capture_tree):
    st, res = worst(capture_tree("devbox"), "kmod.driver", driver="igb_uio")
    assert st is Status.FAIL and "uio, igb_uio not loaded" in res[0].finding


def test_kmod_driver_pass(capture_tree):
    t = capture_tree("devbox")
    for m in ("uio", "igb_uio"):
        t.write(f"/sys/module/{m}/initstate", "live\n")
    assert worst(t, "kmod.driver", driver="igb_uio")[0] is Status.PASS


def test_kmod_driver_vfio(capture_tree):
    t = capture_tree("devbox")
    assert worst(t, "kmod.driver", driver="vfio-pci")[0] is Status.FAIL
    t.write(f"/lib/modules/{REL}/modules.builtin", "kernel/drivers/vfio/vfio.ko\nkernel/drivers/vfio/pci/vfio-pci.ko\n")
    assert worst(t, "kmod.driver", driver="vfio-pci")[0] is Status.PASS


def ko(vermagic: str) -> str:
    return "\x7fELF....license=GPL\x00vermagic=" + vermagic + " SMP preempt mod_unload modversions \x00name=igb_uio\x00"


def test_kmod_igb_uio_file_pass(capture_tree):
    t = capture_tree("devbox")
    t.write(f"/lib/modules/{REL}/updates/dkms/igb_uio.ko", ko(REL))
    assert worst(t, "kmod.igb_uio_file", driver="igb_uio")[0] is Status.PASS


def test_kmod_igb_uio_file_fail_other_kernel(capture_tree):
    t = capture_tree("devbox")
    t.write("/lib/modules/6.1.0-99-amd64/updates/dkms/igb_uio.ko", ko("6.1.0-99-amd64"))
    st, res = worst(t, "kmod.igb_uio_file", driver="igb_uio")
    assert st is Status.FAIL and "found only for 6.1.0-99-amd64" in res[0].finding


def test_kmod_igb_uio_file_fail_vermagic(capture_tree):
    t = capture_tree("devbox")
    t.write(f"/lib/modules/{REL}/updates/dkms/igb_uio.ko", ko("6.1.0-99-amd64"))
    st, res = worst(t, "kmod.igb_uio_file", driver="igb_uio")
    assert st is Status.FAIL and "built for 6.1.0-99-amd64" in res[0].finding


# ------------------------------------------------------------------ QEMU and libvirt

def test_virt_qemu_pass(capture_tree):
    assert worst(capture_tree("devbox"), "virt.qemu", vhost_client=True)[0] is Status.PASS


@pytest.mark.parametrize("version, client", [("2.4.1", False), ("2.6.0", True)])
def test_virt_qemu_fail(capture_tree, version, client):
    t = capture_tree("devbox")
    t.fact("qemu-version-qemu-system-x86_64", f"QEMU emulator version {version}\n")
    st, res = worst(t, "virt.qemu", vhost_client=client)
    assert st is Status.FAIL and version in res[0].finding


def test_virt_libvirt_pass_and_skip(capture_tree):
    t = capture_tree("devbox")
    assert worst(t, "virt.libvirt")[0] is Status.SKIP
    with_libvirt(t)
    assert worst(t, "virt.libvirt")[0] is Status.PASS


def test_virt_libvirt_fail(capture_tree):
    t = capture_tree("devbox")
    t.fact("libvirtd-version", "libvirtd (libvirt) 1.2.2\n")
    assert worst(t, "virt.libvirt")[0] is Status.FAIL


def test_virt_kvm_pass(capture_tree):
    assert worst(capture_tree("devbox"), "virt.kvm")[0] is Status.PASS


def test_virt_kvm_warn(capture_tree):
    t = capture_tree("devbox")
    t.fact("dev-kvm", "No such file or directory")
    assert worst(t, "virt.kvm")[0] is Status.WARN


def test_virt_libvirt_dirs_pass(capture_tree):
    import os
    t = capture_tree("devbox")
    with_libvirt(t)
    t.append("/proc/mounts", MOUNT_2M)
    d = t.p("/dev/hugepages/libvirt")
    d.mkdir(parents=True)
    os.chown(d, 64055, 108)
    assert worst(t, "virt.libvirt_dirs")[0] is Status.PASS


def test_virt_libvirt_dirs_fail(capture_tree):
    t = capture_tree("devbox")
    with_libvirt(t)
    t.append("/proc/mounts", MOUNT_2M)
    st, res = worst(t, "virt.libvirt_dirs")
    assert st is Status.FAIL and "/dev/hugepages/libvirt missing" in res[0].finding
    t.p("/dev/hugepages/libvirt").mkdir(parents=True)  # owned by root: still wrong
    st, res = worst(t, "virt.libvirt_dirs")
    assert st is Status.FAIL and "not libvirt-qemu:kvm" in res[0].finding


def test_virt_qemu_conf_pass(capture_tree):
    t = capture_tree("devbox")
    with_libvirt(t)
    t.append("/proc/mounts", MOUNT_2M + MOUNT_1G)
    t.write("/etc/libvirt/qemu.conf", 'hugetlbfs_mount = ["/dev/hugepages", "/dev/hugepages-1G"]\n')
    assert worst(t, "virt.qemu_conf", guest_1g_pages=1)[0] is Status.PASS


def test_virt_qemu_conf_fail(capture_tree):
    t = capture_tree("devbox")
    with_libvirt(t)
    t.append("/proc/mounts", MOUNT_2M + MOUNT_1G)
    t.write("/etc/libvirt/qemu.conf", '#hugetlbfs_mount = "/dev/hugepages"\n')
    st, res = worst(t, "virt.qemu_conf", guest_1g_pages=1)
    assert st is Status.FAIL and "/dev/hugepages-1G" in res[0].fix


# ------------------------------------------------------------------ Guests

def test_guest_memory_pass(capture_tree):
    t = capture_tree("devbox")
    add_domain(t)
    assert worst(t, "guest.memory")[0] is Status.PASS


@pytest.mark.parametrize("kw, words", [({"hugepages": False}, "hugepages"), ({"shared": False}, "memAccess")])
def test_guest_memory_fail(capture_tree, kw, words):
    t = capture_tree("devbox")
    add_domain(t, **kw)
    st, res = worst(t, "guest.memory")
    assert st is Status.FAIL and words in res[0].finding


def test_guest_vhost_pass(capture_tree):
    t = capture_tree("devbox")
    add_domain(t, queues=4)
    assert worst(t, "guest.vhost")[0] is Status.PASS


@pytest.mark.parametrize("kw, intent, words", [
    ({"path": "/var/run/other.sock"}, {}, "does not match"),
    ({"mode": "server"}, {}, "socket mode server"),
    ({"mode": "client"}, {"vhost_client": True}, "socket mode client"),
    ({"queues": 33}, {}, "33 queues"),
])
def test_guest_vhost_fail(capture_tree, kw, intent, words):
    t = capture_tree("devbox")
    add_domain(t, **kw)
    st, res = worst(t, "guest.vhost", **intent)
    assert st is Status.FAIL and words in res[0].finding


def test_guest_mac_pass(capture_tree):
    t = capture_tree("devbox")
    add_domain(t, mac="02:FC:00:00:00:01")
    assert worst(t, "guest.mac", static_vfs={1: NIC})[0] is Status.PASS


def test_guest_mac_fail(capture_tree):
    t = capture_tree("devbox")
    add_domain(t, mac="52:54:00:12:34:56")
    st, res = worst(t, "guest.mac", static_vfs={1: NIC})
    assert st is Status.FAIL and "02:fc:00:00:00:01" in res[0].fix


# ------------------------------------------------------------------ the registry is fully covered

def test_every_check_has_a_pass_and_a_fail_test():
    """Convention: test_<check id with _ for .>_pass... and ..._fail.../_warn... in tests/test_doctor*.py."""
    import re
    from pathlib import Path

    text = "".join(f.read_text() for f in Path(__file__).parent.glob("test_doctor*.py"))
    missing = []
    for cid in REGISTRY:
        stem = "def test_" + cid.replace(".", "_")
        if not re.search(stem + r"_pass", text):
            missing.append(f"{cid}: no passing case")
        if not re.search(stem + r"_(fail|warn)", text):
            missing.append(f"{cid}: no failing case")
    assert not missing, missing
