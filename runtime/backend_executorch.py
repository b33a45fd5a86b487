"""The ExecuTorch backend for ``target: "executorch"`` bundles: ``.pte`` programs (XNNPACK
delegate) run through ``executorch.runtime``.

Importing this module imports torch, because ExecuTorch's Python bindings exchange torch tensors;
``import lrf.runtime`` alone never does (the registry imports this module only when the
``executorch`` backend is asked for). Each program takes one fixed batch (the manifest's shape);
:class:`lrf.runtime.Generator` splits larger batches into calls of that size.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from executorch.runtime import Runtime, Verification

from lrf.runtime.backends import Backend, Session, register_backend
from lrf.runtime.manifest import GraphSpec

# executorch ScalarType codes (c10 numbering) of the dtypes a bundle uses
_SCALAR_TYPES = {"uint8": 0, "int32": 3, "float32": 6}


def _load(path: Path):
    try:
        return Runtime.get().load_program(Path(path), verification=Verification.Minimal)
    except Exception as e:  # the bindings raise RuntimeError with an error code for bad files
        raise ValueError(f"executorch cannot load {path} ({e}); re-export the bundle") from e


def program_metadata(path: Path, program=None) -> dict:
    """The ``lrf_metadata`` constant method of a ``.pte`` file: the JSON the exporter stored."""
    program = program or _load(path)
    if "lrf_metadata" not in program.method_names:
        raise ValueError(f"{path}: no lrf_metadata method (methods: "
                         f"{sorted(program.method_names)}); not a .pte written by lrf-export")
    blob = program.load_method("lrf_metadata").execute([])[0]
    return json.loads(bytes(blob.numpy().astype(np.uint8).tolist()).decode("utf-8"))


def check_program(path: Path, inputs, outputs, graph: str, program=None) -> None:
    """The program's ``forward`` must take and return exactly the manifest's tensors (count,
    dtype, shape, in order), and its stored metadata must name the same tensors. ``inputs`` /
    ``outputs``: manifest tensor dicts or :class:`~lrf.runtime.TensorSpec` objects."""
    def as_dict(t):
        return t if isinstance(t, dict) else t.to_dict()

    inputs, outputs = [as_dict(t) for t in inputs], [as_dict(t) for t in outputs]
    program = program or _load(path)
    if "forward" not in program.method_names:
        raise ValueError(f"{path.name}: no 'forward' method; not an lrf-export program")
    meta = program.metadata("forward")
    for kind, count, info, want in (("input", meta.num_inputs(), meta.input_tensor_meta, inputs),
                                    ("output", meta.num_outputs(), meta.output_tensor_meta,
                                     outputs)):
        if count != len(want):
            raise ValueError(f"{path.name}: forward has {count} {kind}s, the manifest lists "
                             f"{len(want)} ({[t['name'] for t in want]})")
        for i, t in enumerate(want):
            ti = info(i)
            if tuple(ti.sizes()) != tuple(t["shape"]) or ti.dtype() != _SCALAR_TYPES[t["dtype"]]:
                raise ValueError(f"{path.name}: {kind} {i} ({t['name']!r}) is scalar type "
                                 f"{ti.dtype()} {list(ti.sizes())}, manifest says {t['dtype']} "
                                 f"{t['shape']}; the bundle is inconsistent")
    stored = program_metadata(path, program)
    names = ([t["name"] for t in stored["inputs"]], [t["name"] for t in stored["outputs"]])
    if names != ([t["name"] for t in inputs], [t["name"] for t in outputs]) or \
            stored["graph"] != graph:
        raise ValueError(f"{path.name}: stored metadata describes graph {stored['graph']!r} "
                         f"with tensors {names}; the manifest says {graph!r}")


class _EtSession(Session):
    def __init__(self, program, method, spec: GraphSpec):
        self._program, self._method = program, method   # the method needs its program alive
        self._inputs = [t.name for t in spec.inputs]
        self._outputs = [t.name for t in spec.outputs]

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._method is None:
            raise ValueError("this executorch session is closed")
        # torch wants writable arrays (a broadcast guidance vector is not): copy only those
        outs = self._method.execute([torch.from_numpy(np.require(inputs[n], requirements="W"))
                                     for n in self._inputs])
        # copy: the runtime may reuse its output buffers on the next call
        return {n: o.numpy().copy() for n, o in zip(self._outputs, outs)}

    def close(self) -> None:
        self._method = self._program = None


@register_backend("executorch")
class ExecuTorchBackend(Backend):
    """``threads``: size of XNNPACK's thread pool. ExecuTorch has one pool per process, so this
    sets it for every ExecuTorch program in the process (None = leave it as it is)."""

    targets = ("executorch",)
    # A loaded Method owns its planned memory: two concurrent execute() calls would share it.
    thread_safe = False

    def __init__(self, threads: int | None = None):
        super().__init__(threads)
        if threads is not None:
            from executorch.extension.pybindings import portable_lib

            portable_lib._unsafe_reset_threadpool(threads)

    def open(self, path: Path, spec: GraphSpec) -> Session:
        program = _load(path)
        check_program(Path(path), spec.inputs, spec.outputs, spec.name, program)
        return _EtSession(program, program.load_method("forward"), spec)

    def version(self) -> str:
        from importlib import metadata

        try:
            return metadata.version("executorch")
        except metadata.PackageNotFoundError:
            return "unknown"
