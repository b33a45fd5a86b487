"""``--target coreml``: one mlprogram ``.mlpackage`` per graph, for Core ML on iOS 16+ / macOS 13+.

Files: ``denoise.mlpackage``, ``decoder.mlpackage``, ``encoder.mlpackage`` (directories, listed
file by file in the manifest). Fixed shapes: batch ``options["batch"]`` (default 1), the
trained latent size, and a fixed denoise window of K = ``options["window"]`` steps (default 1;
``window = {"min": K, "max": K}``): Core ML cannot delegate a loop, so the wrapper's K steps are
unrolled and the runtime splits a schedule into windows of K. ``label`` is int32; images leave
the decoder and enter the encoder as float32 NCHW in [-1, 1] (``image.format = "float_nchw"``)
because Core ML multi-arrays have no uint8 type: the app converts exactly as
``runtime/BUNDLE.md`` says.

What the precision flags mean here:

* compute precision (``options["compute_precision"]``, CLI ``--fp16`` default / ``--fp32``):
  the precision Core ML computes every op in. fp16 is Core ML's native precision on the GPU
  and the Neural Engine (the ANE computes in fp16 whatever the model asks); inputs and outputs
  stay float32, cast inside the model.
* weights (manifest ``precision``): ``fp32`` = weights stored in the compute precision;
  ``int8`` (``--int8``) = per-output-channel symmetric linear int8
  (``coremltools.optimize.coreml.linear_quantize_weights``), dequantised on load;
  ``--palettize N`` (also ``precision: "int8"``, the compressed-weights class and its parity
  bar) = per-tensor k-means look-up table of 2^N fp values (``palettize_weights``).
  Weights with <= ``WEIGHT_THRESHOLD`` elements stay uncompressed (coremltools' rule).

Core ML cannot run a model on Linux, so this target has no ``lrf.runtime`` backend: every saved
package is checked against its manifest entry (:func:`verify_package`: names, shapes, dtypes,
op census, compressed-weight count, compute dtype, metadata), and parity is measured on a
PyTorch simulation of the package's exact weights and compute precision
(``lrf.exporter.targets.coreml_sim``), recorded with ``parity.simulated = true``. The real
Core ML predict parity runs on macOS (``.github/workflows/coreml.yml``).
"""

from __future__ import annotations

import copy
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from lrf.exporter.targets import (ExportContext, GraphRecord, Target, fixed_batch, fixed_graph,
                                  fixed_window, package_version, quiet, register_target,
                                  window_entry)

DEPLOYMENT_TARGET = "iOS16"         # the apps' minimum (ios_demo/project.yml)
COMPUTE_PRECISIONS = ("fp16", "fp32")
PALETTIZE_BITS = (4, 6, 8)
WEIGHT_THRESHOLD = 2048             # coremltools' default, passed explicitly so it is recorded
AUTHOR = "LRF Mobile"
_ML_DTYPES = {"float32": "FLOAT32", "int32": "INT32"}
_NP_DTYPES = {"float32": np.float32, "int32": np.int32}
_COMPRESSED_OPS = ("constexpr_affine_dequantize", "constexpr_lut_to_dense",
                   "constexpr_blockwise_shift_scale")
_DESCRIPTIONS = {   # by role (runtime/BUNDLE.md 2.2)
    "latent": "normalised latent (z - mean) / std, float32 [B,C,h,w]",
    "timesteps": "flow times t_0 > ... > t_K of this window (1 = noise, 0 = data), float32 [K+1]",
    "label": "class index, int32 [B] (manifest 'classes')",
    "guidance": "guidance scale, float32 [B]",
    "image": "RGB image, float32 NCHW in [-1, 1]; uint8 = floor(clamp((x+1)*127.5+0.5, 0, 255)), "
             "x = u8 / 127.5 - 1",
}
_WHAT = {"denoise": "{k} Euler step(s) of the flow over a timestep window ({how})",
         "decoder": "normalised latent -> RGB image (TAESD decoder)",
         "encoder": "RGB image -> normalised latent (TAESD encoder)"}


def coreml_options(options: dict) -> tuple[str, int | None, int]:
    """(compute precision, palettize bits or None, batch) from ``ExportContext.options``,
    validated; ValueError naming the valid values otherwise."""
    compute = options.get("compute_precision") or "fp16"
    if compute not in COMPUTE_PRECISIONS:
        raise ValueError(f"coreml compute precision {compute!r}; choose one of "
                         f"{', '.join(COMPUTE_PRECISIONS)} (--fp16 / --fp32)")
    bits = options.get("palettize")
    if bits is not None and bits not in PALETTIZE_BITS:
        raise ValueError(f"--palettize {bits!r}: choose one of "
                         f"{', '.join(map(str, PALETTIZE_BITS))} bits")
    batch = fixed_batch(options, "coreml")
    return compute, bits, batch


def _quiet():
    """coremltools prints tqdm bars and version warnings (torch/scikit-learn untested) on every
    conversion."""
    return quiet("coremltools", "torch.export", "torch._export", stderr=True)


def convert(module: torch.nn.Module, example: tuple, inputs: list[dict], outputs: list[dict],
            compute: str):
    """torch.export -> ``ct.convert`` to an mlprogram with fixed input shapes, float32 I/O."""
    import coremltools as ct

    with _quiet(), torch.no_grad():
        # A copy: the exported program shares the module's buffers, and coremltools' passes
        # write into them (converting the encoder changed the live codec's latent_mean).
        module = copy.deepcopy(module)
        # coremltools 9 takes the ATEN dialect only (torch.export now returns training IR)
        ep = torch.export.export(module, example).run_decompositions({})
        return ct.convert(
            ep, convert_to="mlprogram", skip_model_load=True,
            minimum_deployment_target=getattr(ct.target, DEPLOYMENT_TARGET),
            compute_precision=(ct.precision.FLOAT16 if compute == "fp16"
                               else ct.precision.FLOAT32),
            inputs=[ct.TensorType(name=t["name"], shape=tuple(t["shape"]),
                                  dtype=_NP_DTYPES[t["dtype"]]) for t in inputs],
            outputs=[ct.TensorType(name=t["name"], dtype=np.float32) for t in outputs])


def compress(mlmodel, precision: str, palettize: int | None):
    """Apply the weight compression of ``precision`` / ``palettize``; returns (model, the
    manifest's ``quantization`` dict without the counts)."""
    if precision == "fp32" and palettize is None:
        return mlmodel, {"method": "none"}
    from coremltools.optimize import coreml as cto

    if palettize is not None:
        tool = "palettize_weights"
        op = cto.OpPalettizerConfig(mode="kmeans", nbits=palettize, granularity="per_tensor",
                                    weight_threshold=WEIGHT_THRESHOLD)
        quant = {"method": "palettize", "mode": "kmeans", "nbits": palettize,
                 "granularity": "per_tensor"}
    else:
        tool = "linear_quantize_weights"
        op = cto.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8",
                                         granularity="per_channel",
                                         weight_threshold=WEIGHT_THRESHOLD)
        quant = {"method": "linear_symmetric", "weight_type": "int8", "per_channel": True,
                 "axis": "output channel"}
    with _quiet():
        out = getattr(cto, tool)(mlmodel, cto.OptimizationConfig(global_config=op))
    return out, {**quant, "weight_threshold": WEIGHT_THRESHOLD,
                 "activations": "not quantized (compute precision)",
                 "tool": f"coremltools.optimize.coreml.{tool}"}


def graph_metadata(name: str, ckpt, window: int | None, compute: str, quant: dict) -> dict:
    """User-defined metadata written into each package (strings only, a Core ML rule)."""
    from lrf.models.checkpoint import checkpoint_sha256

    meta = {"lrf.graph": name, "lrf.bundle_schema": "lrf-bundle/2",
            "lrf.compute_precision": compute, "lrf.weights": quant["method"],
            "lrf.image_format": "float_nchw", "lrf.classes": ",".join(ckpt.classes),
            "lrf.guidance_distilled": str(bool(ckpt.config.guidance_embed)).lower(),
            "lrf.source_checkpoint_sha256": checkpoint_sha256(ckpt.path)}
    if window is not None:
        meta["lrf.window"] = str(window)
    return meta


def set_metadata(mlmodel, name: str, inputs: list[dict], outputs: list[dict], user: dict) -> None:
    """Author, version, license, short description, per-tensor descriptions, user metadata."""
    mlmodel.author = AUTHOR
    mlmodel.version = package_version("lrf-mobile")
    mlmodel.license = "MIT"
    how = ("turbo: one core call per step" if user["lrf.guidance_distilled"] == "true"
           else "teacher: both guidance branches in one batched core call per step")
    what = _WHAT[name].format(k=user.get("lrf.window"), how=how)
    mlmodel.short_description = f"LatentRecurrentFlow {name}: {what}"
    for t in inputs:
        mlmodel.input_description[t["name"]] = _DESCRIPTIONS[t["role"]]
    for t in outputs:
        mlmodel.output_description[t["name"]] = _DESCRIPTIONS[t["role"]]
    for k, v in user.items():
        mlmodel.user_defined_metadata[k] = v


def load_spec(path: Path):
    import coremltools as ct

    with _quiet():
        return ct.utils.load_spec(str(path))


def op_census(spec) -> dict[str, int]:
    """Op type -> count over the package's main function (the manifest records it)."""
    ops: Counter = Counter()
    for fn in spec.mlProgram.functions.values():
        for block in fn.block_specializations.values():
            for op in block.operations:
                ops[op.type] += 1
    return dict(sorted(ops.items()))


def dtype_census(spec) -> dict[str, int]:
    """Element type -> number of non-const op outputs of that type (shows the compute dtype)."""
    from coremltools.proto import MIL_pb2

    out: Counter = Counter()
    for fn in spec.mlProgram.functions.values():
        for block in fn.block_specializations.values():
            for op in block.operations:
                if op.type == "const" or op.type.startswith("constexpr_"):
                    continue
                for o in op.outputs:
                    if o.type.WhichOneof("type") == "tensorType":
                        out[MIL_pb2.DataType.Name(o.type.tensorType.dataType)] += 1
    return dict(sorted(out.items()))


def _io_of(features) -> list[tuple[str, str, list[int]]]:
    from coremltools.proto import FeatureTypes_pb2 as ft

    res = []
    for f in features:
        if f.type.WhichOneof("Type") != "multiArrayType":
            res.append((f.name, f.type.WhichOneof("Type"), []))
            continue
        a = f.type.multiArrayType
        res.append((f.name, ft.ArrayFeatureType.ArrayDataType.Name(a.dataType), list(a.shape)))
    return res


def verify_package(path: Path, entry: dict, manifest: dict | None = None) -> None:
    """The saved package at ``path`` must match its manifest graph ``entry``: mlprogram, input
    and output names/dtypes/shapes in order, the recorded op census, compressed-weight count,
    compute dtype, and metadata. ValueError naming the first mismatch otherwise."""
    where = f"{path.name}"
    if not (path / "Manifest.json").is_file():
        raise FileNotFoundError(f"{path}: not an .mlpackage (no Manifest.json); re-export")
    spec = load_spec(path)
    if spec.WhichOneof("Type") != "mlProgram":
        raise ValueError(f"{where}: model type {spec.WhichOneof('Type')}, expected mlProgram")
    if spec.specificationVersion != entry["specification_version"]:
        raise ValueError(f"{where}: specification version {spec.specificationVersion}, manifest "
                         f"says {entry['specification_version']}")
    for kind, have, want in (("input", _io_of(spec.description.input), entry["inputs"]),
                             ("output", _io_of(spec.description.output), entry["outputs"])):
        exp = [(t["name"], _ML_DTYPES[t["dtype"]], list(t["shape"])) for t in want]
        if have != exp:
            raise ValueError(f"{where}: {kind}s {have}, manifest says {exp}")
    census = op_census(spec)
    if census != entry["op_census"]:
        diff = {k: (census.get(k, 0), entry["op_census"].get(k, 0))
                for k in set(census) | set(entry["op_census"])
                if census.get(k, 0) != entry["op_census"].get(k, 0)}
        raise ValueError(f"{where}: op census differs from the manifest (package, manifest): "
                         f"{dict(sorted(diff.items()))}")
    compressed = sum(census.get(k, 0) for k in _COMPRESSED_OPS)
    want_c = entry["quantization"].get("compressed_weights", 0)
    if compressed != want_c:
        raise ValueError(f"{where}: {compressed} compressed weight ops, manifest says {want_c}")
    dtypes = dtype_census(spec)
    if dtypes != entry["dtype_census"]:
        raise ValueError(f"{where}: op output dtypes {dtypes}, manifest says "
                         f"{entry['dtype_census']}")
    if entry["compute_precision"] == "float16" and dtypes.get("FLOAT16", 0) == 0:
        raise ValueError(f"{where}: manifest says float16 compute but no op computes in fp16")
    if entry["compute_precision"] == "float32" and dtypes.get("FLOAT16", 0):
        raise ValueError(f"{where}: manifest says float32 compute but {dtypes['FLOAT16']} ops "
                         "compute in fp16")
    md = spec.description.metadata
    user = dict(md.userDefined)
    for field in ("author", "versionString", "license", "shortDescription"):
        if not getattr(md, field):
            raise ValueError(f"{where}: metadata {field!r} is empty")
    if user.get("lrf.graph") != path.name.removesuffix(".mlpackage"):
        raise ValueError(f"{where}: metadata lrf.graph is {user.get('lrf.graph')!r}")
    for f in list(spec.description.input) + list(spec.description.output):
        if not f.shortDescription:
            raise ValueError(f"{where}: tensor {f.name!r} has no description")
    if manifest is not None:
        sha = manifest["source_checkpoint"]["sha256"]
        if user.get("lrf.source_checkpoint_sha256") != sha:
            raise ValueError(f"{where}: metadata checkpoint sha256 "
                             f"{user.get('lrf.source_checkpoint_sha256')!r} != manifest {sha!r}")


@register_target("coreml")
class CoreMLTarget(Target):
    """mlprogram packages; parity by simulation on Linux (see the module docstring)."""

    backend = None
    precisions = ("fp32", "int8")
    image_format = "float_nchw"

    def export(self, ctx: ExportContext) -> dict[str, GraphRecord]:
        compute, bits, batch = coreml_options(ctx.options)
        window = fixed_window(ctx.options)
        if bits is not None and ctx.precision != "int8":
            raise ValueError("palettize compresses the weights, so it is exported as precision "
                             "int8 (the 25 dB bar): pass int8=True (lrf-export --palettize N "
                             "does)")
        self.compute, self.palettize = compute, bits
        records = {}
        for name, module in ctx.graphs.items():
            inputs, outputs, example = fixed_graph(ctx, name, batch, window, "float_nchw")
            k = window if name == "denoise" else None
            ctx.log(f"coreml: converting {name} ({compute} compute)")
            ml = convert(module, example, inputs, outputs, compute)
            ml, quant = compress(ml, ctx.precision, bits)
            set_metadata(ml, name, inputs, outputs,
                         graph_metadata(name, ctx.ckpt, k, compute, quant))
            path = ctx.out_dir / f"{name}.mlpackage"
            with _quiet():
                ml.save(str(path))
            # Debug info coremltools adds for ExecuTorch's Core ML delegate; not part of the
            # package (absent from its Manifest.json) and larger than the weights.
            (path / "executorch_debug_handle_mapping.json").unlink(missing_ok=True)
            spec = load_spec(path)
            census = op_census(spec)
            if quant["method"] != "none":
                quant["compressed_weights"] = sum(census.get(k, 0) for k in _COMPRESSED_OPS)
            extra = {"model_type": "mlprogram", "minimum_deployment_target": DEPLOYMENT_TARGET,
                     "specification_version": spec.specificationVersion,
                     "compute_precision": "float16" if compute == "fp16" else "float32",
                     "batch": batch, "op_census": census, "dtype_census": dtype_census(spec)}
            if name == "denoise":
                extra["window"] = window_entry(window)
            record = GraphRecord(name=name, file=path.name, format="mlpackage", inputs=inputs,
                                 outputs=outputs, quantization=quant, extra=extra)
            verify_package(path, record.to_manifest())
            records[name] = record
        return records

    def parity_runner(self, ctx: ExportContext, records: dict[str, GraphRecord], gen):
        """No backend runs .mlpackage here: the gate measures a simulation of the saved
        packages (``coreml_sim``)."""
        from lrf.exporter.targets.coreml_sim import SimulatedRunner

        return SimulatedRunner(ctx.out_dir, ctx.graphs, records, self.compute)

    def verify_bundle(self, bundle_dir: Path, manifest: dict) -> list[str]:
        """``lrf-export --check`` for Core ML: every package against its manifest entry."""
        lines = []
        for name, entry in manifest["graphs"].items():
            verify_package(Path(bundle_dir) / entry["file"], entry, manifest)
            lines.append(f"{entry['file']}: spec matches the manifest (io, "
                         f"{sum(entry['op_census'].values())} ops, {entry['compute_precision']})")
        return lines

    def tool_versions(self) -> dict[str, str]:
        return {"coremltools": package_version("coremltools")}

