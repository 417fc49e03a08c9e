"""The rate-limited generator (bench/_gen.c) in its own process, driven by JSON lines.

argv[1]: JSON {"eal": [full EAL argv with the --vdev(s)]}; every port is started with one rx and
one tx queue.  Calls: `links()` -> [bool per port]; `trial(tx_port, rx_port, size, pps, seconds,
drain)` -> counters (pps <= 0: as fast as possible); `tsc_hz()`; `quit`.  The trial runs on the
main lcore's CPU (give `--lcores 0@<cpu>`).
"""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _gen_build import load  # noqa: E402


def main():
    mod = load()
    ffi, lib = mod.ffi, mod.lib
    conf = json.loads(sys.argv[1])
    argv = [ffi.new("char[]", a.encode()) for a in conf["eal"]]
    if lib.rte_eal_init(len(argv), ffi.new("char *[]", argv)) < 0:
        print(json.dumps({"error": "EAL init failed"}), flush=True)
        return
    pool = lib.bg_pool(b"bench_gen", 16383)
    ports = list(range(lib.rte_eth_dev_count_avail()))
    for p in ports:
        if lib.bg_port_start(p, pool) != 0:
            print(json.dumps({"error": f"cannot start port {p}"}), flush=True)
            return
    res = ffi.new("struct bg_result *")
    print(json.dumps({"ok": {"ports": ports, "tsc_hz": lib.bg_tsc_hz()}}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        call, args = req["call"], req.get("args", [])
        if call == "quit":
            break
        if call == "links":
            reply = [bool(lib.bg_link_up(p)) for p in ports]
        elif call == "trial":
            tx, rx, size, pps, seconds, drain = args
            lib.bg_trial(tx, rx, pool, size, pps, seconds, drain, res)
            reply = {k: getattr(res, k) for k in ("offered", "sent", "not_accepted", "received",
                                                  "alloc_fail", "seconds")}
        elif call == "tsc_hz":
            reply = lib.bg_tsc_hz()
        else:
            print(json.dumps({"error": f"unknown call {call}"}), flush=True)
            continue
        print(json.dumps({"ok": reply}), flush=True)
    lib.rte_eal_cleanup()
    print(json.dumps({"ok": "bye"}), flush=True)


if __name__ == "__main__":
    main()
