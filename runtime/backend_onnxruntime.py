"""The onnxruntime backend (CPU execution provider) for ``target: "onnx"`` bundles.

:func:`session_options` / :func:`make_session` are the one place where an onnxruntime session is
set up: the runtime, the exporter's int8 scoring and the profiler all use them, so the settings
recorded in ``golden.runtime`` are the settings everything ran with.

Every graph call is bounded (issue 25): :func:`guarded_run` gives it a fresh ``RunOptions``
that a watchdog thread terminates when SIGINT, SIGTERM or SIGHUP arrives (Python's own
handlers cannot run while onnxruntime holds the main thread, so the watchdog learns of the
signal through ``signal.set_wakeup_fd``) or when the call outlives its time limit
(:func:`time_limit`). onnxruntime's telemetry is off for every process that imports lrf
(``ORT_DISABLE_TELEMETRY``, read once, before onnxruntime starts: ``lrf/__init__.py``).
"""

from __future__ import annotations

import os

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")  # before onnxruntime starts (lrf/__init__)

import contextlib
import math
import select
import signal
import socket
import threading
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from lrf.runtime.backends import Backend, Session, register_backend
from lrf.runtime.manifest import GraphSpec

LEVELS = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
          "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
          "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
          "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL}
PROVIDER = "CPUExecutionProvider"
_ORT_DTYPES = {"tensor(float)": "float32", "tensor(int32)": "int32", "tensor(uint8)": "uint8",
               "tensor(int64)": "int64"}   # int64: a v3 text_encoder's token ids and mask


def folds_weights(quantization) -> bool:
    """Whether a graph runs with its DequantizeLinear weights folded into float constants at
    load (fp32, ``weight_only`` and ``dynamic`` graphs), rather than with onnxruntime's QDQ
    fusion, which turns the Q/DQ pairs of an activation-quantised (``static_qdq``) graph into
    int8 kernels (QLinearConv, ...). ``quantization``: the manifest's per-graph entry."""
    method = quantization.get("method") if isinstance(quantization, dict) else None
    return method != "static_qdq"


def session_options(threads: int | None = None, optimization: str = "all",
                    memory_arena: bool = True, fold_weights: bool = True) -> ort.SessionOptions:
    """SessionOptions for every lrf session. ``threads``: intra-op threads (None: onnxruntime's
    default, one per core; inter-op is then left as is); ``optimization``: a key of LEVELS;
    ``fold_weights``: see :func:`folds_weights`."""
    if optimization not in LEVELS:
        raise ValueError(f"onnxruntime optimization {optimization!r}; choose one of "
                         f"{sorted(LEVELS)}")
    so = ort.SessionOptions()
    so.graph_optimization_level = LEVELS[optimization]
    so.enable_cpu_mem_arena = bool(memory_arena)
    # 4 = fatal only: warnings about unused initializers are not actionable, and a failure is
    # reported by us as one line (a coloured onnxruntime log line on stderr would be a second)
    so.log_severity_level = 4
    # Weight-only int8/int4 graphs (DequantizeLinear on constant weights): without QDQ fusion
    # onnxruntime folds those into float constants once, at load (same outputs, faster calls).
    # Static QDQ graphs keep the fusion: their convolutions then run as int8 kernels. The
    # measurements are in README, "Measured figures".
    so.add_session_config_entry("session.disable_quant_qdq", "1" if fold_weights else "0")
    if threads is not None:
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
    return so


def make_session(model: str | Path | bytes, threads: int | None = None,
                 optimization: str = "all", memory_arena: bool = True,
                 options: ort.SessionOptions | None = None,
                 fold_weights: bool = True) -> ort.InferenceSession:
    """An InferenceSession on the CPU provider with :func:`session_options` (or ``options``,
    e.g. with profiling turned on by the caller); ValueError naming the file if it cannot load."""
    so = options or session_options(threads, optimization, memory_arena, fold_weights)
    src = model if isinstance(model, bytes) else str(model)
    name = "model bytes" if isinstance(model, bytes) else Path(model).name
    if isinstance(src, str):
        try:
            src.encode("utf-8")
        except UnicodeEncodeError:  # onnxruntime takes UTF-8 paths only: the folder, not the bundle
            raise ValueError(f"onnxruntime cannot open {name}: the folder path "
                             f"{str(Path(model).parent)!r} is not valid UTF-8; rename or move "
                             "the folder") from None
    try:
        return ort.InferenceSession(src, so, providers=[PROVIDER])
    except Exception as e:  # onnxruntime raises its own exception types for bad models
        raise ValueError(f"onnxruntime cannot load {name} ({_first_line(e)}); "
                         "re-export the bundle") from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    for prefix in ("[ONNXRuntimeError] : ",):
        text = text.replace(prefix, "")
    return text[:200]


# ---------------------------------------------------------------- bounded calls
# The per-call time limit: a generous margin over what the call can cost. The cost is derived
# from what the manifest records and the call's inputs, not from timing (a manifest is
# untrusted and a timing is machine-dependent): every weight byte of the graph file (its
# verified size) used once per input element, per Euler step of the window, at a floor of
# COST_FLOOR_FLOPS (a slow phone core); an image-producing graph (the decoder) once per output
# pixel, 64 per latent element. Never below MIN_LIMIT_S.
MIN_LIMIT_S = 60.0
LIMIT_MARGIN = 10.0
COST_FLOOR_FLOPS = 1e9
STOP_SIGNALS = {int(s) for s in (signal.SIGINT, signal.SIGTERM,
                                 getattr(signal, "SIGHUP", signal.SIGTERM))}


def time_limit(weight_bytes: int, inputs: dict[str, np.ndarray], spec: GraphSpec) -> float:
    """Seconds one call of ``spec``'s graph may run (see the comment above)."""
    elements = max((int(getattr(v, "size", 1)) for v in inputs.values()), default=1)
    ts = next((t.name for t in spec.inputs if t.role == "timesteps"), None)
    steps = max(int(getattr(inputs.get(ts), "size", 2)) - 1, 1) if ts else 1
    scale = 64 if any(t.role == "image" for t in spec.outputs) else 1
    cost = 2.0 * weight_bytes * elements * scale * steps / COST_FLOOR_FLOPS
    return max(MIN_LIMIT_S, LIMIT_MARGIN * cost)


class _Watchdog:
    """One daemon thread that sets ``RunOptions.terminate`` on the calls in flight when their
    deadline passes or a stop signal arrives (through the wakeup fd the main thread installs
    around its calls). Signal bytes it does not act on go on to the previous wakeup fd."""

    def __init__(self):
        self._r, self._w = socket.socketpair()
        self._r.setblocking(False)
        self._w.setblocking(False)
        self._lock = threading.Lock()
        self._calls: dict[int, list] = {}   # id -> [RunOptions, deadline, why or None]
        self._next = 0
        self._wait_until = math.inf   # when the thread wakes next by itself
        self.forward = -1   # the wakeup fd that was installed before ours
        threading.Thread(target=self._loop, name="lrf-onnxruntime-watchdog", daemon=True).start()

    def add(self, ro, deadline: float) -> int:
        with self._lock:
            self._next += 1
            self._calls[self._next] = [ro, deadline, None]
            token, wake = self._next, deadline < self._wait_until
        if wake:   # else the thread wakes before this deadline anyway: no syscall per call
            self._poke()
        return token

    def done(self, token: int):
        """The reason the call was stopped ("signal" / "time") or None."""
        with self._lock:
            return self._calls.pop(token, [None, 0, None])[2]

    def _poke(self):
        with contextlib.suppress(OSError):
            self._w.send(b"\0")

    @property
    def wakeup_fd(self) -> int:
        return self._w.fileno()

    def _stop(self, why: str, now: float | None = None) -> None:
        with self._lock:
            for call in self._calls.values():
                if call[2] is None and (now is None or now >= call[1]):
                    call[0].terminate = True
                    call[2] = why

    def _loop(self):
        while True:
            with self._lock:
                first = min((c[1] for c in self._calls.values() if c[2] is None), default=None)
                self._wait_until = math.inf if first is None else first
            timeout = None if first is None else max(0.0, first - time.monotonic())
            with contextlib.suppress(OSError, ValueError):
                ready, _, _ = select.select([self._r], [], [], timeout)
                if ready:
                    data = self._r.recv(4096)
                    if any(b in STOP_SIGNALS for b in data):
                        self._stop("signal")
                    other = bytes(b for b in data if b and b not in STOP_SIGNALS)
                    if other and self.forward >= 0:
                        os.write(self.forward, other)
            self._stop("time", time.monotonic())


_WATCHDOG: _Watchdog | None = None
_WATCHDOG_LOCK = threading.Lock()


def _watchdog() -> _Watchdog:
    global _WATCHDOG
    with _WATCHDOG_LOCK:
        if _WATCHDOG is None:
            _WATCHDOG = _Watchdog()
        return _WATCHDOG


@contextlib.contextmanager
def _signals_wake(dog: _Watchdog):
    """In the main thread: the C-level signal handler writes each signal's number to the
    watchdog's socket while a call runs (a Python handler cannot run until it returns)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    try:
        old = signal.set_wakeup_fd(dog.wakeup_fd, warn_on_full_buffer=False)
    except (ValueError, OSError):
        yield
        return
    dog.forward = old
    try:
        yield
    finally:
        with contextlib.suppress(ValueError, OSError):
            signal.set_wakeup_fd(old)
        dog.forward = -1


def guarded_run(sess: ort.InferenceSession, outputs: list[str], feeds: dict, label: str,
                limit_s: float) -> list:
    """``sess.run`` that a stop signal or ``limit_s`` seconds end (``RunOptions.terminate``);
    any onnxruntime failure is one ValueError line naming ``label`` (the graph)."""
    ro = ort.RunOptions()
    ro.log_severity_level = 4
    dog = _watchdog()
    token = dog.add(ro, time.monotonic() + limit_s)
    why = None
    try:
        with _signals_wake(dog):
            try:
                return sess.run(outputs, feeds, ro)
            finally:
                why = dog.done(token)
    except Exception as e:  # onnxruntime raises its own types (Fail, RuntimeException, ...)
        if why == "signal":
            raise InterruptedError(f"graph {label}: stopped by a signal") from None
        if why == "time":
            raise ValueError(f"graph {label} ran past its time limit of {limit_s:.0f} s "
                             f"({LIMIT_MARGIN:g}x what the bundle's size implies) and was "
                             "stopped; the graph is broken or hostile: re-export the bundle") \
                from None
        raise ValueError(f"graph {label}: onnxruntime failed while running it "
                         f"({_first_line(e)}); the bundle is broken or its inputs are too "
                         "large for this machine") from None


def check_io(sess: ort.InferenceSession, spec: GraphSpec, label: str) -> None:
    """The session's inputs/outputs must be the manifest's: names, dtypes, ranks, static dims."""
    for kind, have, want in (("input", sess.get_inputs(), spec.inputs),
                             ("output", sess.get_outputs(), spec.outputs)):
        have_by = {a.name: a for a in have}
        names = sorted(have_by)
        if kind == "input" and names != sorted(t.name for t in want) or \
                kind == "output" and not {t.name for t in want} <= set(names):
            raise ValueError(f"{label}: graph {kind}s are {names}, the manifest says "
                             f"{sorted(t.name for t in want)}; the bundle is inconsistent")
        for t in want:
            a = have_by[t.name]
            dtype = _ORT_DTYPES.get(a.type, a.type)
            shape = list(a.shape)
            # a dim the graph fixes must be the manifest's; a dynamic manifest input dim must
            # be dynamic in the graph (unknown graph dims are checked per call instead)
            bad = dtype != t.dtype or len(shape) != len(t.shape) or any(
                isinstance(s, int) and s >= 0 and (s != w if w >= 0 else kind == "input")
                for s, w in zip(shape, t.shape))
            if bad:
                raise ValueError(f"{label}: {kind} {t.name!r} is {dtype} {shape} in the graph, "
                                 f"the manifest says {t.dtype} {t.describe()}; the bundle is "
                                 "inconsistent")


# Integer-matmul graphs (quantization.method "dynamic") at a batch up to this run on one
# intra-op thread when the caller did not choose a thread count: at that size a second thread
# gains nothing, and beside the decoder's session (its own spinning pool) it cost up to 2x
# (README, "Measured figures").
ONE_THREAD_MAX_BATCH = 2


def one_thread_max_batch(spec: GraphSpec) -> int:
    """The largest batch of ``spec``'s graph that runs on one intra-op thread by default (0: none;
    see ONE_THREAD_MAX_BATCH)."""
    q = spec.raw.get("quantization")
    return ONE_THREAD_MAX_BATCH if isinstance(q, dict) and q.get("method") == "dynamic" else 0


class _OrtSession(Session):
    """One graph's session. With ``small_batch`` > 0, ``sess`` is a one-thread session for the
    calls whose batch (leading dim of the first input) is at most ``small_batch``, and
    ``open_default()`` opens the session for larger batches when the first one comes."""

    def __init__(self, sess: ort.InferenceSession, spec: GraphSpec, open_default=None,
                 small_batch: int = 0, weight_bytes: int = 0, limit_s: float | None = None):
        self._sess, self._open_default, self._default = sess, open_default, None
        self._spec, self._weight_bytes, self._limit_s = spec, weight_bytes, limit_s
        self._small_batch = small_batch
        self._lock = threading.Lock()  # run() may be called from several threads at once
        self._first = spec.inputs[0].name if spec.inputs else None
        self._outputs = [t.name for t in spec.outputs]

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._sess is None:
            raise ValueError("this onnxruntime session is closed")
        sess = self._sess
        x = inputs.get(self._first)
        if self._small_batch and getattr(x, "ndim", 0) and x.shape[0] > self._small_batch:
            with self._lock:  # the first large batch opens the default session
                if self._default is None:
                    self._default = self._open_default()
            sess = self._default
        limit = self._limit_s if self._limit_s is not None else \
            time_limit(self._weight_bytes, inputs, self._spec)
        return dict(zip(self._outputs, guarded_run(sess, self._outputs, inputs,
                                                   f"{self._spec.name} ({self._spec.file})",
                                                   limit)))

    def close(self) -> None:
        # onnxruntime frees a session when the last reference goes
        self._sess = self._default = self._open_default = None


@register_backend("onnxruntime")
class OnnxRuntimeBackend(Backend):
    """``threads``: intra-op threads (None = onnxruntime's default, one per core).

    Options: ``optimization`` ("all" | "extended" | "basic" | "disable"; default "all"),
    ``memory_arena`` (bool, default True: onnxruntime's CPU arena; False trades a little speed
    for a lower peak RSS), ``time_limit`` (seconds per graph call; default None: derived per
    call by :func:`time_limit`).
    """

    targets = ("onnx",)
    # InferenceSession.run is documented as safe to call concurrently from several threads.
    thread_safe = True
    takes_bytes = True   # open(..., data=): runs the bytes the Generator verified

    def __init__(self, threads: int | None = None, optimization: str = "all",
                 memory_arena: bool = True, time_limit: float | None = None):
        if time_limit is not None and (isinstance(time_limit, bool) or not isinstance(
                time_limit, (int, float)) or not math.isfinite(time_limit) or time_limit <= 0):
            raise ValueError(f"time_limit must be a positive number of seconds or None, got "
                             f"{time_limit!r}")
        super().__init__(threads, optimization=optimization, memory_arena=memory_arena,
                         time_limit=time_limit)
        session_options(threads, optimization, memory_arena)  # fail now on a bad option

    def open(self, path: Path, spec: GraphSpec, data: bytes | None = None) -> Session:
        """With ``threads`` None, an integer-matmul graph (:func:`one_thread_max_batch`) opens on
        one thread, and a session with onnxruntime's default threads only at its first larger
        batch. ``data``: the file's bytes, already verified (a graph with external data is
        opened from its path, so onnxruntime finds the data beside it)."""
        small = one_thread_max_batch(spec) if self.threads is None else 0
        src = data if data is not None and not spec.external_data else path
        weight_bytes = len(data) if data is not None else Path(path).stat().st_size
        for rel in spec.external_data:
            with contextlib.suppress(OSError):
                weight_bytes += (Path(path).parent / rel).stat().st_size

        def open_with(threads):
            sess = make_session(src, threads, self.options["optimization"],
                                self.options["memory_arena"],
                                fold_weights=folds_weights(spec.raw.get("quantization")))
            check_io(sess, spec, spec.file)
            return sess

        limit = self.options.get("time_limit")
        if small:
            return _OrtSession(open_with(1), spec, lambda: open_with(None), small, weight_bytes,
                               limit)
        return _OrtSession(open_with(self.threads), spec, weight_bytes=weight_bytes,
                           limit_s=limit)

    def settings(self) -> dict:
        """What ``golden.runtime`` records (BUNDLE.md section 6)."""
        return {"backend": self.name, "version": ort.__version__,
                "graph_optimization_level": self.options["optimization"],
                "intra_op_threads": self.threads, "inter_op_threads": 1 if self.threads else None,
                # session.disable_quant_qdq per graph, by quantization.method (BUNDLE.md 2.2.1)
                "disable_quant_qdq": {"static_qdq": "0", "other": "1"},
                "execution_provider": PROVIDER}

    def version(self) -> str:
        return ort.__version__
