"""``lrf-export --target onnx``: bundle contents, fused-graph size, dynamic shapes, int8, the parity
gate, ``--check``, the target registry and the CLI's errors. Tiny checkpoints only."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from lrf.exporter import parity
from lrf.exporter.cli import main
from lrf.exporter.onnx_int8 import choose
from lrf.exporter.export import export_bundle
from lrf.runtime import sha256_file

_BUNDLES: dict = {}


def build_bundle(tmp_path_factory, ckpt: str, int8: bool = False, steps=(2, 3)) -> Path:
    """One export per (checkpoint, precision, steps) per test session, shared with
    test_runtime.py (which imports this function)."""
    key = (ckpt, int8, tuple(steps))
    if key not in _BUNDLES:
        out = tmp_path_factory.mktemp("bundles") / f"tiny-{'int8' if int8 else 'fp32'}"
        _BUNDLES[key] = export_bundle("onnx", checkpoint=ckpt, out=out, int8=int8,
                                      steps=list(steps), parity_images=4, calibration_images=8,
                                      fidelity_images=0, log=lambda m: None)
    return _BUNDLES[key]


@pytest.fixture(scope="module")
def fp32(tiny_checkpoint, tmp_path_factory):
    return build_bundle(tmp_path_factory, tiny_checkpoint)


@pytest.fixture(scope="module")
def int8(tiny_checkpoint, tmp_path_factory):
    return build_bundle(tmp_path_factory, tiny_checkpoint, int8=True, steps=(2,))


def _manifest(bundle: Path) -> dict:
    return json.loads((bundle / "manifest.json").read_text())


def _ops(path: Path) -> set[str]:
    return {n.op_type for n in onnx.load(str(path)).graph.node}


# ---------------------------------------------------------------------------------- fp32 bundle
@pytest.mark.slow
def test_fp32_bundle_manifest(fp32, tiny_checkpoint):
    from lrf.models.checkpoint import checkpoint_sha256

    m = _manifest(fp32)
    assert (m["schema"], m["schema_version"], m["target"], m["precision"]) == \
        ("lrf-bundle", 1, "onnx", "fp32")
    assert set(m["graphs"]) == {"step", "decoder", "generator_2", "generator_3"}
    assert m["fused_steps"] == [2, 3]
    assert m["source_checkpoint"]["sha256"] == checkpoint_sha256(tiny_checkpoint)
    assert m["model"]["config"]["dim"] == 32 and len(m["classes"]) == 10
    assert m["rng"]["name"] == "splitmix64-boxmuller"
    assert set(m["scheduler"]["timesteps"]) == {"2", "3", "50"}
    for tool in ("torch", "onnx", "onnxruntime", "onnxsim", "onnxscript", "lrf-mobile"):
        assert m["tools"][tool]
    step = m["graphs"]["step"]
    assert step["opset"] >= 18 and step["quantization"] == {"method": "none"}
    assert [t["name"] for t in step["inputs"]] == ["latent", "t", "label", "guidance"]
    assert step["inputs"][2]["dtype"] == "int32" and step["inputs"][0]["shape"] == [-1, 4, 4, 4]
    assert m["graphs"]["decoder"]["outputs"][0] == {
        "name": "image", "dtype": "uint8", "shape": [-1, -1, -1, 3],
        "dims": ["batch", "image_height", "image_width", "rgb"]}
    # every file listed with its real size and sha256, nothing unlisted
    on_disk = {p.relative_to(fp32).as_posix() for p in fp32.rglob("*") if p.is_file()}
    assert on_disk - {"manifest.json"} == set(m["files"])
    for rel, meta in m["files"].items():
        assert meta == {"size": (fp32 / rel).stat().st_size, "sha256": sha256_file(fp32 / rel)}
    # parity measured and recorded for every artifact
    for name, g in m["graphs"].items():
        assert g["parity"]["passed"], name
    assert m["graphs"]["generator_2"]["parity"]["psnr_db"] >= 40
    assert m["graphs"]["step"]["parity"]["rel_max_abs"] <= 1e-3
    assert m["parity"]["stepwise"]["psnr_db"] >= 40 and m["parity"]["passed"]
    assert m["parity"]["class_fidelity"]["measured"] is False
    assert m["parity"]["class_fidelity"]["reason"]
    # golden files: shapes as the manifest says, raw little-endian float32
    for key, e in m["golden"]["files"].items():
        assert (fp32 / e["file"]).is_file(), key
        if e["file"].endswith(".f32"):
            assert (fp32 / e["file"]).stat().st_size == 4 * int(np.prod(e["shape"]))
    assert {"image_stepwise", "reference", "noise", "latent_final", "velocity_0",
            "timesteps", "rng"} <= set(m["golden"]["files"])
    assert not [p for p in fp32.parent.iterdir() if p.name.startswith(".")]  # no temp left


@pytest.mark.slow
def test_fused_generator_stores_weights_once(fp32):
    size = {n: (fp32 / f"{n}.onnx").stat().st_size for n in ("step", "decoder", "generator_2",
                                                               "generator_3")}
    assert size["generator_3"] <= 1.2 * (size["step"] + size["decoder"])
    # one more step adds (almost) nothing, certainly not another copy of the weights
    assert size["generator_3"] - size["generator_2"] < 0.2 * size["step"]
    m = _manifest(fp32)["graphs"]["generator_3"]
    assert m["size_vs_step_plus_decoder"] == round(size["generator_3"] / (size["step"] +
                                                                        size["decoder"]), 4)


@pytest.mark.slow
def test_loop_and_unrolled_generators_agree(fp32, tmp_path):
    import onnxruntime as ort

    from lrf.exporter.onnx_compose import compose_generator
    from lrf import prng

    m = _manifest(fp32)
    assert m["graphs"]["generator_3"]["form"] == "loop"
    assert m["graphs"]["generator_3"]["size_vs_step_plus_decoder"] <= 1.2
    step, dec = onnx.load(str(fp32 / "step.onnx")), onnx.load(str(fp32 / "decoder.onnx"))
    image = m["graphs"]["generator_3"]["outputs"][0]
    feed = {"noise": prng.noise([4, 5], (4, 4, 4)), "label": np.array([1, 9], np.int32),
            "guidance": np.array([3.0, 0.5], np.float32)}
    out = {}
    for form in ("loop", "unrolled"):
        path = tmp_path / f"{form}.onnx"
        onnx.save(compose_generator(step, dec, 3, 1.0, image, form=form), str(path))
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        out[form] = sess.run(None, feed)[0]
    assert out["loop"].shape == (2, 32, 32, 3)
    np.testing.assert_array_equal(out["loop"], out["unrolled"])
    with pytest.raises(ValueError, match="form must be"):
        compose_generator(step, dec, 3, 1.0, image, form="scan")


@pytest.mark.slow
def test_dynamic_batch_and_decoder_size(fp32, tiny_checkpoint):
    import onnxruntime as ort
    import torch

    from lrf.exporter.wrappers import build_graphs
    from lrf.models.checkpoint import load_checkpoint

    graphs = build_graphs(load_checkpoint(tiny_checkpoint), fused_steps=())
    rng = np.random.default_rng(0)
    dec = ort.InferenceSession(str(fp32 / "decoder.onnx"), providers=["CPUExecutionProvider"])
    z = rng.standard_normal((3, 4, 6, 8)).astype(np.float32)  # not the trained 4x4
    img = dec.run(None, {"latent": z})[0]
    assert img.shape == (3, 48, 64, 3) and img.dtype == np.uint8
    with torch.no_grad():
        ref = graphs["decoder"](torch.from_numpy(z)).numpy()
    assert np.abs(ref.astype(int) - img.astype(int)).max() <= 1
    step = ort.InferenceSession(str(fp32 / "step.onnx"), providers=["CPUExecutionProvider"])
    feed = {"latent": rng.standard_normal((5, 4, 4, 4)).astype(np.float32),
            "t": rng.uniform(size=5).astype(np.float32),
            "label": np.arange(5, dtype=np.int32), "guidance": np.full(5, 2.5, np.float32)}
    v = step.run(None, feed)[0]
    with torch.no_grad():
        v_ref = graphs["step"](*(torch.from_numpy(feed[k]) for k in feed)).numpy()
    assert v.shape == (5, 4, 4, 4) and np.abs(v - v_ref).max() <= 1e-4 * max(1, np.abs(v_ref).max())


@pytest.mark.slow
def test_check_bundle(fp32, tmp_path, capsys):
    assert main(["--check", str(fp32)]) == 0
    out = capsys.readouterr().out
    assert "checksums ok" in out and "golden image_stepwise: identical" in out
    bad = tmp_path / "bad"
    shutil.copytree(fp32, bad)
    golden = bad / "golden" / "image_stepwise.png"
    from PIL import Image
    Image.fromarray(255 - np.asarray(Image.open(golden))).save(golden)  # a different image
    assert main(["--check", str(bad)]) == 2  # size/checksum no longer match
    assert "image_stepwise.png" in (err := capsys.readouterr().err)
    assert "corrupt or was replaced" in err
    m = _manifest(bad)
    m["files"]["golden/image_stepwise.png"] = {"size": golden.stat().st_size,
                                               "sha256": sha256_file(golden)}
    (bad / "manifest.json").write_text(json.dumps(m))
    assert main(["--check", str(bad)]) == 2  # checksums fine, image no longer reproduced
    assert "golden image_stepwise: re-run gives" in capsys.readouterr().err


# ---------------------------------------------------------------------------------- int8
@pytest.mark.slow
def test_int8_bundle(int8, fp32):
    m = _manifest(int8)
    assert m["precision"] == "int8" and m["parity"]["passed"]
    assert m["parity"]["bars"]["image_psnr_db"] == 25
    for name in ("step", "decoder"):
        q = m["graphs"][name]["quantization"]
        assert q["method"] in ("static_qdq", "dynamic")
        names = [c["name"] for c in q["candidates"]]
        assert names == ["static_qdq", "static_qdq_float_edges", "dynamic"]
        assert all(c["metric"] == "image_psnr_db" and c["cpu_ms_per_call"] > 0
                   for c in q["candidates"])
        assert q["variant"] == choose(q["candidates"], 35.0)["name"]
        assert "velocity_snr_db" in q["candidates"][0] or name == "decoder"
        if q["method"] == "static_qdq":
            assert q["calibration"]["timesteps"] == "all" and q["calibration"]["images"] == 8
        assert (int8 / f"{name}.onnx").stat().st_size < (fp32 / f"{name}.onnx").stat().st_size
        assert _ops(int8 / f"{name}.onnx") & {"DequantizeLinear", "MatMulInteger",
                                              "DynamicQuantizeLinear", "ConvInteger"}
    assert m["graphs"]["generator_2"]["parity"]["psnr_db"] >= 25
    assert m["parity"]["stepwise"]["psnr_db"] >= 25
    size = {n: (int8 / f"{n}.onnx").stat().st_size for n in ("step", "decoder", "generator_2")}
    assert size["generator_2"] <= 1.2 * (size["step"] + size["decoder"])


def test_int8_choice_rule():
    c = [{"name": "a", "value": 60.0, "cpu_ms_per_call": 10.0},
         {"name": "b", "value": 40.0, "cpu_ms_per_call": 2.0},
         {"name": "c", "value": 45.0, "cpu_ms_per_call": 2.3},
         {"name": "d", "value": 30.0, "cpu_ms_per_call": 1.0}]
    assert choose(c, 35.0)["name"] == "c"     # fastest comfortable, near-ties go to accuracy
    assert choose(c, 70.0)["name"] == "a"     # none comfortable: the most accurate


# ---------------------------------------------------------------------------------- gate, CLI
@pytest.mark.slow
def test_parity_gate_refuses_and_writes_nothing(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(parity.IMAGE_PSNR_DB, "fp32", 101.0)  # unreachable: PSNR caps at 100
    out = tmp_path / "b"
    rc = main(["--target", "onnx", "--checkpoint", tiny_checkpoint, "--steps", "2",
               "--out", str(out), "--parity-images", "2", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 1
    assert "export gate failed" in err and "decoder:" in err and "generator_2:" in err
    assert "short by" in err and "no bundle written" in err and len(err.splitlines()) == 1
    assert not out.exists() and not list(tmp_path.iterdir())


def test_trajectories_are_the_reference(tiny_checkpoint):
    from lrf.exporter.calibration import record_trajectories
    from lrf.models.checkpoint import load_checkpoint
    from lrf.models.reference import generate, to_uint8

    ckpt = load_checkpoint(tiny_checkpoint)
    tr = record_trajectories(ckpt, [1, 2, 3], [5, 6, 7], steps=3)
    assert tr.latents.shape == (4, 3, 4, 4, 4) and tr.velocities.shape == (3, 3, 4, 4, 4)
    np.testing.assert_array_equal(tr.images, to_uint8(generate(ckpt, [1, 2, 3], [5, 6, 7],
                                                               steps=3)))
    np.testing.assert_array_equal(tr.latents[0, 1], __import__("lrf.prng").runtime.prng
                                  .noise([6], (4, 4, 4))[0])
    assert [f["t"][0] for f in tr.step_feeds()] == list(tr.times[:3])


def test_target_registry():
    from lrf.exporter.targets import Target, available_targets, get_target, register_target

    assert get_target("onnx").backend == "onnxruntime" and "onnx" in available_targets()
    with pytest.raises(ValueError, match="unknown export target 'tflite'; valid targets: .*onnx"):
        get_target("tflite")
    with pytest.raises(ValueError, match="registered twice"):
        register_target("onnx")(type("Other", (Target,), {}))


@pytest.mark.parametrize("argv,msg", [
    ([], "pass --target TARGET to export, or --check BUNDLE"),
    (["--target", "tflite"], "unknown export target 'tflite'"),
    (["--target", "onnx", "--steps", "0"], "--steps must be >= 1"),
    (["--check", "/nonexistent/bundle"], "is not a directory"),
])
def test_cli_errors(argv, msg, capsys):
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse usage errors
        rc = e.code
    err = capsys.readouterr().err
    assert rc == 2 and msg in err and len(err.strip().splitlines()) == 1


def test_out_must_not_be_a_foreign_folder(tiny_checkpoint, tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("mine")
    assert main(["--target", "onnx", "--checkpoint", tiny_checkpoint, "--out",
                 str(tmp_path), "--quiet"]) == 2
    assert "exists and is not a bundle" in capsys.readouterr().err
    assert os.listdir(tmp_path) == ["keep.txt"]


@pytest.mark.slow
def test_int8_variant_option_builds_one_variant_unscored(tiny_checkpoint, tmp_path):
    """``--int8-variant``: one variant built, no candidate scoring, still through the gate."""
    out = export_bundle("onnx", checkpoint=tiny_checkpoint, out=tmp_path / "b", int8=True,
                        steps=[2], parity_images=2, calibration_images=2, fidelity_images=0,
                        log=lambda m: None, options={"int8_variant": "static_qdq"})
    m = _manifest(out)
    for name in ("step", "decoder"):
        q = m["graphs"][name]["quantization"]
        assert q["variant"] == "static_qdq" and q["method"] == "static_qdq"
        assert [c["name"] for c in q["candidates"]] == ["static_qdq"]
        assert "value" not in q["candidates"][0] and q["selection"]["rule"].startswith("fixed")
    assert m["parity"]["passed"] and m["graphs"]["step"]["parity"]["snr_db"] > 10
    assert main(["--target", "coreml", "--int8", "--int8-variant", "dynamic"]) == 2
    assert main(["--target", "onnx", "--int8-variant", "dynamic"]) == 2
