"""The host model: every concern's probe over one `Root`, each run once and on demand."""
from __future__ import annotations

from functools import cached_property

from . import cpu, hugepages, iommu, irq, kernel, kmod, pci, virt
from .root import Root


class Host:
    def __init__(self, root: Root | str = "/"):
        self.root = root if isinstance(root, Root) else Root(root)

    @cached_property
    def kernel(self) -> kernel.Kernel:
        return kernel.probe(self.root)

    @cached_property
    def cpu(self) -> cpu.CpuInfo:
        return cpu.probe(self.root)

    @cached_property
    def huge(self) -> hugepages.HugeInfo:
        return hugepages.probe(self.root)

    @cached_property
    def iommu(self) -> iommu.IommuInfo:
        return iommu.probe(self.root)

    @cached_property
    def modules(self) -> kmod.ModInfo:
        return kmod.probe(self.root, self.kernel.release)

    @cached_property
    def pci(self) -> pci.PciInfo:
        return pci.probe(self.root)

    @cached_property
    def irq(self) -> irq.IrqInfo:
        return irq.probe(self.root)

    @cached_property
    def virt(self) -> virt.VirtInfo:
        return virt.probe(self.root)

    PROBES = ("kernel", "cpu", "huge", "iommu", "modules", "pci", "irq", "virt")

    def probe_all(self) -> "Host":
        for name in self.PROBES:
            getattr(self, name)
        return self
