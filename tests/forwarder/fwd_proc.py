"""A forwarder in its own process, driven by JSON lines on stdin (tests only).

argv[1]: JSON {"settings": {ForwarderSettings fields}, "eal": [full EAL argv]}.
Each stdin line {"call": method, "args": [...], "kwargs": {...}} calls that `Forwarder` method
and answers one line {"ok": result} or {"error": message, "code": name}.
"""
import dataclasses
import json
import sys

from forwarder.config import ForwarderSettings
from forwarder.relays import Forwarder, RelayError


def plain(x):
    if dataclasses.is_dataclass(x):
        return dataclasses.asdict(x)
    if isinstance(x, list):
        return [plain(i) for i in x]
    if isinstance(x, dict):
        return {str(k): plain(v) for k, v in x.items()}
    return x


def main():
    conf = json.loads(sys.argv[1])
    fwd = Forwarder(ForwarderSettings(**conf["settings"]), conf["eal"])
    fwd.start()
    print(json.dumps({"ok": {"workers": fwd.workers, "max_relays": fwd.max_relays}}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        if req["call"] == "quit":
            break
        try:
            if req["call"] == "move":
                req["args"][0] = {int(k): v for k, v in req["args"][0].items()}
            result = getattr(fwd, req["call"])(*req.get("args", []), **req.get("kwargs", {}))
            reply = {"ok": plain(result)}
        except RelayError as exc:
            reply = {"error": str(exc), "code": exc.code.name}
        print(json.dumps(reply), flush=True)
    fwd.stop()
    print(json.dumps({"ok": "stopped"}), flush=True)


if __name__ == "__main__":
    main()
