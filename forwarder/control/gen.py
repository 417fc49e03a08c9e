"""Regenerate `virtioforwarder_pb2.py` from `virtioforwarder.proto`.

    python -m forwarder.control.gen            # rewrite the kept file
    python -m forwarder.control.gen --check    # exit 1 if the kept file is stale

Uses grpcio-tools' bundled protoc (`pip install grpcio-tools`), whose protoc matches the
protobuf runtime this project pins (grpcio-tools 1.85 <-> protobuf 7.x); the generated file
records that version and the runtime refuses code newer than itself.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROTO = HERE / "virtioforwarder.proto"
KEPT = HERE / "virtioforwarder_pb2.py"


def generate() -> bytes:
    """Run protoc on the .proto; return the generated module's bytes."""
    from grpc_tools import protoc  # noqa: PLC0415 (dev tool, not a runtime dependency)

    with tempfile.TemporaryDirectory() as tmp:
        rc = protoc.main(["protoc", f"--proto_path={HERE}", f"--python_out={tmp}", str(PROTO)])
        if rc != 0:
            raise RuntimeError(f"protoc failed with exit code {rc}")
        return (Path(tmp) / "virtioforwarder_pb2.py").read_bytes()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    fresh = generate()
    if "--check" in argv:
        if KEPT.read_bytes() != fresh:
            print(f"{KEPT} is stale: run python -m forwarder.control.gen", file=sys.stderr)
            return 1
        return 0
    KEPT.write_bytes(fresh)
    print(f"wrote {KEPT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
