"""A virtio_user (or any ethdev) peer in its own process, driven by JSON lines (tests only).

argv[1]: JSON {"eal": [EAL argv with the --vdev(s)], "queues": n, "jumbo": bool (9000 MTU
buffers)}.  Every port found is started
with n rx and n tx queues.  Requests: {"op": "link", "port": p}; {"op": "send", "port": p,
"queue": q, "frames": [hex]} -> number sent; {"op": "recv", "port": p, "count": n, "timeout": s}
-> {"frames": [[queue, hex], ...]} in arrival order; {"op": "drain", "port": p, "seconds": s}
-> packets per queue; {"op": "plug", "devargs": d} -> port (probed, started);
{"op": "stop", "port": p} (the guest disables its vrings, stays connected); {"op": "unplug",
"port": p} (disconnects); {"op": "cycles", "devargs": d, "n": n} -> n times plug, send a burst,
stop, unplug; {"op": "quit"}.
"""
import json
import sys
import time

from forwarder._dataplane import ffi, lib

BURST = 32


def plug(devargs: bytes, nq: int, pool) -> int:
    port = lib.dp_port_probe(devargs)
    if port < 0 or lib.dp_port_start(port, nq, nq, 1024, pool) != 0:
        sys.exit(f"peer: cannot plug {devargs}")
    return port


def main():
    conf = json.loads(sys.argv[1])
    argv = [ffi.new("char[]", a.encode()) for a in conf["eal"]]
    if lib.rte_eal_init(len(argv), ffi.new("char *[]", argv)) < 0:
        sys.exit("peer: EAL init failed")
    nq = conf.get("queues", 1)
    pool = lib.dp_pool_create(b"peer_pool", 16383, -1, conf.get("jumbo", False))
    ports = list(range(lib.rte_eth_dev_count_avail()))
    for p in ports:
        if lib.dp_port_start(p, nq, nq, 1024, pool) != 0:   # virtio: up to queue_size
            sys.exit(f"peer: cannot start port {p}")
    bufs = ffi.new("struct rte_mbuf *[]", BURST)
    out = ffi.new("char[]", 16384)
    print(json.dumps({"ok": {"ports": ports}}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        op, port = req["op"], req.get("port", 0)
        if op == "quit":
            break
        if op == "link":
            reply = bool(lib.dp_link_up(port))
        elif op == "send":
            sent = 0
            for hexframe in req["frames"]:
                data = bytes.fromhex(hexframe)
                m = lib.dp_mbuf_from(pool, data, len(data))
                bufs[0] = m
                deadline = time.monotonic() + 2
                while lib.dp_tx_burst(port, req.get("queue", 0), bufs, 1) == 0:
                    if time.monotonic() > deadline:
                        lib.dp_mbuf_free(m)
                        break
                else:
                    sent += 1
            reply = sent
        elif op == "recv":
            frames = []
            deadline = time.monotonic() + req.get("timeout", 5)
            while len(frames) < req["count"] and time.monotonic() < deadline:
                for q in range(nq):
                    n = lib.dp_rx_burst(port, q, bufs, BURST)
                    for i in range(n):
                        ln = lib.dp_mbuf_copy_out(bufs[i], out, 16384)
                        frames.append([q, bytes(ffi.buffer(out, ln)).hex()])
                        lib.dp_mbuf_free(bufs[i])
            reply = {"frames": frames}
        elif op == "drain":
            lib.dp_link_up(port)    # virtio_user notices a lost backend when asked for the link
            per_q = [0] * nq
            deadline = time.monotonic() + req["seconds"]
            while time.monotonic() < deadline:
                for q in range(nq):
                    n = lib.dp_rx_burst(port, q, bufs, BURST)
                    per_q[q] += n
                    for i in range(n):
                        lib.dp_mbuf_free(bufs[i])
            reply = per_q
        elif op == "plug":
            reply = plug(req["devargs"].encode(), nq, pool)
        elif op == "stop":
            reply = lib.rte_eth_dev_stop(port)
        elif op == "unplug":
            reply = lib.dp_port_remove(port)
        elif op == "cycles":
            frame = bytes(60)
            for _ in range(req["n"]):
                p = plug(req["devargs"].encode(), nq, pool)
                for i in range(BURST):
                    bufs[i] = lib.dp_mbuf_from(pool, frame, len(frame))
                sent = lib.dp_tx_burst(p, 0, bufs, BURST)
                for i in range(sent, BURST):
                    lib.dp_mbuf_free(bufs[i])
                if lib.rte_eth_dev_stop(p) != 0 or lib.dp_port_remove(p) != 0:
                    sys.exit("peer: cannot unplug")
            reply = req["n"]
        else:
            reply = f"unknown op {op}"
        print(json.dumps({"ok": reply}), flush=True)
    lib.rte_eal_cleanup()
    print(json.dumps({"ok": "bye"}), flush=True)


if __name__ == "__main__":
    main()
