"""The `virtio-forwarder` daemon: options, logging, pidfile lock, EAL, static VFs, signals.

    virtio-forwarder -C 1,2 [options] [-- extra EAL arguments]

See `virtio-forwarder --help` and `forwarder.config`.  The ZeroMQ control plane, when the
`forwarder.control` module is installed, is started with the data plane: its `start(forwarder,
settings)` returns an object whose `stop()` ends it.
"""
from __future__ import annotations

import errno
import fcntl
import glob
import importlib.util
import logging
import logging.handlers
import os
import shutil
import signal
import sys
import threading

from . import config
from .config import ConfigError

log = logging.getLogger("virtio-forwarder")
DPDK_RUNTIME_DIR = "/var/run/dpdk"
SYSLOG_SOCKET = "/dev/log"
# syslog level (0 emerg .. 7 debug) -> Python logging level
LOG_LEVELS = {0: logging.CRITICAL, 1: logging.CRITICAL, 2: logging.CRITICAL, 3: logging.ERROR,
              4: logging.WARNING, 5: logging.INFO, 6: logging.INFO, 7: logging.DEBUG}


class AlreadyRunning(RuntimeError):
    pass


def setup_logging(settings: config.ForwarderSettings) -> None:
    if settings.log_syslog:
        handler: logging.Handler = logging.handlers.SysLogHandler(
            address=SYSLOG_SOCKET, facility=logging.handlers.SysLogHandler.LOG_DAEMON)
        handler.setFormatter(logging.Formatter("virtio-forwarder[%(process)d]: %(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    root = logging.getLogger()      # the control plane logs under its own names
    root.addHandler(handler)
    root.setLevel(LOG_LEVELS[settings.log_level])


def lock_pidfile(path: str) -> int:
    """Create and lock the pidfile; AlreadyRunning if another live instance holds it."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno not in (errno.EWOULDBLOCK, errno.EACCES):
            raise
        other = os.read(fd, 32).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise AlreadyRunning(f"another virtio-forwarder (pid {other}) holds {path}: stop it "
                             "(systemctl stop virtio-forwarder) or give this one another "
                             "-p/--pid-path and -V/--vhost-path") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def daemonize() -> None:
    """Classic double fork; stdio to /dev/null."""
    if os.fork():
        os._exit(0)
    os.setsid()
    if os.fork():
        os._exit(0)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)


def release_hugepage_files(settings: config.ForwarderSettings) -> None:
    """The EAL keeps <huge dir>/<prefix>map_* and /var/run/dpdk/<prefix> after cleanup."""
    extra = settings.extra_eal_args
    if "--in-memory" in extra or "--no-huge" in extra or "--file-prefix" in extra:
        return      # the caller chose the memory model and cleans up after it
    for f in glob.glob(os.path.join(settings.huge_dir, f"{settings.file_prefix}map_*")):
        os.unlink(f)
    shutil.rmtree(os.path.join(DPDK_RUNTIME_DIR, settings.file_prefix), ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    try:
        settings = config.parse_args(sys.argv[1:] if argv is None else argv)
    except ConfigError as exc:
        print(f"virtio-forwarder: error: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings)
    if settings.daemonize:
        daemonize()
    try:
        pid_fd = lock_pidfile(settings.pidfile)
    except (AlreadyRunning, OSError) as exc:
        log.error("%s", exc)
        return 1
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        return run(settings, stop)
    finally:
        os.unlink(settings.pidfile)
        os.close(pid_fd)


def run(settings: config.ForwarderSettings, stop: threading.Event) -> int:
    from .relays import Forwarder, RelayError   # loads DPDK

    log.info("virtio-forwarder %s starting: workers on CPUs %s", config.VERSION, settings.cpus)
    try:
        fwd = Forwarder(settings)
    except (RuntimeError, ConfigError) as exc:
        log.error("%s", exc)
        return 1
    control = None
    try:
        fwd.start()
        if importlib.util.find_spec("forwarder.control") is None:
            log.warning("no control plane (forwarder.control): ZeroMQ endpoints not served")
        else:
            from . import control as control_plane
            control = control_plane.start(fwd, settings)
        log.info("running: sockets %s, %d relays", settings.socket_path(0), fwd.max_relays)
        while not stop.wait(1):
            pass
        log.info("stopping")
        return 0
    except (RelayError, ConfigError, RuntimeError) as exc:
        log.error("%s", exc)
        return 1
    finally:
        if control is not None:
            control.stop()
        fwd.stop()
        release_hugepage_files(settings)
        log.info("stopped")
