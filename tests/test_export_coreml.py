"""``--target coreml``: what Linux can check, checked here; Core ML predict only on macOS.

Linux: every package's spec against its manifest entry (names, dtypes, shapes, op census,
compressed-weight count, compute dtype, metadata), the simulated parity recorded and gated, the
int8 simulation equal to the package's own weights, palettisation and fp32 compute on the step
graph. macOS (``-m macos``, ``.github/workflows/coreml.yml``): real Core ML predictions of every
graph against the PyTorch reference, at the bundle's bars.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lrf.exporter import parity
from lrf.exporter.export import export_bundle
from lrf.exporter.targets import coreml, coreml_sim, get_target
from lrf.exporter.wrappers import build_graphs, example_inputs, graph_io
from lrf.models.checkpoint import load_checkpoint
from lrf.runtime import open_bundle

pytestmark = pytest.mark.slow
PRECISIONS = ["fp32", "int8"]


@pytest.fixture(scope="module")
def ckpt(tiny_checkpoint):
    return load_checkpoint(tiny_checkpoint)


@pytest.fixture(scope="module", params=PRECISIONS)
def bundle(request, tiny_checkpoint, tmp_path_factory):
    """One exported tiny bundle per precision (conversion is slow: shared by the module)."""
    out = tmp_path_factory.mktemp("coreml") / f"tiny-coreml-{request.param}"
    export_bundle("coreml", checkpoint=tiny_checkpoint, out=out, int8=request.param == "int8",
                  steps=[2], parity_images=3, calibration_images=2, fidelity_images=0,
                  log=lambda m: None)
    return out, request.param


def _manifest(path: Path) -> dict:
    return json.loads((path / "manifest.json").read_text())


def test_manifest_matches_every_package(bundle):
    path, precision = bundle
    b = open_bundle(path)                                   # checksums of every package file
    m = b.manifest
    assert m["target"] == "coreml" and m["precision"] == precision
    assert m["image"]["format"] == "float_nchw"
    assert sorted(m["graphs"]) == ["decoder", "generator_2", "step"]
    for name, entry in m["graphs"].items():
        assert entry["format"] == "mlpackage" and entry["compute_precision"] == "float16"
        assert all(-1 not in t["shape"] for t in entry["inputs"] + entry["outputs"])
        assert any(f.startswith(entry["file"] + "/") for f in m["files"])
        coreml.verify_package(path / entry["file"], entry, m)
    step = m["graphs"]["step"]
    assert [(t["name"], t["dtype"], t["shape"]) for t in step["inputs"]] == [
        ("latent", "float32", [1, 4, 4, 4]), ("t", "float32", [1]), ("label", "int32", [1]),
        ("guidance", "float32", [1])]
    assert m["graphs"]["decoder"]["outputs"][0] == {
        "name": "image", "dtype": "float32", "shape": [1, 3, 32, 32],
        "dims": ["batch", "rgb", "image_height", "image_width"]}
    assert get_target("coreml").verify_bundle(path, m)      # what lrf-export --check runs


def test_verify_package_catches_mismatches(bundle):
    path, _ = bundle
    entry = _manifest(path)["graphs"]["step"]
    bad_census = {**entry, "op_census": {**entry["op_census"], "softmax": 99}}
    with pytest.raises(ValueError, match="op census"):
        coreml.verify_package(path / "step.mlpackage", bad_census)
    bad_shape = {**entry, "inputs": [{**entry["inputs"][0], "shape": [2, 4, 4, 4]}]
                 + entry["inputs"][1:]}
    with pytest.raises(ValueError, match="inputs"):
        coreml.verify_package(path / "step.mlpackage", bad_shape)
    with pytest.raises(ValueError, match="lrf.graph"):   # a package under another name
        coreml.verify_package(_renamed(path, "step", "other"), entry)


def _renamed(path: Path, name: str, new: str) -> Path:
    """A copy of package ``name`` under another file name (its metadata still says ``name``)."""
    import shutil

    dst = path.parent / f"{path.name}-renamed" / f"{new}.mlpackage"
    if not dst.exists():
        shutil.copytree(path / f"{name}.mlpackage", dst)
    return dst


def test_package_metadata(bundle):
    path, _ = bundle
    spec = coreml.load_spec(path / "generator_2.mlpackage")
    md = spec.description.metadata
    assert md.author == coreml.AUTHOR and md.license and md.versionString
    assert "2 Euler steps" in md.shortDescription
    user = dict(md.userDefined)
    m = _manifest(path)
    assert user["lrf.graph"] == "generator_2" and user["lrf.steps"] == "2"
    assert user["lrf.source_checkpoint_sha256"] == m["source_checkpoint"]["sha256"]
    assert user["lrf.classes"].split(",") == m["classes"]
    assert {f.name: f.shortDescription for f in spec.description.input}["label"].startswith(
        "class index")


def test_simulated_parity_is_recorded_and_gated(bundle):
    path, precision = bundle
    m = _manifest(path)
    bar = parity.IMAGE_PSNR_DB[precision]
    assert m["parity"]["simulated"] is True and m["parity"]["passed"] is True
    assert m["parity"]["bars"]["image_psnr_db"] == bar
    for name in ("decoder", "generator_2"):
        p = m["graphs"][name]["parity"]
        assert p["simulated"] is True and p["compute_precision"] == "float16"
        assert p["passed"] and p["psnr_db"] >= bar and p["images"] == 3
    assert m["parity"]["stepwise"]["psnr_db"] >= bar
    step = m["graphs"]["step"]["parity"]
    assert step["finite"] and step["snr_db"] > 20      # fp16 compute, not bit-exact
    assert m["golden"]["files"]["reference"]["file"] == "golden/reference.png"
    assert "image_stepwise" not in m["golden"]["files"]  # no Core ML run here: not faked


def test_int8_simulation_uses_the_package_weights(bundle, ckpt):
    path, precision = bundle
    m = _manifest(path)
    for name, entry in m["graphs"].items():
        q, w = entry["quantization"], entry["parity"]["weights"]
        if precision == "fp32":
            assert q == {"method": "none"} and w["compressed_weights"] == 0
            continue
        assert q["method"] == "linear_symmetric" and q["weight_type"] == "int8"
        assert q["compressed_weights"] > 0 and w["matched"] == q["compressed_weights"]
        assert entry["op_census"]["constexpr_affine_dequantize"] == q["compressed_weights"]
        # re-quantised independently here and equal to the package's int8 weights
        assert w["max_abs_vs_package"] == 0.0
    if precision == "int8":     # and weights that are not the package's are refused
        weights = coreml_sim.package_weights(path / "step.mlpackage")
        step = build_graphs(ckpt, fused_steps=(), image_format="float_nchw")["step"]
        _, report = coreml_sim.simulate_module(step, weights, "fp16", "step")
        assert report["matched"] == len(weights) > 0
        saved = {k: v.clone() for k, v in step.state_dict().items()}
        with torch.no_grad():              # another checkpoint: not the package's weights
            for p in step.parameters():
                p.mul_(1.5)
        try:
            with pytest.raises(ValueError, match="differs from the package"):
                coreml_sim.simulate_module(step, weights, "fp16", "step")
        finally:
            step.load_state_dict(saved)


def test_int8_quantiser_matches_coremltools_formula():
    from coremltools.optimize._utils import quantize_weight_by_dtype
    from coremltools.converters.mil.mil import types

    w = torch.randn(24, 40, generator=torch.Generator().manual_seed(0)).half()
    q, scale, _ = quantize_weight_by_dtype(w.numpy(), (1,), types.int8, "LINEAR_SYMMETRIC")
    theirs = (q.astype(np.float32) * scale.astype(np.float32)[:, None]).astype(np.float16)
    ours = coreml_sim.quantize_dequantize_int8(w, axis=0).numpy()
    assert np.array_equal(ours, theirs)


def _convert_step(ckpt, compute: str):
    graphs = build_graphs(ckpt, fused_steps=(), image_format="float_nchw")
    inputs, outputs = graph_io("step", ckpt, dynamic_batch=False, dynamic_decoder_hw=False)
    example = example_inputs("step", ckpt)
    return graphs["step"], example, coreml.convert(graphs["step"], example, inputs, outputs,
                                                   compute)


def test_palettize_and_fp32_compute_on_the_step_graph(ckpt, tmp_path):
    step, example, ml32 = _convert_step(ckpt, "fp32")
    path = tmp_path / "step32.mlpackage"
    ml32.save(str(path))
    spec = coreml.load_spec(path)
    assert "FLOAT16" not in coreml.dtype_census(spec)
    sim, report = coreml_sim.simulate_module(step, coreml_sim.package_weights(path), "fp32", "s")
    with torch.no_grad():                  # fp32, uncompressed: the simulation is the reference
        assert torch.equal(sim(*example), step(*example))
    _, _, ml16 = _convert_step(ckpt, "fp16")
    pal, quant = coreml.compress(ml16, "int8", palettize=4)
    path = tmp_path / "step_pal4.mlpackage"
    pal.save(str(path))
    weights = coreml_sim.package_weights(path)
    assert quant["method"] == "palettize" and quant["nbits"] == 4
    assert weights and all(w["op"] == "constexpr_lut_to_dense" for w in weights)
    assert all(len(np.unique(w["dense"])) <= 16 for w in weights)
    sim, report = coreml_sim.simulate_module(step, weights, "fp16", "step")
    assert report["matched"] == len(weights)
    with torch.no_grad():
        ref = step(*example)
    out = coreml_sim.run_simulated(sim, torch.float16, *[a.numpy() for a in example])
    err = parity.tensor_metrics(ref.numpy(), out.numpy())
    assert err["finite"] and 0 < err["rel_max_abs"] < 0.5   # 4-bit weights: close, not equal


@pytest.mark.parametrize("options, match", [
    ({"compute_precision": "bf16"}, "fp16, fp32"),
    ({"palettize": 3}, "4, 6, 8"),
    ({"batch": 0}, "batch"),
])
def test_bad_options_are_rejected(options, match):
    with pytest.raises(ValueError, match=match):
        coreml.coreml_options(options)


def test_palettize_needs_int8(tiny_checkpoint, tmp_path):
    with pytest.raises(ValueError, match="int8=True"):
        export_bundle("coreml", checkpoint=tiny_checkpoint, out=tmp_path / "b", steps=[1],
                      parity_images=1, options={"palettize": 4}, log=lambda m: None)
    assert not (tmp_path / "b").exists()


def test_unknown_target_lists_the_valid_ones():
    with pytest.raises(ValueError, match="coreml, executorch, onnx"):
        get_target("core-ml")


@pytest.mark.macos
@pytest.mark.skipif(sys.platform != "darwin", reason="Core ML predict runs only on macOS "
                    "(.github/workflows/coreml.yml); Linux checks specs + simulated parity")
def test_coreml_predict_parity(bundle, tiny_checkpoint):
    """Real Core ML: every package against the PyTorch reference, at the bundle's bars."""
    import coremltools as ct

    from lrf.exporter.calibration import PARITY_SEED0, fixed_cases, record_trajectories

    path, precision = bundle
    m = _manifest(path)
    ck = load_checkpoint(tiny_checkpoint)
    bar = parity.IMAGE_PSNR_DB[precision]
    labels, seeds = fixed_cases(3, ck.config.num_classes, PARITY_SEED0)
    ref = record_trajectories(ck, labels, seeds, steps=2)
    models = {n: ct.models.MLModel(str(path / e["file"])) for n, e in m["graphs"].items()}

    def images(x):
        return coreml_sim._images(torch.from_numpy(np.concatenate(x)))

    dec = [models["decoder"].predict({"latent": ref.latents[-1][i:i + 1]})["image"]
           for i in range(3)]
    gen = [models["generator_2"].predict({"noise": ref.latents[0][i:i + 1],
                                          "label": ref.labels[i:i + 1].astype(np.int32),
                                          "guidance": np.float32([ref.guidance])})["image"]
           for i in range(3)]
    vel = [models["step"].predict({"latent": ref.latents[0][i:i + 1],
                                   "t": ref.times[:1].astype(np.float32),
                                   "label": ref.labels[i:i + 1].astype(np.int32),
                                   "guidance": np.float32([ref.guidance])})["velocity"]
           for i in range(3)]
    for what, got in (("decoder", images(dec)), ("generator_2", images(gen))):
        p = parity.image_metrics(ref.images, got)["psnr_db"]
        print(f"coreml {precision} {what}: {p:.2f} dB PSNR (bar {bar})")
        assert p >= bar, f"{what}: {p:.2f} dB < {bar}"
    snr = parity.tensor_metrics(ref.velocities[0], np.concatenate(vel))["snr_db"]
    print(f"coreml {precision} step: velocity SNR {snr:.2f} dB")
    assert snr > 20


@pytest.mark.parametrize("argv, match", [
    (["--target", "onnx", "--palettize", "4"], "--palettize applies to --target coreml"),
    (["--target", "onnx", "--fp32"], "--fp16/--fp32 applies to --target coreml"),
    (["--target", "onnx", "--batch", "2"], "--batch applies to --target coreml / executorch"),
    (["--target", "coreml", "--int8", "--palettize", "6"], "alternatives"),
    (["--target", "coreml", "--palettize", "5"], "invalid choice"),
    (["--target", "coreml", "--fp16", "--fp32"], "not allowed with"),
])
def test_cli_rejects_flags_the_target_does_not_use(argv, match, capsys):
    from lrf.exporter.cli import main

    try:
        rc = main(argv + ["--checkpoint", "/nonexistent"])
    except SystemExit as e:            # argparse usage errors
        rc = e.code
    err = capsys.readouterr().err.strip()
    assert rc == 2 and match in err and len(err.splitlines()) == 1, err


def test_cli_target_all_writes_one_bundle_per_target_under_out(tmp_path):
    from lrf.exporter.cli import _target_options, _targets_and_outs, build_parser

    args = build_parser().parse_args(["--target", "all", "--int8", "--batch", "2",
                                      "--out", str(tmp_path / "b")])
    targets, outs = _targets_and_outs(args)
    assert targets == ["coreml", "executorch", "onnx"]
    assert outs == [tmp_path / "b" / t for t in targets]
    assert _target_options(args, "coreml")["batch"] == 2
    assert "batch" not in _target_options(args, "onnx")       # the flag's owners only
    args = build_parser().parse_args(["--target", "all", "--palettize", "4",
                                      "--checkpoint", "ckpts/cifar10"])
    assert _targets_and_outs(args)[1][0].as_posix() == "bundles/cifar10-int8/coreml"
