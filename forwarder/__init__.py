"""vio4wd's virtio-forwarder: a DPDK relay between SR-IOV VFs and vhost-user guests.

`config` (pure Python) reads the configuration; `relays.Forwarder` is the control-plane API over
the C data plane `_dataplane` (cffi); `daemon` is the `virtio-forwarder` program.
"""
