"""The core scheduler (load balancer): the plan, and live rebalancing on the real forwarder."""
from __future__ import annotations

import pytest

from forwarder.control.sched import plan
from vio4wd_tool import fwdctl
from vio4wd_tool.fwdctl import Client, port_request
from forwarder.control import virtioforwarder_pb2 as pb

from testlib import wait_for

VF2VM, VM2VF = 0, 1


def test_plan_spreads_heavy_directions_and_keeps_idle_ones():
    loads = {(0, VF2VM): 100.0, (1, VF2VM): 100.0, (0, VM2VF): 0.0, (1, VM2VF): 0.0}
    current = {k: 1 for k in loads}
    p = plan(loads, current, [0, 1], {0: 0, 1: 0}, {0: 0, 1: 0}, 0.25)
    assert p is not None and {p[(0, VF2VM)], p[(1, VF2VM)]} == {0, 1}
    assert p[(0, VM2VF)] == p[(1, VM2VF)] == 1                  # idle: not moved


def test_plan_respects_sensitivity_and_balance():
    loads = {(0, VF2VM): 100.0, (1, VF2VM): 90.0}
    assert plan(loads, {(0, VF2VM): 0, (1, VF2VM): 1}, [0, 1], {}, {}, 0.0) is None  # balanced
    lop = {(0, VF2VM): 100.0, (1, VF2VM): 10.0}
    cur = {(0, VF2VM): 0, (1, VF2VM): 0}                         # 110 vs 0 -> 100 vs 10
    assert plan(lop, cur, [0, 1], {}, {}, 0.05) is not None
    assert plan(lop, cur, [0, 1], {}, {}, 0.2) is None            # gain 9 % < 20 %
    assert plan({(0, 0): 0.0}, {(0, 0): 0}, [0, 1], {}, {}, 0.1) is None   # nothing to do


def test_plan_stays_numa_local():
    workers, wn = [2, 3, 10, 11], {2: 0, 3: 0, 10: 1, 11: 1}
    loads = {(r, VF2VM): 50.0 for r in range(4)}
    current = {(r, VF2VM): 2 for r in range(4)}
    p = plan(loads, current, workers, wn, {0: 0, 1: 0, 2: 1, 3: -1}, 0.1)
    assert {p[(0, VF2VM)], p[(1, VF2VM)]} == {2, 3}              # node 0 relays on node 0
    assert p[(2, VF2VM)] in (10, 11)                             # node 1 relay on node 1
    assert p[(3, VF2VM)] in workers                              # unknown node: anywhere


@pytest.mark.dpdk
def test_scheduler_rebalances_live_flows(start_fwd):
    # two workers (CPU 0 and 1; the main lcore shares CPU 0 without busy-polling)
    f = start_fwd(cpus=[0, 1], master_lcore=None, cpu_pins={0: [1, 1], 1: [1, 1]},
                  core_sched={"enable": True, "poll_interval": 0.3, "sensitivity": 0.1},
                  _lcores="2@0,0@0,1@1", _main="2")
    assert sorted(f.workers) == [0, 1]
    pc = Client(f.ep["port_control"])
    for rid in (0, 1):
        r = pc.request(port_request("add", [f"net_null{rid}"], relay=rid), pb.PortControlResponse)
        assert r.status == pb.PortControlResponse.OK, r

    def split():
        m = fwdctl.relay_cpu_map(Client(f.ep["config"]))
        return m[0][VF2VM] != m[1][VF2VM] and m
    m = wait_for(split, timeout=10, what="the two busy VF->VM directions on different workers")
    assert m[0][VM2VF] == 1 and m[1][VM2VF] == 1                 # idle directions stayed
    # both keep forwarding after the move
    st = Client(f.ep["stats"])
    a = {r.id: r.vf_to_vm.pkts_rx_from_vf for r in fwdctl.stats(st, [0, 1]).relay}
    wait_for(lambda: all(r.vf_to_vm.pkts_rx_from_vf > a[r.id]
                         for r in fwdctl.stats(st, [0, 1]).relay), what="both relays forwarding")
