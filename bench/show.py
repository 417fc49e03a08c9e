#!/usr/bin/env python3
"""Print the table of saved benchmark results (the JSON of `--json` / `--save`).

    python3 bench/show.py bench/results/2026-11-26/*.json
    python3 bench/show.py --pool bench/results/2026-11-26/throughput-23*.json   # one table,
        # every session's runs pooled per case (throughput and scaling results)

Each file names its benchmark ("benchmark": throughput, zero_loss, scaling, latency, ...); the
table is rendered by that benchmark's own `render_result`, so it reads exactly as printed live.
Needs no root, no DPDK."""
from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def show(path: Path) -> str:
    res = json.loads(path.read_text())
    name = res.get("benchmark")
    if not name:
        raise SystemExit(f"{path}: not a benchmark result (no 'benchmark' key)")
    try:
        mod = importlib.import_module(name)
    except ImportError:
        raise SystemExit(f"{path}: unknown benchmark {name!r} (no bench/{name}.py)") from None
    render = getattr(mod, "render_result", None)
    if render is None:
        return json.dumps(res, indent=2)
    return render(res)


def pooled(paths: list[Path]) -> str:
    import throughput
    results = [json.loads(p.read_text()) for p in paths]
    kinds = {r.get("benchmark") for r in results}
    if not kinds <= {"throughput", "scaling"} or len(kinds) != 1:
        raise SystemExit(f"--pool takes throughput or scaling results of one kind, not {sorted(map(str, kinds))}")
    try:
        res = throughput.pool(results, [p.name for p in paths])
    except ValueError as exc:
        raise SystemExit(f"--pool: {exc}") from None
    return importlib.import_module(kinds.pop()).render_result(res)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--pool", action="store_true",
                    help="one table: the runs of every file pooled per case (throughput, scaling)")
    a = ap.parse_args(argv)
    if a.pool:
        print(pooled(a.files))
        return 0
    for i, f in enumerate(a.files):
        if len(a.files) > 1:
            print(("\n" if i else "") + f"==> {f}")
        print(show(f))
    return 0


if __name__ == "__main__":
    sys.exit(main())
