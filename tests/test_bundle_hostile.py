"""Hostile schema v2 bundles, built (tampered) in the test, never committed: containment
(symlinks, unlisted files, ONNX external data), graphs that disagree with the manifest, and the
one schema check (one line: field, expected, got). Each is refused by ``Generator.load`` and by
``lrf-export --check``."""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from bundle_factory import copy_bundle, denoise_model, read, shared_bundle, write
from lrf.exporter.check import check_bundle
from lrf.runtime import ContainmentError, Generator, ManifestError, scheduler


@pytest.fixture(scope="module")
def bundle(vivid_checkpoint, tmp_path_factory):
    return shared_bundle(tmp_path_factory, vivid_checkpoint)


@pytest.fixture
def copy(bundle, tmp_path):
    return copy_bundle(bundle, tmp_path / "b")


def _refused(path, match, exc=ValueError, check=True):
    """Generator.load and check_bundle both refuse ``path`` with one line matching ``match``."""
    loaders = [lambda: Generator.load(path, preload=True).close()]
    if check:
        loaders.append(lambda: check_bundle(path))
    for load in loaders:
        with pytest.raises(exc, match=match) as e:
            load()
        assert "\n" not in str(e.value), str(e.value)
    return str(e.value)


# ---------------------------------------------------------------------------------- containment
def test_symlinked_graph_outside_is_refused(copy, tmp_path):
    outside = tmp_path / "secret" / "denoise.onnx"
    outside.parent.mkdir()
    os.replace(copy / "denoise.onnx", outside)       # identical bytes: checksum would pass
    os.symlink(outside, copy / "denoise.onnx")
    msg = _refused(copy, "bundle entry denoise.onnx is a symlink", ContainmentError)
    assert "secret" not in msg                        # nothing about the outside file


def test_symlinked_golden_folder_is_refused(copy, tmp_path):
    os.replace(copy / "golden", tmp_path / "elsewhere")
    os.symlink(tmp_path / "elsewhere", copy / "golden")
    msg = _refused(copy, "bundle entry golden is a symlink", ContainmentError)
    assert "elsewhere" not in msg


def test_symlink_to_a_file_inside_is_refused_too(copy):
    os.remove(copy / "decoder.onnx")
    os.symlink("denoise.onnx", copy / "decoder.onnx")
    _refused(copy, "decoder.onnx is a symlink", ContainmentError)


@pytest.mark.parametrize("extra", ["notes.txt", "golden/extra.f32", ".DS_Store", "empty_dir/"])
def test_unlisted_entry_is_refused(copy, extra):
    if extra.endswith("/"):
        (copy / extra).mkdir()
    else:
        (copy / extra).write_bytes(b"x")
    _refused(copy, f"bundle entry {extra.rstrip('/')} is not listed in manifest.json",
             ContainmentError)


def _external(copy, location="decoder.weights"):
    """decoder.onnx rewritten to keep its tensors in an external data file."""
    model = onnx.load(str(copy / "decoder.onnx"))
    onnx.save(model, str(copy / "decoder.onnx"), save_as_external_data=True,
              all_tensors_to_one_file=True, location=location, size_threshold=0)
    return model


def test_unlisted_external_data_is_refused(copy):
    _external(copy)
    m = read(copy)
    m["files"] = _table(copy)
    del m["files"]["decoder.weights"]                 # the graph file is listed, its data not
    write(copy, m, refresh=False)
    _refused(copy, "bundle entry decoder.weights is not listed", ContainmentError)


def test_external_data_not_declared_by_the_graph_is_refused(copy):
    _external(copy)
    write(copy, read(copy))                           # listed in files, not in external_data
    _refused(copy, r"graph decoder \(decoder.onnx\) reads external data 'decoder.weights'",
             ContainmentError)


def test_declared_external_data_loads_and_is_verified(copy):
    _external(copy)
    m = read(copy)
    m["graphs"]["decoder"]["external_data"] = ["decoder.weights"]
    write(copy, m)
    with Generator.load(copy) as gen:
        assert gen.generate(0, 1, steps=2).shape == (32, 32, 3)
    data = bytearray((copy / "decoder.weights").read_bytes())
    data[len(data) // 2] ^= 0x55                      # damage the weights, not the graph file
    (copy / "decoder.weights").write_bytes(bytes(data))
    _refused(copy, "bundle file decoder.weights: sha256 mismatch")


def test_external_data_outside_the_bundle_is_refused(copy, tmp_path):
    model = onnx.load(str(copy / "decoder.onnx"))
    onnx.save(model, str(tmp_path / "decoder.onnx"), save_as_external_data=True,
              all_tensors_to_one_file=True, location="w.bin", size_threshold=0)
    raw = (tmp_path / "decoder.onnx").read_bytes().replace(b"w.bin", b"../w.")
    (copy / "decoder.onnx").write_bytes(raw)
    write(copy, read(copy))
    _refused(copy, r"reads external data '../w.'", ContainmentError)


def _table(copy):
    from lrf.exporter.writer import file_table

    return file_table(copy)


# ---------------------------------------------------------------------------------- graph I/O
def _fake_denoise(path, out_type=TensorProto.FLOAT, out_shape=("batch", 4, 4, 4), reduce=None):
    """A 'denoise' file with the manifest's inputs whose output has another dtype or shape:
    ``reduce="static"`` [1, 4, 4, 1]; ``"dynamic"`` latent[:K] (K = window length), i.e.
    [1, 4, 4, 4] for a batch of 2 stepwise: wrong, but both broadcast against [B, 4, 4, 4]."""
    nodes = [helper.make_node("Identity", ["latent"], ["z"])]
    if reduce == "static":
        nodes.append(helper.make_node("ReduceMean", ["z", "axes"], ["z2"], keepdims=1))
    elif reduce == "dynamic":
        nodes += [helper.make_node("Shape", ["timesteps"], ["n1"]),
                  helper.make_node("Sub", ["n1", "one"], ["k"]),
                  helper.make_node("Slice", ["z", "zero", "k", "zero"], ["z2"])]
    last = "z2" if reduce else "z"
    nodes.append(helper.make_node("Cast", [last], ["denoised"], to=out_type))
    inits = [helper.make_tensor("axes", TensorProto.INT64, [2], [0, 3]),
             helper.make_tensor("zero", TensorProto.INT64, [1], [0]),
             helper.make_tensor("one", TensorProto.INT64, [1], [1])]
    onnx.save(denoise_model(nodes, inits, 4, 4, out_type, out_shape), str(path))


def test_graph_returning_float64_is_refused_at_open(copy):
    _fake_denoise(copy / "denoise.onnx", TensorProto.DOUBLE)
    write(copy, read(copy))
    _refused(copy, r"denoise.onnx: output 'denoised' is tensor\(double\) .* manifest says float32")


def test_graph_with_static_wrong_shape_is_refused_at_open(copy):
    _fake_denoise(copy / "denoise.onnx", out_shape=(1, 4, 4, 1), reduce="static")
    write(copy, read(copy))
    _refused(copy, r"output 'denoised' is float32 \[1, 4, 4, 1\] in the graph")


def test_graph_returning_wrong_broadcastable_shape_is_refused_per_call(copy):
    _fake_denoise(copy / "denoise.onnx", out_shape=("k", 4, 4, 4), reduce="dynamic")
    write(copy, read(copy))
    with Generator.load(copy) as gen:
        with pytest.raises(ValueError, match=r"output 'denoised' \(latent\) has batch=1 but "
                                             r"another tensor has batch=2"):
            gen.generate_batch([0, 1], [0, 1], steps=2, mode="stepwise")


def test_graph_input_types_must_match(copy):
    m = read(copy)
    m["graphs"]["denoise"]["inputs"][2]["dtype"] = "float32"    # label is int32 in the file
    write(copy, m)
    _refused(copy, r"input 'label' is int32 \['batch'\] in the graph, the manifest says float32")


# ---------------------------------------------------------------------------------- schema
def _set(m, path, value):
    *parents, last = path
    for k in parents:
        m = m[k]
    if value is KeyError:
        del m[last]
    else:
        m[last] = value


FIELDS = [
    (("latent", "height"), "4", r"latent.height: expected int in 1..4096, got '4'"),
    (("latent", "channels"), 0, r"latent.channels: expected int in 1..4096, got 0"),
    (("sampling", "steps"), 5000, r"sampling.steps: expected int in 1..1000, got 5000"),
    (("sampling", "guidance"), 1e39, r"sampling.guidance: expected number in \[0.0, 20.0\]"),
    (("sampling", "mode"), "turbo", r"sampling.mode: expected one of \['fused', 'stepwise'\]"),
    (("sampling", "mode"), KeyError, r"sampling.mode: missing"),
    (("sampling", "shift"), -1, r"sampling.shift: expected number in \(0.0"),
    (("model", "guidance_distilled"), "no", r"model.guidance_distilled: expected true or false"),
    (("model", "guidance_distilled"), KeyError, r"model.guidance_distilled: missing"),
    (("classes",), [], r"classes: expected a list of 1..1000 distinct non-empty strings"),
    (("null_class",), 3, r"null_class: expected int in 10..10, got 3"),
    (("codec", "latent_std"), [1.0, 1.0, 1.0, 0.0], r"codec.latent_std: expected 4 finite"),
    (("target",), "tflite", r"target: expected one of \['onnx'"),
    (("scheduler", "type"), "ddim", r"scheduler.type: expected one of \['rectified_flow_euler'\]"),
    (("scheduler", "shift"), 2.0, r"scheduler.shift: expected 1.0 \(= sampling.shift\)"),
    (("scheduler", "timesteps", "3"), [1.0, 0.6, 0.3, 0.0],
     r"scheduler.timesteps.3\[1\]: expected 0.6666666865348816 \(section 3 formula\), got 0.6"),
    (("rng", "name"), "mt19937", r"rng.name: expected one of \['splitmix64-boxmuller'\]"),
    (("rng", "version"), 2, r"rng.version: expected int in 1..1, got 2"),
    (("graphs", "decoder"), KeyError, r"graphs.decoder: missing"),
    (("graphs", "denoise", "window", "min"), 0, r"graphs.denoise.window.min: expected int in 1"),
    (("graphs", "denoise", "window"), KeyError, r"graphs.denoise.window: missing"),
    (("graphs", "denoise", "inputs", 1, "role"), "time",
     r"graphs.denoise.inputs\[1\].role: expected one of"),
    (("graphs", "denoise", "inputs", 0, "role"), "image",
     r"graphs.denoise.inputs: expected roles \['guidance', 'label', 'latent', 'timesteps'\]"),
    (("graphs", "denoise", "file"), "../denoise.onnx",
     r"graphs.denoise.file: expected a relative path inside the bundle"),
    (("files", "denoise.onnx", "sha256"), "XYZ", r"files.denoise.onnx.sha256: expected 64"),
    (("files", "denoise.onnx", "size"), -1, r"files.denoise.onnx.size: expected int in 0"),
]


@pytest.mark.parametrize("path,value,match", FIELDS, ids=[".".join(map(str, f[0])) + "=" +
                                                           str(f[1])[:12] for f in FIELDS])
def test_mistyped_or_missing_field_is_one_line(copy, path, value, match):
    m = read(copy)
    _set(m, path, value)
    write(copy, m, refresh=False)
    msg = _refused(copy, match, ManifestError)
    assert msg.startswith("manifest.json: ")


def test_strict_json_and_not_an_object(copy):
    text = (copy / "manifest.json").read_text().replace('"guidance": 3.0', '"guidance": NaN', 1)
    (copy / "manifest.json").write_text(text)
    _refused(copy, r"manifest.json: not valid JSON \(non-standard constant NaN\)")
    dup = (copy / "manifest.json").read_text().replace('"guidance": NaN', '"guidance": 3.0, "guidance": 9.0', 1)
    (copy / "manifest.json").write_text(dup)      # readers would disagree on which one wins
    _refused(copy, "not valid JSON \\(duplicate key 'guidance'\\)")
    (copy / "manifest.json").write_text("[1, 2]")
    _refused(copy, "schema: expected 'lrf-bundle', got 'list'")


def test_v1_bundle_is_refused_with_one_line_to_re_export(copy):
    m = read(copy)
    m["schema_version"] = 1
    write(copy, m, refresh=False)
    _refused(copy, r"^bundle schema v1 is no longer supported by this runtime \(schema v3\); "
                   "re-export it with lrf-export$")


def test_newer_schema_is_refused(copy):
    m = read(copy)
    m["schema_version"] = 4
    write(copy, m, refresh=False)
    _refused(copy, "schema version 4 is newer than this runtime supports")


def test_missing_and_corrupt_files(copy, tmp_path):
    data = bytearray((copy / "denoise.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / "denoise.onnx").write_bytes(bytes(data))
    _refused(copy, "bundle file denoise.onnx: sha256 mismatch")
    os.remove(copy / "denoise.onnx")
    _refused(copy, "bundle file denoise.onnx is missing", FileNotFoundError)
    with pytest.raises(FileNotFoundError, match="not a directory"):
        Generator.load(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="no manifest.json"):
        Generator.load(tmp_path)


def test_fixed_window_graph_needs_divisible_n(copy):
    """A Core ML/ExecuTorch-style entry (window fixed at K = 2) is honoured: N must split."""
    m = read(copy)
    m["graphs"]["denoise"]["window"] = {"min": 2, "max": 2}
    write(copy, m, refresh=False)
    with Generator.load(copy) as gen:
        seen = []
        gen.generate(0, 0, steps=4, mode="stepwise", on_step=lambda i, n: seen.append(i))
        assert seen == [2, 4]
        with pytest.raises(ValueError, match="5 steps cannot be split into windows of 2"):
            gen.generate(0, 0, steps=5)


def test_check_cli_one_line_no_traceback(copy, capsys):
    from lrf.exporter.cli import main

    (copy / "stray.bin").write_bytes(b"\0")
    rc = main(["--check", str(copy)])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and "stray.bin is not listed" in err and "Traceback" not in err
    assert len(err.splitlines()) == 1, err


def test_guidance_bound_matches_float32():
    with np.errstate(over="ignore"):
        assert np.isinf(np.float32(1e39)) and np.isfinite(1e39)
    with pytest.raises(ValueError, match="finite in float32"):
        scheduler.check_guidance(1e39)
    assert scheduler.check_guidance(20) == 20.0
