"""The core scheduler: a load balancer moving relay directions between worker CPUs.

Enabled by VIO4WD_CORE_SCHED_ENABLE=true; knobs (`forwarder.config.CoreSchedSettings`):
VIO4WD_CORE_SCHED_POLL_INTERVAL (s, default 5), VIO4WD_CORE_SCHED_SENSITIVITY (0..1, default
0.25), VIO4WD_CORE_SCHED_VF2VM_WEIGHT / _VM2VF_WEIGHT (default 12 / 10, as the original).

Every poll interval it takes two counter snapshots one interval apart (its own baseline; stats
clients are not affected), estimates each direction's load as

    weight(direction) * (packets/s + bytes/s / BYTES_PER_PACKET_COST)

(a packet costs about as much as copying 256 bytes), and plans a placement greedily per NUMA
node: the relay's directions go to workers on the relay's node (all workers when that node has
none, or the node is unknown), heaviest first, each to the least loaded candidate (an idle
direction stays where it is).  The plan is applied - with `Forwarder.move`, atomically between
bursts - only when it lowers the busiest worker's load by more than `sensitivity` (0.25: by more
than a quarter), so the placement does not flap.
"""
from __future__ import annotations

import logging
import threading
import time

from .. import config as fwd_config
from ..relays import VF2VM, VM2VF, RelayError

log = logging.getLogger("vio4wd.control.sched")

BYTES_PER_PACKET_COST = 256.0

Key = tuple[int, int]          # (relay id, direction)


def plan(loads: dict[Key, float], current: dict[Key, int], workers: list[int],
         worker_node: dict[int, int], relay_node: dict[int, int],
         sensitivity: float) -> dict[Key, int] | None:
    """A better placement {(relay, dir): cpu}, or None when it would not improve the busiest
    worker's load by more than `sensitivity` (a fraction)."""
    if not workers:
        return None
    before = {w: 0.0 for w in workers}
    for k, cpu in current.items():
        if cpu in before:
            before[cpu] += loads.get(k, 0.0)
    old_max = max(before.values())
    if old_max <= 0:
        return None

    def candidates(rid: int) -> list[int]:
        node = relay_node.get(rid, -1)
        local = [w for w in workers if worker_node.get(w, 0) == node]
        return local if node >= 0 and local else list(workers)

    after = {w: 0.0 for w in workers}
    placed: dict[Key, int] = {}
    # idle directions stay (no churn), unless their CPU is no longer a candidate
    for k, cpu in current.items():
        if loads.get(k, 0.0) <= 0 and cpu in candidates(k[0]):
            placed[k] = cpu
    for k in sorted((k for k in current if k not in placed), key=lambda k: (-loads.get(k, 0), k)):
        cands = candidates(k[0])
        best = min(cands, key=lambda w: (after[w], w != current[k], w))
        placed[k] = best
        after[best] += loads.get(k, 0.0)
    new_max = max(after.values())
    if new_max < old_max * (1.0 - sensitivity):
        return placed
    return None


class CoreScheduler(threading.Thread):
    def __init__(self, fwd, settings: fwd_config.CoreSchedSettings,
                 worker_node: dict[int, int] | None = None):
        super().__init__(name="core-sched", daemon=True)
        self.fwd = fwd
        self.s = settings
        self._halt = threading.Event()
        if worker_node is None:
            try:
                numa = fwd_config.host_numa_map()
            except (OSError, ValueError):
                numa = {}
            worker_node = {w: numa.get(w, 0) for w in fwd.workers}
        self.worker_node = worker_node
        self.moves = 0
        self.rounds = 0

    def stop(self, timeout: float = 3.0) -> None:
        self._halt.set()
        if self.is_alive():
            self.join(timeout)

    def run(self) -> None:
        log.info("core scheduler: every %.1f s, sensitivity %.2f, weights VF->VM %d VM->VF %d",
                 self.s.poll_interval, self.s.sensitivity, self.s.vf2vm_weight,
                 self.s.vm2vf_weight)
        while not self._halt.is_set():
            try:
                self.step()
            except Exception:  # noqa: BLE001 - keep balancing
                log.exception("core scheduler round failed")
                self._halt.wait(self.s.poll_interval)

    def step(self) -> dict[Key, int] | None:
        """One round: measure over one poll interval, then maybe move."""
        t0 = time.monotonic()
        first = {st.id: st for st in self.fwd.statuses()}
        if self._halt.wait(self.s.poll_interval):
            return None
        seconds = time.monotonic() - t0
        second = self.fwd.statuses()
        self.rounds += 1
        loads: dict[Key, float] = {}
        current: dict[Key, int] = {}
        relay_node: dict[int, int] = {}
        for st in second:
            old = first.get(st.id)
            if old is None:
                continue
            relay_node[st.id] = st.numa_node
            for d, now, before, weight in ((VF2VM, st.vf2vm, old.vf2vm, self.s.vf2vm_weight),
                                           (VM2VF, st.vm2vf, old.vm2vf, self.s.vm2vf_weight)):
                if st.cpu[d] < 0:
                    continue
                current[(st.id, d)] = st.cpu[d]
                pps = max(0, now.rx_pkts - before.rx_pkts) / seconds
                bps = max(0, now.rx_bytes - before.rx_bytes) / seconds
                loads[(st.id, d)] = weight * (pps + bps / BYTES_PER_PACKET_COST)
        placed = plan(loads, current, list(self.fwd.workers), self.worker_node, relay_node,
                      self.s.sensitivity)
        if not placed:
            return None
        changed = {rid for (rid, d), cpu in placed.items() if current.get((rid, d)) != cpu}
        if not changed:
            return None
        mapping = {rid: (placed[(rid, VF2VM)], placed[(rid, VM2VF)]) for rid in changed
                   if (rid, VF2VM) in placed and (rid, VM2VF) in placed}
        if not mapping:
            return None
        try:
            self.fwd.move(mapping)
        except RelayError as exc:
            log.warning("core scheduler: move %s failed: %s", mapping, exc)
            return None
        self.moves += 1
        log.info("core scheduler: moved %s", mapping)
        return placed
