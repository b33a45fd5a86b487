"""Is this machine quiet enough for a benchmark to be evidence?

A run is judged only when the load average at its start was at or below
``QUIET_LOAD_PER_CORE`` per core (later samples include the bench's own children, so they are
recorded, not judged) and, for its whole length, no process outside the bench's own tree used
more than ``BUSY_PROCESS_CORES`` of a core, and all CPU outside that tree together (the machine's
busy ticks minus the tree's, so processes that start and end within the run count too) stayed
at or below ``FOREIGN_CORES`` cores on average. Otherwise its targets are reported as "not judged: measured
under load" (timings taken beside a training job on 2 cores ranged over 10x for one image).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

QUIET_LOAD_PER_CORE = 0.5
BUSY_PROCESS_CORES = 0.10   # a process using more than 10% of one core over the run is "heavy"
# all foreign CPU together, short-lived processes included (a test suite's many brief commands
# are each invisible to the per-process check), on average over the run
FOREIGN_CORES = 0.25
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_stat(pid: str) -> tuple[str, int, int] | None:
    """(name, parent pid, utime + stime in ticks) of one process, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            raw = fh.read()
    except OSError:
        return None
    name = raw[raw.index("(") + 1:raw.rindex(")")]
    rest = raw[raw.rindex(")") + 2:].split()
    return name, int(rest[1]), int(rest[11]) + int(rest[12])


def cpu_snapshot() -> dict[int, tuple[str, int, int]]:
    """pid -> (name, ppid, cpu ticks) for every process (empty where /proc is absent)."""
    if not os.path.isdir("/proc"):
        return {}
    out = {}
    for pid in os.listdir("/proc"):
        if pid.isdigit() and (st := _proc_stat(pid)) is not None:
            out[int(pid)] = st
    return out


def system_busy_ticks() -> int | None:
    """CPU ticks the whole machine has spent busy since boot (/proc/stat: user + nice + system +
    irq + softirq + steal), or None where /proc/stat is absent."""
    try:
        with open("/proc/stat") as fh:
            vals = [int(v) for v in fh.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    return sum(vals) - vals[3] - (vals[4] if len(vals) > 4 else 0)   # minus idle and iowait


def own_ticks(snap: dict, me: int) -> int:
    """CPU ticks of this process and its reaped children (os.times) plus its live descendants."""
    t = os.times()
    mine = round((t.user + t.system + t.children_user + t.children_system) * CLK_TCK)
    return mine + sum(ticks for pid, (_, _, ticks) in snap.items()
                      if pid != me and _ours(pid, snap, me))


def _ours(pid: int, snap: dict, me: int) -> bool:
    seen = set()
    while pid and pid not in seen:
        if pid == me:
            return True
        seen.add(pid)
        pid = snap.get(pid, ("", 0, 0))[1]
    return False


@dataclass
class LoadMonitor:
    """Samples the load average and per-process CPU from ``start()`` to ``finish()``."""
    cores: int = field(default_factory=lambda: os.cpu_count() or 1)
    busy_process_cores: float = BUSY_PROCESS_CORES
    foreign_cores: float = FOREIGN_CORES
    samples: list[float] = field(default_factory=list)
    _t0: float = 0.0
    _snap0: dict = field(default_factory=dict)
    _busy0: int | None = None
    _own0: int = 0

    def start(self) -> None:
        self._t0, self._snap0 = time.monotonic(), cpu_snapshot()
        self._busy0, self._own0 = system_busy_ticks(), own_ticks(self._snap0, os.getpid())
        self.sample()

    def sample(self) -> None:
        self.samples.append(os.getloadavg()[0])

    def finish(self) -> dict:
        """The verdict: ``quiet`` plus the evidence (load samples, heavy foreign processes)."""
        self.sample()
        wall = max(time.monotonic() - self._t0, 1e-6)
        snap1, me = cpu_snapshot(), os.getpid()
        heavy = []
        for pid, (name, _, ticks) in snap1.items():
            if _ours(pid, snap1, me):
                continue
            before = self._snap0.get(pid, (name, 0, 0))[2]   # started during the run: all of it
            cores_used = (ticks - before) / CLK_TCK / wall
            if cores_used > self.busy_process_cores:
                heavy.append({"pid": pid, "name": name, "cores": round(cores_used, 3)})
        busy1 = system_busy_ticks()
        foreign = None
        if busy1 is not None and self._busy0 is not None:
            ours = own_ticks(snap1, me) - self._own0
            foreign = max(0.0, (busy1 - self._busy0 - ours) / CLK_TCK / wall)
        start = self.samples[0]
        reasons = []
        if start > QUIET_LOAD_PER_CORE * self.cores:
            reasons.append(f"load average was {start:.2f} on {self.cores} cores at the start "
                           f"(quiet: <= {QUIET_LOAD_PER_CORE * self.cores:.2f})")
        if heavy:
            reasons.append("other CPU-heavy processes ran: " + ", ".join(
                f"{h['name']} (pid {h['pid']}, {h['cores']:.2f} cores)" for h in heavy))
        if foreign is not None and foreign > self.foreign_cores:
            reasons.append(f"other processes used {foreign:.2f} cores on average during the run, "
                           f"short-lived ones included (quiet: <= {self.foreign_cores:.2f})")
        return {"quiet": not reasons, "reasons": reasons, "load_average_samples": self.samples,
                "heavy_processes": heavy, "foreign_cores": foreign,
                "quiet_load_per_core": QUIET_LOAD_PER_CORE,
                "busy_process_cores": self.busy_process_cores,
                "quiet_foreign_cores": self.foreign_cores}
