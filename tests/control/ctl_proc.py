"""A forwarder with its control plane in its own process (tests only).

argv[1]: JSON {"settings": {ForwarderSettings fields, core_sched as a dict}, "eal": [EAL argv]}.
Prints one JSON line {"ok": {"workers": [...], "max_relays": n, "endpoints": {...}}} once the
endpoints are bound, then waits for "quit" (or EOF) on stdin and stops cleanly.
This is what `forwarder/daemon.py` does around the same `forwarder.control.start()` hook,
without daemonising, pidfile or signals.
"""
import json
import logging
import sys

from forwarder import control
from forwarder.config import CoreSchedSettings, ForwarderSettings
from forwarder.relays import Forwarder


def main():
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(threadName)s: %(message)s")
    conf = json.loads(sys.argv[1])
    s = dict(conf["settings"])
    s["core_sched"] = CoreSchedSettings(**s.get("core_sched", {}))
    s["cpu_pins"] = {int(k): tuple(v) for k, v in s.get("cpu_pins", {}).items()}
    s["static_vfs"] = [tuple(x) for x in s.get("static_vfs", [])]
    settings = ForwarderSettings(**s)
    fwd = Forwarder(settings, conf["eal"])
    fwd.start()
    ctl = control.start(fwd, settings)
    print(json.dumps({"ok": {"workers": fwd.workers, "max_relays": fwd.max_relays,
                             "endpoints": {k: e.bound for k, e in ctl.endpoints.items()}}}),
          flush=True)
    for line in sys.stdin:
        if line.strip() == "quit":
            break
    ctl.stop()
    fwd.stop()
    print(json.dumps({"ok": "stopped"}), flush=True)


if __name__ == "__main__":
    main()
