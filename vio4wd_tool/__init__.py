"""vio4wd: host provisioning and tuning toolkit for a DPDK virtio forwarder."""

__version__ = "0.1.0"
