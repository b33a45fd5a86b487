"""``--target coreml`` (schema v2): what Linux can check, checked here; Core ML predict on macOS.

Linux: one tiny int8 bundle exported once; its manifest (v2 graphs, roles, the fixed window)
against the packages' own specs read back with coremltools; every weight the packages store
read back from the MIL program and compared with the checkpoint's tensors (int8 re-quantised
here with coremltools' own quantiser); the simulation of the packages re-run here against the
PyTorch reference; a turbo checkpoint at fp32 compute (weights stored exactly, one denoise
window equal to the PyTorch step); metadata, bad options, the CLI. macOS (``-m macos``): real
Core ML predictions of every graph against the PyTorch reference, at the bundle's bar.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import REPO, make_checkpoint
from lrf.exporter import parity
from lrf.exporter.export import export_bundle
from lrf.exporter.targets import coreml, coreml_sim, get_target
from lrf.exporter.wrappers import build_graphs
from lrf.models.checkpoint import checkpoint_sha256, load_checkpoint
from lrf.models.reference import generate, portable_noise, to_uint8
from lrf.runtime import open_bundle, scheduler

pytestmark = pytest.mark.slow
ROLES = {"denoise": (["latent", "timesteps", "label", "guidance"], ["latent"]),
         "decoder": (["latent"], ["image"]),
         "encoder": (["image"], ["latent"])}


@pytest.fixture(scope="module")
def ckpt_dir(tmp_path_factory):
    """The tiny preset, vivid codec (images with contrast), 2 sampling steps (a fast gate)."""
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny-vivid-2", vivid=True, steps=2)


@pytest.fixture(scope="module")
def ckpt(ckpt_dir):
    return load_checkpoint(ckpt_dir)


@pytest.fixture(scope="module")
def bundle(ckpt_dir, tmp_path_factory):
    """One int8 Core ML bundle (conversion is slow: shared by the module)."""
    out = tmp_path_factory.mktemp("coreml") / "tiny-coreml-int8"
    export_bundle("coreml", checkpoint=ckpt_dir, out=out, int8=True, steps=[1],
                  parity_images=2, calibration_images=1, fidelity_images=0, log=lambda m: None)
    return out


def _manifest(path: Path) -> dict:
    return json.loads((path / "manifest.json").read_text())


def _spec_io(pkg: Path):
    """(inputs, outputs) of a saved package as coremltools reads its spec: (name, dtype, shape)."""
    import coremltools as ct
    from coremltools.proto import FeatureTypes_pb2 as ft

    spec = ct.models.MLModel(str(pkg), skip_model_load=True).get_spec()
    name = ft.ArrayFeatureType.ArrayDataType.Name

    def io(features):
        return [(f.name, name(f.type.multiArrayType.dataType), list(f.type.multiArrayType.shape))
                for f in features]
    return io(spec.description.input), io(spec.description.output)


def test_manifest_describes_v2_graphs_with_roles_and_a_fixed_window(bundle):
    m = open_bundle(bundle).manifest                        # schema check + every checksum
    assert m["schema_version"] == 2 and m["target"] == "coreml" and m["precision"] == "int8"
    assert m["image"]["format"] == "float_nchw" and m["sampling"]["mode"] == "stepwise"
    assert sorted(m["graphs"]) == ["decoder", "denoise", "encoder"]
    c, s = m["latent"]["channels"], m["latent"]["height"]
    for name, (ins, outs) in ROLES.items():
        entry = m["graphs"][name]
        assert entry["format"] == "mlpackage" and entry["file"] == f"{name}.mlpackage"
        assert [t["role"] for t in entry["inputs"]] == ins
        assert [t["role"] for t in entry["outputs"]] == outs
        assert all(-1 not in t["shape"] for t in entry["inputs"] + entry["outputs"])
        listed = [f for f in m["files"] if f.startswith(entry["file"] + "/")]
        assert any(f.endswith("Manifest.json") for f in listed)
        # the manifest's tensors are the package's own, in order (read back here)
        have_in, have_out = _spec_io(bundle / entry["file"])
        dt = {"float32": "FLOAT32", "int32": "INT32"}
        assert have_in == [(t["name"], dt[t["dtype"]], t["shape"]) for t in entry["inputs"]]
        assert have_out == [(t["name"], dt[t["dtype"]], t["shape"]) for t in entry["outputs"]]
    den = m["graphs"]["denoise"]
    assert den["window"] == {"min": 1, "max": 1}
    assert {t["role"]: (t["dtype"], t["shape"]) for t in den["inputs"]} == {
        "latent": ("float32", [1, c, s, s]), "timesteps": ("float32", [2]),
        "label": ("int32", [1]), "guidance": ("float32", [1])}
    assert m["graphs"]["decoder"]["outputs"][0]["shape"] == [1, 3, 8 * s, 8 * s]
    assert m["graphs"]["encoder"]["outputs"][0]["shape"] == [1, c, s, s]
    assert not any(k.startswith(("generator_", "step")) for k in m["graphs"])
    assert m["parity"]["simulated"] is True          # a label: no Core ML ran here
    assert get_target("coreml").verify_bundle(bundle, m)    # what lrf-export --check runs


def _stored_weights(pkg: Path) -> dict[str, tuple[str, np.ndarray, np.ndarray | None]]:
    """Every floating weight the package stores, read here from its MIL program: op name ->
    (op type, dense float32 values, int8 data for affine int8 ops)."""
    import coremltools as ct
    from coremltools.converters.mil.frontend.milproto import load as milproto

    ml = ct.models.MLModel(str(pkg), skip_model_load=True)
    spec = ml.get_spec()
    prog = milproto.load(spec, spec.specificationVersion, ml.weights_dir)
    out = {}
    for op in next(iter(prog.functions.values())).operations:
        if op.op_type == "const":
            v = op.outputs[0].val
            if isinstance(v, np.ndarray) and v.dtype.kind == "f" and v.size > 1:
                out[op.name] = ("const", v.astype(np.float32), None)
        elif op.op_type == "constexpr_affine_dequantize":
            q = np.asarray(op.quantized_data.val)
            assert q.dtype == np.int8 and not np.any(op.zero_point.val)
            axis, scale = int(op.axis.val), np.asarray(op.scale.val, np.float32)
            shape = [1] * q.ndim
            shape[axis] = -1
            out[op.name] = ("int8", q.astype(np.float32) * scale.reshape(shape), q)
    return out


@pytest.mark.parametrize("graph, prefix", [("denoise", "model_"),
                                           ("decoder", "codec_ae_decoder_"),
                                           ("encoder", "codec_ae_encoder_")])
def test_package_weights_are_the_checkpoints(bundle, ckpt, graph, prefix):
    """int8 weights = the checkpoint's re-quantised by coremltools' quantiser; fp16 consts =
    the checkpoint's rounded to fp16; every large parameter of the graph is stored as int8."""
    from coremltools.converters.mil.mil import types
    from coremltools.optimize._utils import quantize_weight_by_dtype

    module = build_graphs(ckpt, image_format="float_nchw")[graph]
    params = {n.replace(".", "_"): p.detach() for n, p in module.named_parameters()
              if n.replace(".", "_").startswith(prefix)}
    stored = {_param_key(k): (k, *v) for k, v in
              _stored_weights(bundle / f"{graph}.mlpackage").items() if _param_key(k) in params}
    assert len(stored) >= len(params) * 3 // 4      # a few are folded by the converter
    kinds = {}
    for key, (op_name, kind, dense, q) in stored.items():
        want = _checkpoint_tensor(params[key], dense.shape)
        kinds[key] = kind
        if kind == "const":                  # fp16 compute: the checkpoint's value in fp16
            assert np.array_equal(dense, want.astype(np.float16).astype(np.float32)), op_name
            continue
        reduce = tuple(range(1, want.ndim))     # per output channel (axis 0)
        q_ref, scale, _ = quantize_weight_by_dtype(want.astype(np.float16), reduce, types.int8,
                                                   "LINEAR_SYMMETRIC")
        # a rounding tie may fall either way: at most one step, on few elements
        diff = np.abs(q.astype(np.int32) - q_ref.astype(np.int32))
        assert diff.max() <= 1 and diff.mean() < 0.01, op_name
        assert np.abs(dense - want).max() <= np.abs(scale).max() * 1.01, op_name
    big = [k for k, p in params.items() if p.numel() > coreml.WEIGHT_THRESHOLD]
    assert big and all(kinds.get(k) == "int8" for k in big), (big, kinds)
    small = [k for k, p in params.items() if p.numel() <= coreml.WEIGHT_THRESHOLD and k in kinds]
    assert all(kinds[k] == "const" for k in small)


def _param_key(op_name: str) -> str:
    """The checkpoint parameter (``.`` as ``_``) a package weight is named after (torch.export's
    ``p_<path>``, plus the converter's suffixes)."""
    key = op_name.removeprefix("p_")
    for suffix in ("_quantized", "_to_fp16"):
        key = key.removesuffix(suffix)
    return key


def _checkpoint_tensor(p: torch.Tensor, shape) -> np.ndarray:
    """A checkpoint parameter in the layout the package stores it."""
    if tuple(p.shape) != tuple(shape) and p.dim() == 2:
        p = p.t()
    return p.reshape(shape).numpy()


def test_simulation_of_the_packages_matches_the_reference(bundle, ckpt):
    """The packages' own weights, simulated in fp16 (coreml_sim), generate and decode what the
    PyTorch reference does, within the int8 bar: measured here, not read from the manifest."""
    m = _manifest(bundle)
    runner = coreml_sim.SimulatedRunner(bundle, build_graphs(ckpt, image_format="float_nchw"),
                                        _records(m), "fp16")
    assert runner.window == (1, 1)
    labels, seeds, n = [3, 7], [11, 12], 2
    ref = generate(ckpt, labels, seeds, steps=n)
    ref_u8 = to_uint8(ref)
    noise = portable_noise(seeds, ckpt.config.latent_channels,
                           (ckpt.config.latent_size,) * 2).numpy()
    ts = scheduler.timesteps(n, float(ckpt.sampling["shift"]))
    g = np.float32(ckpt.sampling["guidance"])
    images = []
    for i, y in enumerate(labels):                   # batch 1, one-step windows
        z = noise[i:i + 1]
        for k in range(n):
            z = runner.denoise(z, ts[k:k + 2], np.int32([y]), np.float32([g]))
        images.append(runner.decode(z))
    got = np.concatenate(images)
    psnr = parity.image_metrics(ref_u8, got)["psnr_db"]
    assert psnr >= parity.IMAGE_PSNR_DB["int8"], psnr
    assert psnr < parity.PSNR_CAP                    # int8 + fp16: close, not identical
    lat = runner.encode(got)                         # encoder: finite latents of the right size
    assert lat.shape == noise[:2].shape and np.isfinite(lat).all()


def _records(m: dict) -> dict:
    from lrf.exporter.targets import GraphRecord

    return {n: GraphRecord(name=n, file=e["file"], format=e["format"], inputs=e["inputs"],
                           outputs=e["outputs"], quantization=e["quantization"],
                           extra={"window": e["window"]} if "window" in e else {})
            for n, e in m["graphs"].items()}


def test_simulation_refuses_weights_that_are_not_the_packages(bundle, ckpt):
    weights = coreml_sim.package_weights(bundle / "decoder.mlpackage")
    dec = build_graphs(ckpt, image_format="float_nchw")["decoder"]
    _, report = coreml_sim.simulate_module(dec, weights, "fp16", "decoder")
    assert report["from_package"] > 0
    other = load_checkpoint(make_checkpoint(Path(bundle).parent / "other", seed=5, vivid=True))
    with pytest.raises(parity.ParityError, match="differs from the checkpoint"):
        coreml_sim.simulate_module(build_graphs(other, image_format="float_nchw")["decoder"],
                                   weights, "fp16", "decoder")


def test_turbo_fp32_compute_stores_the_checkpoint_exactly(tiny_turbo_checkpoint, tmp_path):
    """A guidance-distilled checkpoint at fp32 compute: no fp16 op, every stored weight equal
    to the checkpoint's, and one denoise window of the packages' weights equal to the PyTorch
    turbo step (one core call with guidance and step)."""
    from lrf.models.flow import euler_sample

    out = export_bundle("coreml", checkpoint=tiny_turbo_checkpoint, out=tmp_path / "turbo",
                        steps=[1], parity_images=1, fidelity_images=0,
                        options={"compute_precision": "fp32"}, log=lambda m: None)
    m, ck = _manifest(out), load_checkpoint(tiny_turbo_checkpoint)
    assert m["model"]["guidance_distilled"] is True
    assert m["graphs"]["denoise"]["window"] == {"min": 1, "max": 1}
    spec = coreml.load_spec(out / "denoise.mlpackage")
    assert dict(spec.description.metadata.userDefined)["lrf.guidance_distilled"] == "true"
    assert "FLOAT16" not in coreml.dtype_census(spec)
    params = {n.replace(".", "_"): p.detach() for n, p in ck.model.named_parameters()}
    stored = {_param_key(k): v for k, v in _stored_weights(out / "denoise.mlpackage").items()
              if _param_key(k).removeprefix("model_") in params}
    assert len(stored) >= len(params) * 3 // 4
    for key, (kind, dense, _) in stored.items():
        want = _checkpoint_tensor(params[key.removeprefix("model_")], dense.shape)
        assert kind == "const" and np.array_equal(dense, want), key
    runner = coreml_sim.SimulatedRunner(out, build_graphs(ck, image_format="float_nchw"),
                                        _records(m), "fp32")
    z = portable_noise([4], ck.config.latent_channels, (ck.config.latent_size,) * 2)
    ts = scheduler.timesteps(2, float(ck.sampling["shift"]))
    g = float(ck.sampling["guidance"])
    got = runner.denoise(z.numpy(), ts[:2], np.int32([5]), np.float32([g]))
    with torch.no_grad():
        ref = euler_sample(ck.model, z, torch.tensor([5]), ts=torch.from_numpy(ts[:2]),
                           guidance=torch.tensor([g]).view(-1, 1, 1, 1),
                           null_class=ck.config.null_class)
    err = parity.tensor_metrics(ref.numpy(), got)
    assert err["finite"] and err["rel_max_abs"] < 1e-4, err
    assert not np.array_equal(got, z.numpy())        # the window moved the latent


def test_verify_package_catches_mismatches(bundle):
    entry = _manifest(bundle)["graphs"]["denoise"]
    pkg = bundle / "denoise.mlpackage"
    bad_census = {**entry, "op_census": {**entry["op_census"], "softmax": 99}}
    with pytest.raises(ValueError, match="op census"):
        coreml.verify_package(pkg, bad_census)
    bad_shape = {**entry, "inputs": [entry["inputs"][0], {**entry["inputs"][1], "shape": [3]}]
                 + entry["inputs"][2:]}
    with pytest.raises(ValueError, match="inputs"):
        coreml.verify_package(pkg, bad_shape)


def test_package_metadata(bundle, ckpt_dir):
    m = _manifest(bundle)
    for name in ROLES:
        md = coreml.load_spec(bundle / f"{name}.mlpackage").description.metadata
        user = dict(md.userDefined)
        assert md.author == coreml.AUTHOR and md.license and md.versionString
        assert user["lrf.graph"] == name and user["lrf.bundle_schema"] == "lrf-bundle/2"
        assert user["lrf.source_checkpoint_sha256"] == checkpoint_sha256(ckpt_dir)
        assert user["lrf.classes"].split(",") == m["classes"]
        assert user["lrf.guidance_distilled"] == "false"
        assert ("lrf.window" in user) == (name == "denoise")
    user = dict(coreml.load_spec(bundle / "denoise.mlpackage").description.metadata.userDefined)
    assert user["lrf.window"] == "1"


def test_int8_quantiser_matches_coremltools_formula():
    from coremltools.converters.mil.mil import types
    from coremltools.optimize._utils import quantize_weight_by_dtype

    w = torch.randn(24, 40, generator=torch.Generator().manual_seed(0)).half()
    q, scale, _ = quantize_weight_by_dtype(w.numpy(), (1,), types.int8, "LINEAR_SYMMETRIC")
    theirs = (q.astype(np.float32) * scale.astype(np.float32)[:, None]).astype(np.float16)
    ours = coreml_sim.quantize_dequantize_int8(w, axis=0).numpy()
    assert np.array_equal(ours, theirs)


@pytest.mark.parametrize("options, match", [
    ({"compute_precision": "bf16"}, "fp16, fp32"),
    ({"palettize": 3}, "4, 6, 8"),
    ({"batch": 0}, "batch"),
])
def test_bad_options_are_rejected(options, match):
    with pytest.raises(ValueError, match=match):
        coreml.coreml_options(options)


def test_palettize_needs_int8(ckpt_dir, tmp_path):
    with pytest.raises(ValueError, match="int8=True"):
        export_bundle("coreml", checkpoint=ckpt_dir, out=tmp_path / "b", steps=[1],
                      parity_images=1, options={"palettize": 4}, log=lambda m: None)
    assert not (tmp_path / "b").exists()


def test_unknown_target_lists_the_valid_ones():
    with pytest.raises(ValueError, match="coreml, executorch, onnx"):
        get_target("core-ml")


@pytest.mark.parametrize("argv, match", [
    (["--target", "onnx", "--palettize", "4"], "--palettize applies to --target coreml"),
    (["--target", "onnx", "--fp32"], "--fp16/--fp32 applies to --target coreml"),
    (["--target", "onnx", "--batch", "2"], "--batch applies to --target coreml / executorch"),
    (["--target", "onnx", "--window", "2"], "--window applies to --target coreml / executorch"),
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
                                      "--window", "2", "--out", str(tmp_path / "b")])
    targets, outs = _targets_and_outs(args)
    assert targets == ["coreml", "executorch", "onnx"]
    assert outs == [tmp_path / "b" / t for t in targets]
    assert _target_options(args, "coreml")["batch"] == 2
    assert _target_options(args, "coreml")["window"] == 2
    assert "batch" not in _target_options(args, "onnx")       # the flag's owners only
    assert "window" not in _target_options(args, "onnx")


def test_cli_target_all_without_coremltools_skips_it_in_one_line(tmp_path):
    """coremltools blocked (a sitecustomize on PYTHONPATH): ``--target all`` says so in one line
    and goes on; the next target then fails on the missing checkpoint with one line, no
    traceback (cheap: nothing is exported)."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(textwrap.dedent("""
        import sys
        class _Block:
            def find_spec(self, name, path=None, target=None):
                if name == "coremltools" or name.startswith("coremltools."):
                    raise ImportError("coremltools blocked by the test")
        sys.meta_path.insert(0, _Block())
    """))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), REPO])}
    proc = subprocess.run([sys.executable, "-m", "lrf.exporter.cli", "--target", "all",
                           "--checkpoint", str(tmp_path / "missing"), "--out",
                           str(tmp_path / "out"), "--quiet"],
                          capture_output=True, text=True, env=env, timeout=300)
    err = proc.stderr
    assert "Traceback" not in err and proc.returncode == 2, err
    skip = [ln for ln in err.splitlines() if "skipping --target coreml" in ln]
    assert len(skip) == 1 and "coremltools" in skip[0], err
    assert not (tmp_path / "out" / "coreml").exists()


@pytest.mark.macos
@pytest.mark.skipif(sys.platform != "darwin", reason="Core ML predict runs only on macOS "
                    "(.github/workflows/coreml.yml); Linux checks specs, weights and the "
                    "simulation")
def test_coreml_predict_parity(bundle, ckpt):
    """Real Core ML: stepwise generation (one-step denoise windows) and the decoder against
    the PyTorch reference images at the int8 bar; the encoder's latents finite."""
    import coremltools as ct

    m = _manifest(bundle)
    models = {n: ct.models.MLModel(str(bundle / e["file"])) for n, e in m["graphs"].items()}
    names = {n: ({t["role"]: t["name"] for t in e["inputs"]},
                 {t["role"]: t["name"] for t in e["outputs"]}) for n, e in m["graphs"].items()}
    labels, seeds, n = [3, 7], [11, 12], 2
    ref = to_uint8(generate(ckpt, labels, seeds, steps=n))
    noise = portable_noise(seeds, ckpt.config.latent_channels,
                           (ckpt.config.latent_size,) * 2).numpy()
    ts = scheduler.timesteps(n, float(ckpt.sampling["shift"]))
    g = np.float32([ckpt.sampling["guidance"]])
    (d_in, d_out), (x_in, x_out) = names["denoise"], names["decoder"]
    images = []
    for i, y in enumerate(labels):
        z = noise[i:i + 1]
        for k in range(n):
            z = models["denoise"].predict({d_in["latent"]: z, d_in["timesteps"]: ts[k:k + 2],
                                           d_in["label"]: np.int32([y]),
                                           d_in["guidance"]: g})[d_out["latent"]]
        x = models["decoder"].predict({x_in["latent"]: z})[x_out["image"]]
        images.append(to_uint8(torch.from_numpy(np.asarray(x, np.float32))))
    got = np.concatenate(images)
    p = parity.image_metrics(ref, got)["psnr_db"]
    print(f"coreml int8 stepwise + decoder: {p:.2f} dB PSNR")
    assert p >= parity.IMAGE_PSNR_DB["int8"], p
    e_in, e_out = names["encoder"]
    x = (got[:1].astype(np.float32) / 127.5 - 1).transpose(0, 3, 1, 2)
    lat = models["encoder"].predict({e_in["image"]: x})[e_out["latent"]]
    assert np.isfinite(lat).all() and list(lat.shape) == list(noise[:1].shape)
