"""The onnxruntime backend (CPU execution provider) for ``target: "onnx"`` bundles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from lrf.runtime.backends import Backend, Session, register_backend
from lrf.runtime.manifest import GraphSpec


class _OrtSession(Session):
    def __init__(self, sess: ort.InferenceSession, spec: GraphSpec):
        self._sess = sess
        self._outputs = [t.name for t in spec.outputs]

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._sess is None:
            raise ValueError("this onnxruntime session is closed")
        return dict(zip(self._outputs, self._sess.run(self._outputs, inputs)))

    def close(self) -> None:
        self._sess = None  # onnxruntime frees the session when the last reference goes


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
    _LEVELS = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
               "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
               "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
               "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL}

    def __init__(self, threads: int | None = None, optimization: str = "all",
                 memory_arena: bool = True):
        super().__init__(threads, optimization=optimization, memory_arena=memory_arena)
        if optimization not in self._LEVELS:
            raise ValueError(f"onnxruntime optimization {optimization!r}; choose one of "
                             f"{sorted(self._LEVELS)}")

    def open(self, path: Path, spec: GraphSpec) -> Session:
        so = ort.SessionOptions()
        so.graph_optimization_level = self._LEVELS[self.options["optimization"]]
        so.enable_cpu_mem_arena = bool(self.options["memory_arena"])
        so.log_severity_level = 3  # warnings about unused initializers etc. are not actionable
        if self.threads is not None:
            so.intra_op_num_threads = self.threads
            so.inter_op_num_threads = 1
        try:
            sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types for bad models
            raise ValueError(f"onnxruntime cannot load {path} ({e}); re-export the bundle") from e
        have = [i.name for i in sess.get_inputs()], [o.name for o in sess.get_outputs()]
        want = [t.name for t in spec.inputs], [t.name for t in spec.outputs]
        if sorted(have[0]) != sorted(want[0]) or not set(want[1]) <= set(have[1]):
            raise ValueError(f"{path.name}: graph has inputs {have[0]} / outputs {have[1]}, the "
                             f"manifest says {want[0]} / {want[1]}; the bundle is inconsistent")
        return _OrtSession(sess, spec)

    def version(self) -> str:
        return ort.__version__
