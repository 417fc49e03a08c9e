"""IOMMU: effective mode from /sys/kernel/iommu_groups and the kernel args that steer it."""
from __future__ import annotations

from dataclasses import dataclass

from .checks import check, fail, ok, skip, warn
from .root import Root

GROUPS_DIR = "/sys/kernel/iommu_groups"
# the firmware's IOMMU table names the hardware even while the kernel leaves the IOMMU off
ACPI_TABLES = {"intel": "/sys/firmware/acpi/tables/DMAR", "amd": "/sys/firmware/acpi/tables/IVRS"}

# iommu_groups/N/type values: identity = passthrough; DMA / DMA-FQ = translation
PASSTHROUGH = "identity"


@dataclass
class IommuInfo:
    groups: dict[int, str]  # group -> type ('' when the file is missing)
    hardware: str = ""  # 'intel' (DMAR), 'amd' (IVRS) or '' (no ACPI table seen)

    @property
    def mode(self) -> str:
        """'off' (no groups), 'passthrough' (all identity), 'translation', or 'mixed'."""
        if not self.groups:
            return "off"
        types = {t for t in self.groups.values()}
        if types == {PASSTHROUGH}:
            return "passthrough"
        if PASSTHROUGH in types:
            return "mixed"
        return "translation"


def probe(root: Root) -> IommuInfo:
    groups = {}
    for d in root.glob(GROUPS_DIR, "[0-9]*"):
        groups[int(d.rsplit("/", 1)[1])] = root.read(f"{d}/type", "") or ""
    hw = next((k for k, path in ACPI_TABLES.items() if root.exists(path)), "")
    return IommuInfo(groups, hw)


def is_intel(host) -> bool:
    """Whether the IOMMU is Intel VT-d (so `intel_iommu=on` applies): from the ACPI DMAR table,
    else from the CPU vendor (a TCG guest may report AMD while QEMU emulates intel-iommu)."""
    if host.iommu.hardware:
        return host.iommu.hardware == "intel"
    return host.cpu.vendor == "GenuineIntel"


def iommu_args(driver: str, intel: bool) -> list[str]:
    """Kernel args for effective passthrough with the chosen driver."""
    args = ["iommu=pt"]
    if driver == "vfio-pci" and intel:
        args.insert(0, "intel_iommu=on")
    return args


@check("iommu.mode", "IOMMU", "Checking IOMMU mode for the VF driver",
       "igb_uio needs no DMA translation (IOMMU off or passthrough); vfio-pci needs IOMMU groups")
def check_mode(host, intent):
    info = host.iommu
    mode = info.mode
    want = " ".join(iommu_args(intent.driver, is_intel(host)))
    if intent.driver == "igb_uio":
        if mode in ("translation", "mixed"):
            n = sum(1 for t in info.groups.values() if t != PASSTHROUGH)
            return fail(f"DMA translation active in {n} of {len(info.groups)} IOMMU groups: igb_uio "
                        "devices will fault on DMA",
                        f"add '{want}' to the kernel args (vio4wd-tool grub) and reboot, "
                        "or use vfio-pci")
        return ok(f"IOMMU {mode}: igb_uio DMA works")
    if intent.driver == "vfio-pci":
        if mode == "off":
            return fail("no IOMMU groups: vfio-pci cannot bind",
                        f"enable VT-d/AMD-Vi in firmware and add '{want}' to the kernel args "
                        "(vio4wd-tool grub --driver vfio-pci), then reboot")
        return ok(f"IOMMU {mode} with {len(info.groups)} groups")
    return skip(f"driver {intent.driver} needs no IOMMU check")


@check("iommu.kernel_args", "IOMMU", "Checking IOMMU kernel arguments",
       "intel_iommu= takes on/off (and option flags); 'pt' is not a value: use iommu=pt")
def check_args(host, intent):
    vals = [v for v in host.kernel.cmdline if v.startswith("intel_iommu=")]
    bad = [v for v in vals if "pt" in v.split("=", 1)[1].split(",")]
    if bad:
        intel = is_intel(host)
        return warn("'intel_iommu=pt' is ignored: the kernel's intel_iommu= parser has no 'pt' "
                    "value, so the IOMMU stays at the kernel's default (often translation)",
                    f"replace it by '{' '.join(iommu_args(intent.driver, intel))}' "
                    "(vio4wd-tool grub does this) and reboot")
    return ok("no ineffective IOMMU arguments" + (f" ({' '.join(vals)})" if vals else ""))
