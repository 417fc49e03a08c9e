"""Stats over a live flow (net_null VF -> relay; no guest: counted as dropped-not-connected),
per-client rate windows, and the CLI's output formats."""
from __future__ import annotations

import json
import threading
import time

import pytest

from forwarder.control import virtioforwarder_pb2 as pb
from vio4wd_tool import cli, fwdctl
from vio4wd_tool.fwdctl import Client, port_request

from testlib import wait_for

pytestmark = pytest.mark.dpdk


@pytest.fixture(scope="module")
def flow(fwd):
    """net_null0 on relay 0: the worker receives a steady stream of 64-byte frames."""
    r = Client(fwd.ep["port_control"]).request(port_request("add", ["net_null0"], relay=0),
                                               pb.PortControlResponse)
    assert r.status == pb.PortControlResponse.OK, r
    st = Client(fwd.ep["stats"])
    wait_for(lambda: fwdctl.stats(st, [0]).relay[0].vf_to_vm.pkts_rx_from_vf > 0,
             what="packets from net_null0")
    return fwd


def up(reply, rid=0):
    return next(r for r in reply.relay if r.id == rid).vf_to_vm


def windowed(fwd, delay_ms: int, probe_after: float):
    """One stats request with a rate window, bracketed by the counters just before it (c0), a
    probe from another client `probe_after` s into the window (c_mid >= the window's start
    counter) and the request's send/receive times.  The flow's speed may vary (other busy
    processes on this machine), so the checks below are bounds, not a guessed rate."""
    st = Client(fwd.ep["stats"])
    c0 = up(fwdctl.stats(st, [0])).pkts_rx_from_vf
    mid: dict[str, int] = {}

    def probe():
        time.sleep(probe_after)
        mid["c"] = up(fwdctl.stats(Client(fwd.ep["stats"]), [0])).pkts_rx_from_vf
        t = time.monotonic()
        fwdctl.relay_cpu_map(Client(fwd.ep["config"]))     # other endpoints answer at once
        mid["config_s"] = time.monotonic() - t
    th = threading.Thread(target=probe)
    t_send = time.monotonic()
    th.start()
    w = up(fwdctl.stats(st, [0], delay_ms=delay_ms))
    t_recv = time.monotonic()
    th.join(5)
    return w, c0, mid, t_recv - t_send


def check_window(w, c0, mid, delay_s: float, elapsed_max: float) -> None:
    rate = w.pkt_rate_rx_from_vf
    # the window is at least `delay` long and starts after c0: rate * delay <= counted - c0
    assert rate * delay_s <= w.pkts_rx_from_vf - c0 + 1
    # the window starts before the probe and ends with these counters
    assert rate * elapsed_max >= w.pkts_rx_from_vf - mid["c"] - 1
    assert w.byte_rate_rx_from_vf == pytest.approx(64 * rate, rel=0.001)
    assert mid["config_s"] < 1.0      # the 1 s contract


def test_counters_and_rates_match_over_the_window(flow):
    w, c0, mid, elapsed = windowed(flow, 1000, 0.2)
    assert w.pkts_rx_from_vf > mid["c"] >= c0 > 0
    assert w.pkt_rate_rx_from_vf > 0
    check_window(w, c0, mid, 1.0, elapsed)
    # no guest: every packet is dropped as not connected, 64 bytes each, as counted
    assert w.pkts_dropped_vm_not_connected == pytest.approx(w.pkts_rx_from_vf, rel=0.01)
    assert w.bytes_rx_from_vf == 64 * w.pkts_rx_from_vf
    assert w.pkt_rate_tx_to_vm == 0 and w.pkts_tx_to_vm == 0
    zero = up(fwdctl.stats(Client(flow.ep["stats"]), [0]))     # delay 0: counters only
    assert zero.pkt_rate_rx_from_vf == 0.0 and zero.pkts_rx_from_vf >= w.pkts_rx_from_vf


def test_concurrent_clients_do_not_disturb_each_other(flow):
    """A long window and, inside it, a short window and instant requests of other clients:
    each rate covers its own window (no shared baseline reset), nobody waits for another."""
    results: dict[str, object] = {}

    def long_window():
        results["long"] = windowed(flow, 1500, 0.1)

    th = threading.Thread(target=long_window)
    th.start()
    time.sleep(0.3)
    short = windowed(flow, 300, 0.05)
    assert short[3] < 0.3 + 0.7
    st = Client(flow.ep["stats"])
    for _ in range(20):
        t = time.monotonic()
        fwdctl.stats(st, [0])
        assert time.monotonic() - t < 1.0
    th.join(10)
    assert not th.is_alive()
    w, c0, mid, elapsed = results["long"]
    check_window(w, c0, mid, 1.5, elapsed)
    sw, sc0, smid, selapsed = short
    check_window(sw, sc0, smid, 0.3, selapsed)
    # the short window closed long before the long one: the long one's counters are later
    assert w.pkts_rx_from_vf >= sw.pkts_rx_from_vf


def test_selection_and_status_codes(flow):
    st = Client(flow.ep["stats"])
    assert [r.id for r in fwdctl.stats(st).relay] == list(range(flow.max_relays))
    assert [r.id for r in fwdctl.stats(st, [3, 0, 50]).relay] == [0, 3]   # unknown: left out
    assert fwdctl.stats(st, include_inactive=False).relay == []          # no guest: inactive
    for req, status in ((pb.StatsRequest(relay=list(range(flow.max_relays + 1))),
                         pb.StatsResponse.E2BIG),
                        (pb.StatsRequest(delay=60_000), pb.StatsResponse.EBADR)):
        assert st.request(req, pb.StatsResponse).status == status
    r = fwdctl.stats(st, [0]).relay[0]
    assert r.cpu.vf_to_vm == 1 and r.cpu.vm_to_vf == 1
    assert r.socket_id == 0


def test_cli_formats(flow, capsys):
    ep = ["--endpoint", flow.ep["stats"]]
    assert cli.main(["stats", "--relay", "0", "--delay", "100", *ep]) == 0
    lines = capsys.readouterr().out.splitlines()
    keys = dict(line.split("=", 1) for line in lines)
    assert keys["relay_0.active"] == "False"
    assert keys["relay_0.vf.pci_addr_str"] == "net_null0"
    assert keys["relay_0.vf_to_vm.internal_state"] == "DPDK_READY"
    assert int(keys["relay_0.vf_to_vm.cpu_1.pkts_rx_from_vf"]) > 0
    assert float(keys["relay_0.vf_to_vm.cpu_1.pkt_rate_rx_from_vf"]) >= 0
    assert "relay_0.vm_to_vf.cpu_1.pkts_rx_from_vm" in keys
    assert cli.main(["stats", "--json", "--relay", "0", *ep]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["status"] == "OK" and int(doc["relay"][0]["vf_to_vm"]["pkts_rx_from_vf"]) > 0
    assert cli.main(["stats", "--table", *ep]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["relay", "state", "cpus"] and len(out) == 1 + flow.max_relays
    assert cli.main(["stats", "--watch", "0.1", "--count", "2", "--delay", "50", *ep]) == 0
    assert capsys.readouterr().out.count("rates over 50 ms") == 2
    assert cli.main(["fwd-config", "--endpoint", flow.ep["config"]]) == 0
    assert "relay_0: vf_to_vm cpu 1, vm_to_vf cpu 1" in capsys.readouterr().out
    assert cli.main(["relay-pin", "--cores", "--endpoint", flow.ep["core_sched"]]) == 0
    assert capsys.readouterr().out.strip() == "1"
    assert cli.main(["relay-pin", "2:1", "--endpoint", flow.ep["core_sched"]]) == 0
    capsys.readouterr()
    assert cli.main(["relay-pin", "2:0", "--endpoint", flow.ep["core_sched"]]) == 1
    assert "BAD_CPU" in capsys.readouterr().err
    pc = ["--endpoint", flow.ep["port_control"]]
    sock = f"{flow.settings['socket_dir']}/virtio-forwarder0.sock"
    assert cli.main(["ports", "query-pci", sock, *pc]) == 0
    assert capsys.readouterr().out.strip() == "net_null0"
    assert cli.main(["ports", "add", "net_null1", "--relay", "5", *pc]) == 0
    assert cli.main(["ports", "add", "net_null1", "--relay", "5", "--strict", *pc]) == 1
    assert "ALREADY_ADDED" in capsys.readouterr().err
    assert cli.main(["ports", "remove", "--relay", "5", *pc]) == 0
    assert cli.main(["ports", "add", "nonsense", "--relay", "5", *pc]) == 2


def test_cli_clear_error_when_not_running(tmp_path, capsys):
    assert cli.main(["stats", "--endpoint", f"ipc://{tmp_path}/stats"]) == fwdctl.EXIT_UNREACHABLE
    assert "not running" in capsys.readouterr().err
    # a socket file nobody serves: times out with a clear message
    (tmp_path / "stats").touch()
    assert cli.main(["fwd-config", "--timeout", "0.2", "--endpoint",
                     f"ipc://{tmp_path}/stats"]) == fwdctl.EXIT_UNREACHABLE
    assert "does not answer" in capsys.readouterr().err
