"""The onnxruntime backend (CPU execution provider) for ``target: "onnx"`` bundles.

:func:`session_options` / :func:`make_session` are the one place where an onnxruntime session is
set up: the runtime, the exporter's int8 scoring and the profiler all use them, so the settings
recorded in ``golden.runtime`` are the settings everything ran with.
"""

from __future__ import annotations

import threading
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
_ORT_DTYPES = {"tensor(float)": "float32", "tensor(int32)": "int32", "tensor(uint8)": "uint8"}


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
    so.log_severity_level = 3  # warnings about unused initializers etc. are not actionable
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
    try:
        return ort.InferenceSession(src, so, providers=[PROVIDER])
    except Exception as e:  # onnxruntime raises its own exception types for bad models
        name = "model bytes" if isinstance(model, bytes) else Path(model).name
        raise ValueError(f"onnxruntime cannot load {name} ({str(e).splitlines()[0][:200]}); "
                         "re-export the bundle") from None


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
                 small_batch: int = 0):
        self._sess, self._open_default, self._default = sess, open_default, None
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
        return dict(zip(self._outputs, sess.run(self._outputs, inputs)))

    def close(self) -> None:
        # onnxruntime frees a session when the last reference goes
        self._sess = self._default = self._open_default = None


@register_backend("onnxruntime")
class OnnxRuntimeBackend(Backend):
    """``threads``: intra-op threads (None = onnxruntime's default, one per core).

    Options: ``optimization`` ("all" | "extended" | "basic" | "disable"; default "all"),
    ``memory_arena`` (bool, default True: onnxruntime's CPU arena; False trades a little speed
    for a lower peak RSS).
    """

    targets = ("onnx",)
    # InferenceSession.run is documented as safe to call concurrently from several threads.
    thread_safe = True

    def __init__(self, threads: int | None = None, optimization: str = "all",
                 memory_arena: bool = True):
        super().__init__(threads, optimization=optimization, memory_arena=memory_arena)
        session_options(threads, optimization, memory_arena)  # fail now on a bad option

    def open(self, path: Path, spec: GraphSpec) -> Session:
        """With ``threads`` None, an integer-matmul graph (:func:`one_thread_max_batch`) opens on
        one thread, and a session with onnxruntime's default threads only at its first larger
        batch."""
        small = one_thread_max_batch(spec) if self.threads is None else 0

        def open_with(threads):
            sess = make_session(path, threads, self.options["optimization"],
                                self.options["memory_arena"],
                                fold_weights=folds_weights(spec.raw.get("quantization")))
            check_io(sess, spec, spec.file)
            return sess

        if small:
            return _OrtSession(open_with(1), spec, lambda: open_with(None), small)
        return _OrtSession(open_with(self.threads), spec)

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
