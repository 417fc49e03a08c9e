"""A guest stand-in on a relay's vhost-user socket: answers ARP and ICMP echo (ping), so a relay can
be checked end to end (VF -> forwarder -> "guest" -> forwarder -> VF) without booting a VM.

    /opt/vio4wd/venv/bin/virtio-forwarder-echo --socket /tmp/virtio-forwarder/virtio-forwarder1.sock \\
        --mac 52:54:00:00:00:01 [--ip 10.213.0.2] [--huge-dir /dev/hugepages] [--cpu 0]

It is a `net_virtio_user` DPDK port in its own process (EAL `--in-memory --single-file-segments`,
hugepages from the default pool): give it the VF's MAC (the forwarder rewrites no MACs, so frames
for the guest carry the VF's). It answers ARP requests for --ip (any IP when omitted) and ICMP echo
requests addressed to its MAC. It polls with a short sleep when idle, so it does not take a CPU
from the forwarder's workers. Counters are printed every --stats seconds and at exit (Ctrl-C/SIGTERM).
"""
from __future__ import annotations

import argparse
import ipaddress
import re
import signal
import struct
import sys
import time

BURST = 32
ETH_ARP, ETH_IP = 0x0806, 0x0800


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def answer(frame: bytes, mac: bytes, ip: bytes | None) -> tuple[str, bytes | None]:
    """(kind, reply frame or None) for one received Ethernet frame."""
    if len(frame) < 14:
        return "short", None
    dst, src, etype = frame[:6], frame[6:12], struct.unpack("!H", frame[12:14])[0]
    if etype == ETH_ARP and len(frame) >= 42:
        htype, ptype, hlen, plen, op = struct.unpack("!HHBBH", frame[14:22])
        sha, spa, tpa = frame[22:28], frame[28:32], frame[38:42]
        if (htype, ptype, hlen, plen, op) != (1, ETH_IP, 6, 4, 1) or (ip is not None and tpa != ip):
            return "arp-other", None
        arp = struct.pack("!HHBBH", 1, ETH_IP, 6, 4, 2) + mac + tpa + sha + spa
        return "arp", src + mac + struct.pack("!H", ETH_ARP) + arp
    if etype == ETH_IP and dst == mac and len(frame) >= 34:
        ihl = (frame[14] & 0x0F) * 4
        total = struct.unpack("!H", frame[16:18])[0]
        if frame[23] != 1 or ihl < 20 or len(frame) < 14 + total or total < ihl + 8:
            return "ip-other", None
        iph = bytearray(frame[14:14 + ihl])
        icmp = bytearray(frame[14 + ihl:14 + total])
        if icmp[0] != 8:
            return "icmp-other", None
        iph[12:16], iph[16:20] = frame[30:34], frame[26:30]  # swap addresses
        iph[8] = 64
        iph[10:12] = b"\0\0"
        iph[10:12] = struct.pack("!H", _csum(bytes(iph)))
        icmp[0] = 0
        icmp[2:4] = b"\0\0"
        icmp[2:4] = struct.pack("!H", _csum(bytes(icmp)))
        return "icmp", src + mac + frame[12:14] + bytes(iph) + bytes(icmp)
    return "other", None


def parse_mac(text: str) -> bytes:
    if not re.fullmatch(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}", text):
        raise argparse.ArgumentTypeError(f"bad MAC {text!r} (like 52:54:00:00:00:01)")
    return bytes.fromhex(text.replace(":", ""))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="virtio-forwarder-echo", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--socket", required=True, help="the relay's vhost-user socket")
    ap.add_argument("--mac", required=True, type=parse_mac, help="the guest MAC: the relay's VF MAC")
    ap.add_argument("--ip", help="answer ARP for this IPv4 address only (default: any)")
    ap.add_argument("--huge-dir", help="hugetlbfs mount for the EAL (default: the system's)")
    ap.add_argument("--cpu", type=int, default=0, help="CPU for the poller (default 0: not a worker's)")
    ap.add_argument("--stats", type=float, default=0, help="print counters every N seconds (0: only at exit)")
    a = ap.parse_args(argv)
    ip = ipaddress.IPv4Address(a.ip).packed if a.ip else None
    mac_text = ":".join(f"{b:02x}" for b in a.mac)

    from forwarder._dataplane import ffi, lib

    eal = ["virtio-forwarder-echo", "--no-pci", "--in-memory", "--single-file-segments", "--lcores",
           f"0@{a.cpu}", "--no-telemetry", "--log-level", "lib.eal:error", "--vdev",
           f"net_virtio_user0,path={a.socket},mac={mac_text},queue_size=256"]
    if a.huge_dir:
        eal += ["--huge-dir", a.huge_dir]
    args = [ffi.new("char[]", x.encode()) for x in eal]
    if lib.rte_eal_init(len(args), ffi.new("char *[]", args)) < 0:
        print(f"virtio-forwarder-echo: EAL init failed (hugepages free? socket {a.socket} there?)",
              file=sys.stderr)
        return 1
    pool = lib.dp_pool_create(b"echo_pool", 2047, -1, 0)
    if pool == ffi.NULL or lib.rte_eth_dev_count_avail() < 1 or lib.dp_port_start(0, 1, 1, 256, pool) != 0:
        print(f"virtio-forwarder-echo: cannot start the virtio_user port on {a.socket} (is the forwarder "
              "serving it?)", file=sys.stderr)
        return 1
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    bufs = ffi.new("struct rte_mbuf *[]", BURST)
    out = ffi.new("struct rte_mbuf *[]", 1)
    data = ffi.new("char[]", 16384)
    counts: dict[str, int] = {}
    print(f"virtio-forwarder-echo: answering on {a.socket} as {mac_text}"
          f"{' ' + a.ip if a.ip else ''}", flush=True)
    last = time.monotonic()
    while not stop:
        n = lib.dp_rx_burst(0, 0, bufs, BURST)
        for i in range(n):
            ln = lib.dp_mbuf_copy_out(bufs[i], data, 16384)
            lib.dp_mbuf_free(bufs[i])
            kind, reply = answer(bytes(ffi.buffer(data, ln)), a.mac, ip)
            counts[kind] = counts.get(kind, 0) + 1
            if reply is not None:
                if len(reply) < 60:
                    reply += bytes(60 - len(reply))
                out[0] = lib.dp_mbuf_from(pool, reply, len(reply))
                if out[0] == ffi.NULL or lib.dp_tx_burst(0, 0, out, 1) != 1:
                    if out[0] != ffi.NULL:
                        lib.dp_mbuf_free(out[0])
                    counts["tx-failed"] = counts.get("tx-failed", 0) + 1
                else:
                    counts["replied"] = counts.get("replied", 0) + 1
        if n == 0:
            time.sleep(0.0005)
        if a.stats and time.monotonic() - last >= a.stats:
            last = time.monotonic()
            print(f"virtio-forwarder-echo: {counts}", flush=True)
    print(f"virtio-forwarder-echo: {counts}", flush=True)
    lib.rte_eal_cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
