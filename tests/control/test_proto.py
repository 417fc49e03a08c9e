"""The kept generated code matches the .proto, and the field numbers are issue 5's contract."""
from __future__ import annotations

import importlib.util

import pytest

from forwarder.control import gen
from forwarder.control import virtioforwarder_pb2 as pb


@pytest.mark.skipif(importlib.util.find_spec("grpc_tools") is None,
                    reason="needs grpcio-tools (the kept protoc)")
def test_regenerating_gives_the_kept_file():
    assert gen.generate() == gen.KEPT.read_bytes(), \
        "virtioforwarder_pb2.py is stale: run python -m forwarder.control.gen"


def numbers(msg) -> dict[str, int]:
    return {f.name: f.number for f in msg.DESCRIPTOR.fields}


def test_field_numbers_are_the_wire_contract():
    assert pb.DESCRIPTOR.package == "virtioforwarder"
    assert pb.DESCRIPTOR.syntax == "proto2" if hasattr(pb.DESCRIPTOR, "syntax") else True
    assert numbers(pb.PortControlRequest) == dict(op=1, pci_addrs=2, virtio_id=3, conditional=4,
                                                  name=5, mode=6, vhost_path=7)
    assert dict(pb.PortControlRequest.Op.items()) == dict(ADD=0, REMOVE=1, ADD_SOCK=2,
                                                          REMOVE_SOCK=3, QUERY_PCI=4)
    assert numbers(pb.PortControlRequest.PciAddress) == dict(domain=1, bus=2, slot=3, function=4)
    assert pb.PortControlRequest().conditional is True
    assert numbers(pb.PortControlResponse) == dict(status=4, error_code=5, error_code_source=6,
                                                   query_string=7)
    assert dict(pb.PortControlResponse.Status.items()) == dict(ERROR=0, OK=1)
    assert numbers(pb.StatsRequest) == dict(relay=1, include_inactive=2, delay=3)
    assert pb.StatsRequest.DESCRIPTOR.fields_by_name["relay"].is_packed
    assert pb.StatsRequest().include_inactive is True and pb.StatsRequest().delay == 0
    assert numbers(pb.StatsResponse) == dict(status=1, relay=2)
    assert dict(pb.StatsResponse.Status.items()) == dict(OK=0, EBADR=400, E2BIG=413, ENOMEM=500)
    assert numbers(pb.RelayState) == dict(id=1, active=2, ident=3, cpu=4, vhost=5, vf=6,
                                          vf_to_vm=7, vm_to_vf=8, socket_id=9)
    assert numbers(pb.RelayState.CPU) == dict(vf_to_vm=1, vm_to_vf=2)
    assert numbers(pb.RelayState.Vhost) == dict(vhost_socket_name=1)
    assert numbers(pb.RelayState.VF) == dict(pci_addr_str=1)
    up = ["active", "internal_state", "pkts_rx_from_vf", "bytes_rx_from_vf", "pkts_tx_to_vm",
          "bytes_tx_to_vm", "pkts_dropped_vm_queue_full", "bytes_dropped_vm_queue_full",
          "pkts_dropped_vm_not_connected", "bytes_dropped_vm_not_connected",
          "pkt_rate_rx_from_vf", "byte_rate_rx_from_vf", "pkt_rate_tx_to_vm",
          "byte_rate_tx_to_vm"]
    assert numbers(pb.RelayState.VFtoVM) == {n: i + 1 for i, n in enumerate(up)}
    down = [n.replace("vf", "@").replace("vm", "vf").replace("@", "vm") for n in up]
    assert numbers(pb.RelayState.VMtoVF) == {n: i + 1 for i, n in enumerate(down)}
    assert numbers(pb.ConfigRequest) == {}
    assert numbers(pb.ConfigResponse) == dict(status=1, relay_cpu_map=5)
    assert dict(pb.ConfigResponse.Status.items()) == dict(OK=0, EBADR=400)
    for rc in (pb.ConfigResponse.RelayCPU, pb.CoreSchedRequest.RelayCPU):
        assert numbers(rc) == dict(relay_number=1, vf2virtio_cpu=2, virtio2vf_cpu=3)
    assert numbers(pb.CoreSchedRequest) == dict(op=1, relay_cpu_map=2)
    assert dict(pb.CoreSchedRequest.Op.items()) == dict(UPDATE=0, GET_EAL_CORES=1)
    assert numbers(pb.CoreSchedResponse) == dict(status=4, error_code=5, error_code_source=6,
                                                 eal_cores=7)
    assert dict(pb.CoreSchedResponse.Status.items()) == dict(ERROR=0, OK=1)
