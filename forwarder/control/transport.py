"""ZeroMQ request/reply endpoints, one thread each.

Each endpoint binds a ROUTER socket.  To a client this is exactly a REP socket: a REQ client
(the original's scripts, `vio4wd-tool`) sends one frame and gets one frame back.  ROUTER is used
instead of REP so that a reply may be sent later than the next request is read: the stats
endpoint holds a client's request for its `delay` window without blocking other clients (the
original busy-waited inside its server thread).

Robustness contract (issue 5): every request gets a reply within 1 s (plus the stats window the
client asked for), including garbage, oversized, truncated and multi-frame messages.
A handler never raises to the loop: the endpoint turns any failure into the message type's
error reply (`Endpoint.error_reply`).
"""
from __future__ import annotations

import grp
import heapq
import itertools
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import zmq

log = logging.getLogger("vio4wd.control")

MAX_REQUEST_BYTES = 64 * 1024          # larger requests are answered with an error
MAX_WIRE_BYTES = 16 * 1024 * 1024      # beyond this ZeroMQ drops the connection (no reply)
POLL_MS = 50                           # stop-flag latency


class Deferred:
    """A handler's answer that is ready only later: `when` (monotonic seconds), then
    `finish()` -> reply bytes is called in the endpoint's thread."""

    def __init__(self, when: float, finish: Callable[[], bytes]):
        self.when = when
        self.finish = finish


Handler = Callable[[bytes], "bytes | Deferred"]


@dataclass(order=True)
class _Pending:
    when: float
    seq: int
    envelope: list = field(compare=False)
    deferred: Deferred = field(compare=False)


def _ipc_path(endpoint: str) -> str | None:
    return endpoint[len("ipc://"):] if endpoint.startswith("ipc://") else None


def prepare_ipc(endpoint: str) -> None:
    """Create the directory of an ipc:// endpoint and remove a stale socket file."""
    path = _ipc_path(endpoint)
    if not path:
        return
    d = os.path.dirname(path)
    if d:
        os.makedirs(d, mode=0o755, exist_ok=True)
    if os.path.exists(path):
        os.unlink(path)  # a stale file from a crashed run; the pidfile lock guards live ones


def secure_ipc(endpoint: str, group: str | None) -> None:
    """ipc socket files: mode 0660, group `group` (libvirt/kvm clients); '' or None: inherit."""
    path = _ipc_path(endpoint)
    if not path or not os.path.exists(path):
        return
    os.chmod(path, 0o660)
    if group:
        try:
            os.chown(path, -1, grp.getgrnam(group).gr_gid)
        except KeyError:
            log.warning("group %r does not exist: %s keeps the daemon's group", group, path)
        except PermissionError as exc:
            log.warning("cannot give %s to group %r: %s", path, group, exc)


class Endpoint(threading.Thread):
    """One bound ROUTER socket served by its own thread."""

    def __init__(self, ctx: zmq.Context, name: str, address: str, handler: Handler,
                 error_reply: Callable[[str, str], bytes], group: str | None = None):
        super().__init__(name=f"zmq-{name}", daemon=True)
        self.kind = name
        self.address = address
        self.handler = handler
        self.error_reply = error_reply  # (code name, source) -> reply bytes
        self._halt = threading.Event()
        self._pending: list[_Pending] = []
        self._seq = itertools.count()
        self.requests = 0
        self.errors = 0
        prepare_ipc(address)
        self.sock = ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.MAXMSGSIZE, MAX_WIRE_BYTES)
        self.sock.setsockopt(zmq.SNDHWM, 1000)
        self.sock.setsockopt(zmq.ROUTER_MANDATORY, 0)
        self.sock.bind(address)
        secure_ipc(address, group)
        self.bound = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)

    # -- the loop --------------------------------------------------------------------------
    def run(self) -> None:
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        try:
            while not self._halt.is_set():
                timeout = POLL_MS
                if self._pending:
                    timeout = max(0, min(POLL_MS, int((self._pending[0].when - time.monotonic())
                                                      * 1000) + 1))
                if poller.poll(timeout):
                    # serve what is queued, but come back to due deferred replies regularly
                    for _ in range(64):
                        try:
                            frames = self.sock.recv_multipart(zmq.NOBLOCK, copy=True)
                        except zmq.Again:
                            break
                        self._serve(frames)
                self._flush_due()
        finally:
            self.sock.close(0)
            path = _ipc_path(self.address)
            if path and os.path.exists(path):
                try:
                    os.unlink(path)
                except OSError:
                    pass

    def _serve(self, frames: list[bytes]) -> None:
        self.requests += 1
        # ROUTER prefix: identity frame(s) up to and including the empty delimiter (REQ
        # clients); a DEALER client without a delimiter has just its identity frame.
        try:
            i = frames.index(b"", 1)
            envelope, body = frames[:i + 1], frames[i + 1:]
        except ValueError:
            envelope, body = frames[:1], frames[1:]
        try:
            if len(body) != 1:
                reply: bytes | Deferred = self.error_reply(
                    "EBADMSG", f"expected one frame, got {len(body)}")
            elif len(body[0]) > MAX_REQUEST_BYTES:
                reply = self.error_reply("EMSGSIZE", f"request of {len(body[0])} bytes "
                                         f"(limit {MAX_REQUEST_BYTES})")
            else:
                reply = self.handler(body[0])
        except Exception as exc:  # noqa: BLE001 - every request is answered
            log.exception("%s endpoint: request failed", self.kind)
            reply = self.error_reply("EIO", f"internal error: {type(exc).__name__}: {exc}")
        if isinstance(reply, Deferred):
            heapq.heappush(self._pending, _Pending(reply.when, next(self._seq), envelope, reply))
        else:
            self._send(envelope, reply)

    def _flush_due(self) -> None:
        now = time.monotonic()
        while self._pending and self._pending[0].when <= now:
            p = heapq.heappop(self._pending)
            try:
                reply = p.deferred.finish()
            except Exception as exc:  # noqa: BLE001
                log.exception("%s endpoint: deferred reply failed", self.kind)
                reply = self.error_reply("EIO", f"internal error: {type(exc).__name__}: {exc}")
            self._send(p.envelope, reply)

    def _send(self, envelope: list[bytes], reply: bytes) -> None:
        try:
            self.sock.send_multipart(envelope + [reply], zmq.NOBLOCK)
        except zmq.ZMQError as exc:  # the client went away or is not reading
            self.errors += 1
            log.debug("%s endpoint: reply dropped: %s", self.kind, exc)

    def stop(self, timeout: float = 2.0) -> None:
        self._halt.set()
        if self.is_alive():
            self.join(timeout)
