"""The forwarder's control plane: ZeroMQ endpoints wire-compatible with virtio-forwarder, the
core scheduler (load balancer) and the OVSDB monitor.

The daemon hooks it in with::

    fwd = Forwarder(settings); fwd.start()
    ctl = forwarder.control.start(fwd, settings)
    ...
    ctl.stop(); fwd.stop()

Endpoints (one thread and one socket each; `settings.zmq_*_ep`):

=============  ===================  ====================  ==========================
endpoint       request              reply                 handler
=============  ===================  ====================  ==========================
config         ConfigRequest        ConfigResponse        `handlers.Config`
port_control   PortControlRequest   PortControlResponse   `handlers.PortControl`
stats          StatsRequest         StatsResponse         `handlers.Stats`
core_sched     CoreSchedRequest     CoreSchedResponse     `handlers.CoreSched`
=============  ===================  ====================  ==========================

Messages: `virtioforwarder.proto` (proto2, package `virtioforwarder`), generated into
`virtioforwarder_pb2.py` by `python -m forwarder.control.gen`.  Error codes: the table in
`handlers`.

Port control vs OVSDB (as the original): with an OVSDB socket (`-O`, VIRTIOFWD_OVSDB_SOCK_PATH)
and the port-control endpoint left at its default, the OVSDB monitor attaches and detaches VFs
and no port-control endpoint is bound; an explicitly configured port-control endpoint (`-Z`,
VIRTIOFWD_ZMQ_PORT_CONTROL_EP) wins over OVSDB.
"""
from __future__ import annotations

import logging
import threading

import zmq

from .. import config as fwd_config
from . import handlers
from .transport import Endpoint

log = logging.getLogger("vio4wd.control")

__all__ = ["start", "ControlPlane"]


class ControlPlane:
    """What `start()` returns: the running endpoints, scheduler and monitor; `stop()` ends them."""

    def __init__(self, fwd, settings, ctx: zmq.Context | None = None):
        self.fwd = fwd
        self.settings = settings
        self._own_ctx = ctx is None
        self.ctx = ctx or zmq.Context()
        self.endpoints: dict[str, Endpoint] = {}
        self.scheduler = None
        self.ovsdb = None
        self._lock = threading.Lock()

    def _bind(self, name: str, address: str, handler) -> None:
        try:
            ep = Endpoint(self.ctx, name, address, handler, handler.transport_error,
                          group=self.settings.socket_group or None)
        except (zmq.ZMQError, OSError) as exc:
            raise RuntimeError(f"control plane: cannot bind the {name} endpoint {address}: "
                               f"{exc} (directory writable? another forwarder running?)") from None
        self.endpoints[name] = ep
        ep.start()
        log.info("control: %s endpoint on %s", name, ep.bound)

    def start(self) -> "ControlPlane":
        s = self.settings
        try:
            self._bind("config", s.zmq_config_ep, handlers.Config(self.fwd))
            self._bind("stats", s.zmq_stats_ep, handlers.Stats(self.fwd))
            self._bind("core_sched", s.zmq_core_sched_ep, handlers.CoreSched(self.fwd))
            if use_ovsdb(s):
                from .ovsdb import OvsdbMonitor
                self.ovsdb = OvsdbMonitor(self.fwd, s.ovsdb_sock)
                self.ovsdb.start()
            else:
                if s.ovsdb_sock:
                    log.warning("control: port control endpoint %s configured: the OVSDB "
                                "socket %s is not watched", s.zmq_port_control_ep, s.ovsdb_sock)
                self._bind("port_control", s.zmq_port_control_ep, handlers.PortControl(self.fwd))
            if s.core_sched.enable:
                from .sched import CoreScheduler
                self.scheduler = CoreScheduler(self.fwd, s.core_sched)
                self.scheduler.start()
        except Exception:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every thread and close the sockets (ipc files removed).  Idempotent."""
        with self._lock:
            if self.scheduler is not None:
                self.scheduler.stop()
                self.scheduler = None
            if self.ovsdb is not None:
                self.ovsdb.stop()
                self.ovsdb = None
            for ep in self.endpoints.values():
                ep.stop()
            self.endpoints.clear()
            if self._own_ctx and not self.ctx.closed:
                self.ctx.term()


def use_ovsdb(settings) -> bool:
    """OVSDB monitor instead of the port-control endpoint (see the module doc)."""
    return bool(settings.ovsdb_sock) and \
        settings.zmq_port_control_ep == fwd_config.DEFAULT_ZMQ["port_control"]


def start(relays, settings, ctx: zmq.Context | None = None) -> ControlPlane:
    """Start the control plane over `relays` (a started `forwarder.relays.Forwarder`) with
    `settings` (`forwarder.config.ForwarderSettings`).  Returns a handle with `.stop()`."""
    return ControlPlane(relays, settings, ctx).start()
