"""`virtio-forwarder-echo`: the guest stand-in that answers ARP and ping on a relay's vhost-user socket.
Frame logic on crafted frames; end to end with the real forwarder, a net_tap VF stand-in in a private
namespace and `ping` from it (the same path the VM lab and the molecule `site` scenario use)."""
from __future__ import annotations

import re
import struct
import subprocess
import sys

import pytest

from forwarder.echo import _csum, answer, parse_mac
from testlib import VENV_BIN

MAC = parse_mac("52:54:00:14:00:02")
PEER = bytes.fromhex("02aabbccddee")
IP, PEER_IP = bytes([10, 214, 0, 2]), bytes([10, 214, 0, 1])


def arp_request(target=IP):
    body = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + PEER + PEER_IP + bytes(6) + target
    return b"\xff" * 6 + PEER + b"\x08\x06" + body


def icmp_echo(dst=MAC, payload=b"x" * 56):
    icmp = bytearray(struct.pack("!BBHHH", 8, 0, 0, 0x1234, 7) + payload)
    icmp[2:4] = struct.pack("!H", _csum(bytes(icmp)))
    iph = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), 1, 0, 64, 1, 0, PEER_IP, IP))
    iph[10:12] = struct.pack("!H", _csum(bytes(iph)))
    return dst + PEER + b"\x08\x00" + bytes(iph) + bytes(icmp)


def test_arp_reply():
    kind, r = answer(arp_request(), MAC, IP)
    assert kind == "arp"
    assert r[:6] == PEER and r[6:12] == MAC and r[12:14] == b"\x08\x06"
    assert struct.unpack("!H", r[20:22])[0] == 2 and r[22:28] == MAC and r[28:32] == IP
    assert r[32:38] == PEER and r[38:42] == PEER_IP
    assert answer(arp_request(bytes([10, 214, 0, 9])), MAC, IP) == ("arp-other", None)
    assert answer(arp_request(bytes([10, 214, 0, 9])), MAC, None)[0] == "arp"  # any IP


def test_icmp_echo_reply_has_valid_checksums():
    kind, r = answer(icmp_echo(), MAC, IP)
    assert kind == "icmp" and r[:6] == PEER and r[6:12] == MAC
    iph, icmp = r[14:34], r[34:]
    assert _csum(iph) == 0 and _csum(icmp) == 0  # a valid checksum sums to 0xffff
    assert iph[12:16] == IP and iph[16:20] == PEER_IP and icmp[0] == 0 and icmp[4:] == icmp_echo()[38:]
    assert answer(icmp_echo(dst=bytes.fromhex("020000000001")), MAC, IP) == ("other", None)  # not ours
    assert answer(b"\x00" * 10, MAC, IP) == ("short", None)


@pytest.mark.root
@pytest.mark.dpdk
def test_ping_through_the_forwarder_to_the_echo(tmp_path):
    from vio4wd_tool.lab.hostdemo import GUEST_IP, GUEST_MAC, NETNS, HostLab

    lab = HostLab(tmp_path / "lab")
    lab.dir.mkdir(parents=True)
    echo = None
    try:
        lab.setup_hugepages()
        lab.setup_netns()
        lab.start_forwarder()
        exe = VENV_BIN / "virtio-forwarder-echo"
        cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "forwarder.echo"]
        echo = subprocess.Popen(cmd + ["--socket", str(lab.sock / "virtio-forwarder0.sock"), "--mac", GUEST_MAC,
                                       "--ip", GUEST_IP, "--huge-dir", str(lab.huge), "--cpu", "0"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        first = echo.stdout.readline()
        assert "answering on" in first, first + echo.stdout.read()
        ok, out = lab.ping(5)
        # ping counts a reply later than 2 RTTs as lost (iputils, once one reply came): on a loaded
        # 2-core box the echo's poller is sometimes that late, so the exact proof is its counters below
        assert ok and "5 packets transmitted" in out, out + lab.log_tail()
        assert "net_tap0" in lab.stats()  # relay 0 is active: the stats table lists it
    finally:
        if echo is not None:
            echo.terminate()
            rest = echo.communicate(timeout=30)[0]
        lab.teardown()
    # every request crossed tap -> forwarder -> vhost-user, every reply went back (+ ARP)
    assert "'icmp': 5" in rest and re.search(r"'replied': ([6-9]|\d\d)", rest), rest
    assert NETNS not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
