"""The vio4wd forwarder as a benchmark DUT, in its own process (one EAL per process).

argv[1]: JSON {"settings": {ForwarderSettings fields}, "eal": [full EAL argv]}.  Each stdin line
{"call": name, "args": [...]} answers one line {"ok": result} or {"error": message}.  Calls:
`add_vf(relay, [devargs])`, `counters(n)` (counters of relays 0..n-1 summed per direction, plus
per-relay tx), `status(relay)`, `loops()`, `cycles()` (busy/total TSC cycles per worker), `quit`.
"""
import dataclasses
import json
import sys

from forwarder.config import ForwarderSettings
from forwarder.relays import Forwarder


def main():
    conf = json.loads(sys.argv[1])
    fwd = Forwarder(ForwarderSettings(**conf["settings"]), conf["eal"])
    fwd.start()
    print(json.dumps({"ok": {"workers": fwd.workers, "max_relays": fwd.max_relays}}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        call, args = req["call"], req.get("args", [])
        if call == "quit":
            break
        try:
            if call == "add_vf":
                fwd.add_vf(args[0], args[1])
                reply = True
            elif call == "status":
                reply = dataclasses.asdict(fwd.status(args[0]))
            elif call == "counters":
                total = {"vf2vm": {}, "vm2vf": {}, "per_relay_tx": [], "connected": 0}
                for st in fwd.statuses(list(range(args[0]))):
                    total["connected"] += st.active
                    total["per_relay_tx"].append([st.vf2vm.tx_pkts, st.vm2vf.tx_pkts])
                    for d in ("vf2vm", "vm2vf"):
                        for k, v in dataclasses.asdict(getattr(st, d)).items():
                            total[d][k] = total[d].get(k, 0) + v
                reply = total
            elif call == "loops":
                reply = fwd.worker_loops()
            elif call == "cycles":  # {worker: [busy, total]} TSC cycles
                reply = {str(w): list(c) for w, c in fwd.worker_cycles().items()}
            else:
                raise ValueError(f"unknown call {call}")
            out = {"ok": reply}
        except Exception as exc:    # noqa: BLE001 - reported to the driver
            out = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(out), flush=True)
    fwd.stop()
    print(json.dumps({"ok": "stopped"}), flush=True)


if __name__ == "__main__":
    main()
