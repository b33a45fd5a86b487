"""Run one benchmark child under an enforced resident-memory budget.

Why a watchdog on the kernel's high-water mark, and not an rlimit or a cgroup (measured on the
development machine, see ``benchmarks/README.md``):

* ``RLIMIT_AS`` / ``RLIMIT_DATA`` cap *virtual* memory. onnxruntime and torch reserve far more
  address space than they touch (a CIFAR run through onnxruntime: 70 MB resident, 426 MB
  ``VmPeak``, 145 MB ``VmData``), so a cap at the RSS budget kills processes that fit, and under
  a small cap numpy's OpenBLAS retries its failed 32 MB buffer ``mmap`` forever: the child hangs
  instead of failing. Neither limits what a phone's low-memory killer looks at: resident pages.
* ``RLIMIT_RSS`` is ignored by Linux. A cgroup v2 ``memory.max`` is not available here (the
  unified hierarchy has no memory controller); cgroup v1 is writable only because the session
  runs as root inside the sandbox's own accounting group, and it charges page cache too.

So the parent polls ``/proc/<pid>/status`` and SIGKILLs the child as soon as ``VmHWM`` (the
kernel-maintained peak of resident memory, so a spike between two polls is still seen) exceeds
the budget. The child also reports its own ``VmHWM`` right before it exits,
which closes the window between the last poll and exit. ``VmHWM`` belongs to the address space
created by ``exec``, so the parent's own memory is never counted (``ru_maxrss`` of a child is:
Linux carries the pre-exec high-water mark of the forked copy over).

The poll runs every :data:`POLL_S` seconds once the child's peak passes half the budget, every
:data:`POLL_IDLE_S` below that, so a timed child is woken rarely. Measured with
``python -m lrf.benchmarks.watchdog_cost``: the PyTorch eager child's timings under either rate
and with no watchdog agree within its own run-to-run noise (benchmarks/README.md).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

POLL_S = 0.002          # 2 ms: the kill lands at most ~one allocation burst above the budget
POLL_IDLE_S = 0.05      # while the peak is below half the budget: no load on the measured cores
_UNITS = {"": 1, "B": 1, "K": 1 << 10, "KB": 1 << 10, "KIB": 1 << 10, "M": 1 << 20,
          "MB": 1 << 20, "MIB": 1 << 20, "G": 1 << 30, "GB": 1 << 30, "GIB": 1 << 30}


def parse_size(text: str) -> int:
    """``"64M"``, ``"3G"``, ``"1.5GiB"``, ``"512000"`` -> bytes (binary units: M = 2**20).
    ValueError saying the accepted form otherwise."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(text))
    unit = m.group(2).upper() if m else None
    if not m or unit not in _UNITS:
        raise ValueError(f"memory size {text!r} not understood; use a number with an optional "
                         "unit K, M or G (binary), e.g. 64M or 3G")
    value = int(float(m.group(1)) * _UNITS[unit])
    if value < 1 << 20:
        raise ValueError(f"memory size {text!r} is below 1M; a Python process alone needs more")
    return value


def format_size(nbytes: float) -> str:
    """Bytes -> a short binary-unit string (``3G``, ``64M``, ``1.5G``)."""
    for unit, scale in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if nbytes >= scale:
            v = nbytes / scale
            return f"{v:.0f}{unit}" if v == int(v) else f"{v:.1f}{unit}"
    return f"{int(nbytes)}B"


def proc_status_kb(pid: int, fields=("VmHWM", "VmRSS")) -> dict[str, int]:
    """Selected ``kB`` fields of ``/proc/<pid>/status``; {} once the process is gone."""
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            text = fh.read().decode("ascii", "replace")
    except (FileNotFoundError, ProcessLookupError):
        return {}
    out = {}
    for f in fields:
        m = re.search(rf"^{f}:\s+(\d+) kB", text, re.M)
        if m:
            out[f] = int(m.group(1))
    return out


def available_memory() -> int:
    """``MemAvailable`` from ``/proc/meminfo``, in bytes."""
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    raise ValueError("/proc/meminfo has no MemAvailable line (Linux >= 3.14 needed)")


@dataclass
class ChildOutcome:
    """What one child run produced. ``status``: "ok", "over_budget", "failed", "timeout" or
    "not_available" (the backend is not in this install)."""

    status: str
    events: list[dict] = field(default_factory=list)
    result: dict | None = None
    error: str | None = None
    peak_kb: int | None = None          # the largest VmHWM seen by the parent or the child
    returncode: int | None = None
    stderr_tail: str = ""
    wall_s: float = 0.0

    @property
    def last_phase(self) -> str | None:
        phases = [e["phase"] for e in self.events if e.get("event") == "phase"]
        return phases[-1] if phases else None


def child_command(spec: dict) -> list[str]:
    """The command line of a benchmark child for ``spec`` (see ``lrf.benchmarks.child``)."""
    return [sys.executable, "-m", "lrf.benchmarks.child", json.dumps(spec)]


def child_env(threads: int | None) -> dict[str, str]:
    """The child's environment: the caller's, with every math library pinned to ``threads``."""
    env = dict(os.environ)
    if threads is not None:
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = str(threads)
    return env


def poll_interval(hwm_kb: int, limit_bytes: int | None) -> float:
    """Seconds until the next look at the child: POLL_S once its peak passes half the limit (or
    with no limit, where only the peak is recorded), POLL_IDLE_S below."""
    near = limit_bytes is None or hwm_kb * 1024 * 2 > limit_bytes
    return POLL_S if near else POLL_IDLE_S


def run_child(spec: dict, limit_bytes: int | None, timeout_s: float | None = None,
              threads: int | None = None, on_stderr=None) -> ChildOutcome:
    """Run ``python -m lrf.benchmarks.child SPEC`` and collect its JSON-lines report.

    With ``limit_bytes`` the child is killed (SIGKILL) once its resident peak exceeds the limit and
    the outcome is ``over_budget``; a child that ends having exceeded it (between two polls) is
    over budget too. ``timeout_s`` kills a child that runs too long (``timeout``).
    ``on_stderr(line)`` sees the child's stderr as it comes (progress of long exports)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(child_command(spec), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=child_env(threads))
    events: list[dict] = []
    err_lines: list[str] = []

    def read_stdout():
        for line in proc.stdout:
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                err_lines.append(line)  # a library printed to stdout: keep it for diagnostics

    def read_stderr():
        for line in proc.stderr:
            if on_stderr is not None:
                on_stderr(line.rstrip("\n"))
            err_lines.append(line)
            del err_lines[:-40]

    readers = [threading.Thread(target=read_stdout, daemon=True),
               threading.Thread(target=read_stderr, daemon=True)]
    for r in readers:
        r.start()
    peak, status = 0, None
    while proc.poll() is None:
        hwm = proc_status_kb(proc.pid).get("VmHWM", 0)
        peak = max(peak, hwm)
        if limit_bytes is not None and hwm * 1024 > limit_bytes:
            status = "over_budget"
        elif timeout_s is not None and time.perf_counter() - t0 > timeout_s:
            status = "timeout"
        if status:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            break
        time.sleep(poll_interval(hwm, limit_bytes))
    for r in readers:
        r.join(timeout=10)
    out = ChildOutcome(status=status or "ok", events=events, returncode=proc.returncode,
                       stderr_tail="".join(err_lines[-20:]), wall_s=time.perf_counter() - t0)
    reported = [e.get("hwm_kb", 0) for e in events if "hwm_kb" in e]
    out.peak_kb = max([peak, *reported]) or None
    for e in events:
        if e.get("event") == "result":
            out.result = {k: v for k, v in e.items() if k != "event"}
        elif e.get("event") == "error":
            out.error = e.get("message")
            if e.get("status") == "not_available" and out.status == "ok":
                out.status = "not_available"
    if out.status == "ok" and limit_bytes is not None and (out.peak_kb or 0) * 1024 > limit_bytes:
        out.status = "over_budget"   # exceeded between the last poll and exit
    if out.status == "ok" and (proc.returncode != 0 or out.result is None):
        out.status = "failed"
        if out.error is None:
            tail = out.stderr_tail.strip().splitlines()
            out.error = (f"child exited with status {proc.returncode}"
                         + (f": {tail[-1]}" if tail else ""))
    return out
