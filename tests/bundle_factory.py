"""Schema v2 ONNX test bundles built in the test (never committed), independent of the ONNX
target: the tiny checkpoint's graphs traced with the TorchScript exporter (seconds), the
``denoise`` Loop composed here with onnx.helper, manifest and golden files from
``lrf.exporter.writer`` / ``lrf.exporter.golden``. Also tampering helpers for hostile bundles.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper
from torch import nn

from lrf.exporter import golden, writer
from lrf.exporter.targets import GraphRecord, Target
from lrf.models.checkpoint import load_checkpoint
from lrf.models.flow import euler_sample
from lrf.models.reference import to_uint8
from lrf.runtime import Generator
from lrf.runtime.manifest import MANIFEST

OPSET = 18


class _OneStep(nn.Module):
    """One step of the one PyTorch sampler over timesteps[2] (a K=1 denoise window)."""

    def __init__(self, model, null_class):
        super().__init__()
        self.model, self.null_class = model, null_class

    def forward(self, latent, timesteps, label, guidance):
        return euler_sample(self.model, latent, label.long(), ts=timesteps,
                            guidance=guidance.view(-1, 1, 1, 1), null_class=self.null_class)


class _Decoder(nn.Module):
    def __init__(self, codec):
        super().__init__()
        self.codec = codec

    def forward(self, latent):
        x = self.codec.decode(latent)
        return ((x.clamp(-1, 1) + 1) * 127.5 + 0.5).floor().clamp(0, 255).to(torch.uint8) \
            .permute(0, 2, 3, 1)


class _Encoder(nn.Module):
    def __init__(self, codec):
        super().__init__()
        self.codec = codec

    def forward(self, image):
        return self.codec.encode(image.permute(0, 3, 1, 2).float() / 127.5 - 1.0)


def tensor(name, role, dtype, shape, dims):
    return {"name": name, "role": role, "dtype": dtype, "shape": list(shape), "dims": list(dims)}


def io_specs(c: int, s: int) -> dict[str, tuple[list, list]]:
    lat = ("batch", "channels", "height", "width")
    return {
        "denoise": ([tensor("latent", "latent", "float32", (-1, c, s, s), lat),
                     tensor("timesteps", "timesteps", "float32", (-1,), ("window_plus_one",)),
                     tensor("label", "label", "int32", (-1,), ("batch",)),
                     tensor("guidance", "guidance", "float32", (-1,), ("batch",))],
                    [tensor("denoised", "latent", "float32", (-1, c, s, s), lat)]),
        "decoder": ([tensor("latent", "latent", "float32", (-1, c, -1, -1),
                            ("batch", "channels", "latent_height", "latent_width"))],
                    [tensor("image", "image", "uint8", (-1, -1, -1, 3),
                            ("batch", "image_height", "image_width", "rgb"))]),
        "encoder": ([tensor("image", "image", "uint8", (-1, -1, -1, 3),
                            ("batch", "image_height", "image_width", "rgb"))],
                    [tensor("latent", "latent", "float32", (-1, c, -1, -1),
                            ("batch", "channels", "latent_height", "latent_width"))]),
    }


def _trace(module, example, names_in, names_out, dynamic) -> onnx.ModelProto:
    import io

    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, example, buf, dynamo=False, opset_version=OPSET,
                          input_names=names_in, output_names=names_out, dynamic_axes=dynamic)
    return onnx.load_from_string(buf.getvalue())


def loop_denoise(step: onnx.ModelProto, c: int, s: int) -> onnx.ModelProto:
    """denoise(latent, timesteps[K+1], label, guidance) as an ONNX Loop of K one-step bodies."""
    g = step.graph
    rename = {"latent": "z_in", "timesteps": "tw"}
    body_nodes = [
        helper.make_node("Unsqueeze", ["i", "axis0"], ["i1"]),
        helper.make_node("Add", ["i1", "two"], ["i2"]),
        helper.make_node("Slice", ["timesteps", "i1", "i2"], ["tw"]),
    ]
    for node in g.node:
        for out in node.output:
            rename.setdefault(out, f"b/{out}")
        new = onnx.NodeProto()
        new.CopyFrom(node)
        new.name = f"b/{node.name}"
        new.input[:] = [rename.get(x, x) for x in node.input]
        new.output[:] = [rename[x] for x in node.output]
        body_nodes.append(new)
    body_nodes += [helper.make_node("Identity", ["cond"], ["cond_out"]),
                   helper.make_node("Identity", [rename[g.output[0].name]], ["z_out"])]
    lat = ["batch", c, s, s]
    body = helper.make_graph(
        body_nodes, "step_body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
         helper.make_tensor_value_info("z_in", TensorProto.FLOAT, lat)],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("z_out", TensorProto.FLOAT, lat)])
    consts = [helper.make_tensor("axis0", TensorProto.INT64, [1], [0]),
              helper.make_tensor("one", TensorProto.INT64, [1], [1]),
              helper.make_tensor("two", TensorProto.INT64, [1], [2])]
    nodes = [helper.make_node("Shape", ["timesteps"], ["tshape"]),
             helper.make_node("Sub", ["tshape", "one"], ["k1"]),
             helper.make_node("Squeeze", ["k1", "axis0"], ["trip"]),
             helper.make_node("Loop", ["trip", "", "latent"], ["denoised"], body=body)]
    model = denoise_model(nodes, list(g.initializer) + consts, c, s)
    onnx.checker.check_model(model)
    return model


def denoise_model(nodes, initializers, c: int, s: int, out_type=TensorProto.FLOAT,
                  out_shape=None) -> onnx.ModelProto:
    """A graph with the manifest's ``denoise`` inputs (latent, timesteps, label, guidance) and
    one output ``denoised`` (float32 [batch, c, s, s] unless told otherwise)."""
    lat = ["batch", c, s, s]
    graph = helper.make_graph(
        nodes, "denoise",
        [helper.make_tensor_value_info("latent", TensorProto.FLOAT, lat),
         helper.make_tensor_value_info("timesteps", TensorProto.FLOAT, ["window_plus_one"]),
         helper.make_tensor_value_info("label", TensorProto.INT32, ["batch"]),
         helper.make_tensor_value_info("guidance", TensorProto.FLOAT, ["batch"])],
        [helper.make_tensor_value_info("denoised", out_type, list(out_shape or lat))],
        initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 9   # what this onnxruntime reads
    return model


class _Target(Target):
    name = "onnx"
    backend = "onnxruntime"

    def tool_versions(self):
        return {"onnx": onnx.__version__}


def build_bundle(checkpoint: str, out: Path, *, encoder: bool = True) -> Path:
    """A complete, verified v2 ONNX bundle of ``checkpoint`` at ``out`` (fp32)."""
    ckpt = load_checkpoint(checkpoint)
    cfg = ckpt.config
    c, s = cfg.latent_channels, cfg.latent_size
    out = Path(out)
    out.mkdir(parents=True)
    b = {0: "batch"}
    z = torch.randn(2, c, s, s)
    y = torch.zeros(2, dtype=torch.int32)
    step = _trace(_OneStep(ckpt.model, cfg.null_class).eval(),
                  (z, torch.tensor([1.0, 0.5]), y, torch.full((2,), 3.0)),
                  ["latent", "timesteps", "label", "guidance"], ["out"],
                  {"latent": b, "label": b, "guidance": b, "out": b})
    models = {"denoise": loop_denoise(step, c, s),
              "decoder": _trace(_Decoder(ckpt.codec).eval(), (z,), ["latent"], ["image"],
                                {"latent": {0: "batch", 2: "lh", 3: "lw"},
                                 "image": {0: "batch", 1: "ih", 2: "iw"}})}
    if encoder:
        img = torch.zeros(2, 8 * s, 8 * s, 3, dtype=torch.uint8)
        models["encoder"] = _trace(_Encoder(ckpt.codec).eval(), (img,), ["image"], ["latent"],
                                   {"image": {0: "batch", 1: "ih", 2: "iw"},
                                    "latent": {0: "batch", 2: "lh", 3: "lw"}})
    specs = io_specs(c, s)
    records = {}
    for name, model in models.items():
        onnx.save(model, str(out / f"{name}.onnx"))
        records[name] = GraphRecord(name, f"{name}.onnx", "onnx", *specs[name],
                                    extra={"opset": OPSET, **({"window": {"min": 1, "max": None}}
                                                              if name == "denoise" else {})})
    steps = int(ckpt.sampling["steps"])
    manifest = writer.build_manifest(ckpt, _Target(), "fp32", records, s,
                                     golden.golden_steps(steps))
    writer.write_manifest(out, manifest)
    with Generator.load(out, threads=1) as gen:
        ref = golden.references(ckpt, steps, s)
        manifest["golden"] = golden.write_golden_files(out, gen, ref, list(ckpt.classes), "fp32")
    writer.write_manifest(out, manifest)
    return out


# ---------------------------------------------------------------- tampering
def copy_bundle(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def read(bundle: Path) -> dict:
    return json.loads((bundle / MANIFEST).read_text())


def write(bundle: Path, manifest: dict, refresh: bool = True) -> None:
    """Write ``manifest`` (re-listing every file's checksum when ``refresh``)."""
    if refresh:
        manifest["files"] = writer.file_table(bundle)
    (bundle / MANIFEST).write_text(json.dumps(manifest, indent=1))


def reference_images(ckpt_dir: str, labels, seeds, steps: int) -> np.ndarray:
    """The PyTorch reference (lrf.models.reference.generate) as uint8 [B,H,W,3]."""
    from lrf.models.reference import generate

    return to_uint8(generate(load_checkpoint(ckpt_dir), labels, seeds, steps=steps))




_CACHE: dict[str, Path] = {}


def shared_bundle(tmp_path_factory, checkpoint: str) -> Path:
    """One v2 bundle per checkpoint per test session (read-only: copy before tampering)."""
    if checkpoint not in _CACHE:
        _CACHE[checkpoint] = build_bundle(checkpoint, tmp_path_factory.mktemp("v2") / "bundle")
    return _CACHE[checkpoint]
