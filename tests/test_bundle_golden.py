"""Golden files of a schema v2 bundle: their uniform shape, determinism (the runtime reproduces
what it wrote: that proves determinism only), an independent PyTorch reference computed here,
and ``lrf-export --check`` failing on a golden file that no longer matches."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from bundle_factory import copy_bundle, read, reference_images, shared_bundle, write
from lrf import prng
from lrf.exporter import golden
from lrf.exporter.check import BundleCheckError, check_bundle
from lrf.runtime import Generator, open_bundle, scheduler


@pytest.fixture(scope="module")
def bundle(vivid_checkpoint, tmp_path_factory):
    return shared_bundle(tmp_path_factory, vivid_checkpoint)


@pytest.fixture(scope="module")
def opened(bundle):
    return open_bundle(bundle)


def test_every_entry_has_one_shape_and_seeds_are_strings(opened):
    g = opened.manifest["golden"]
    for key, entry in g["files"].items():
        assert tuple(sorted(entry)) == tuple(sorted(golden.ENTRY_KEYS)), key
        assert key == (entry["content"] if entry["case"] is None
                       else f"{entry['case']}.{entry['content']}")
        assert entry["file"] in opened.manifest["files"]
    cases = g["cases"]
    assert sorted(cases) == ["generate_3", "generate_50", "img2img_3", "inpaint_3"]
    for case in cases.values():
        assert isinstance(case["seed"], str) and int(case["seed"]) >= 0
    assert cases["img2img_3"]["modes"] == ["fused"] and cases["inpaint_3"]["modes"] == ["stepwise"]
    assert "img2img_3.image_fused" in g["files"] and "inpaint_3.image_stepwise" in g["files"]
    for n in (3, 50):
        assert cases[f"generate_{n}"]["modes"] == ["fused", "stepwise"]
        for mode in ("fused", "stepwise"):
            assert f"generate_{n}.image_{mode}" in g["files"]
            assert f"generate_{n}.latent_final_{mode}" in g["files"]
    vectors = golden.read_file(opened, "rng_vectors")["vectors"]
    assert [v["seed"] for v in vectors] == ["0", "1", "42", "18446744073709551615"]
    assert all(len(v["normal"]) == 9 for v in vectors)            # odd count


def test_runtime_settings_recorded(opened):
    rt = opened.manifest["golden"]["runtime"]
    import onnxruntime

    assert rt == {"backend": "onnxruntime", "version": onnxruntime.__version__,
                  "graph_optimization_level": "all", "intra_op_threads": 1,
                  "inter_op_threads": 1, "execution_provider": "CPUExecutionProvider",
                  "disable_quant_qdq": {"static_qdq": "0", "other": "1"}}


def test_odd_normal_count_is_a_prefix():
    for seed in (0, 2**64 - 1):
        nine, ten = prng.normal(seed, 9), prng.normal(seed, 10)
        np.testing.assert_array_equal(nine, ten[:9])


def test_determinism_runtime_reproduces_its_own_files(bundle, opened):
    """Determinism only: the same runtime, with the recorded settings, re-makes each file."""
    files = opened.manifest["golden"]["files"]
    rt = opened.manifest["golden"]["runtime"]
    with Generator.load(bundle, threads=rt["intra_op_threads"],
                        optimization=rt["graph_optimization_level"]) as gen:
        for n in (3, 50):
            case = f"generate_{n}"
            c = opened.manifest["golden"]["cases"][case]
            noise = gen.noise([int(c["seed"])])
            np.testing.assert_array_equal(golden.read_file(opened, f"{case}.noise"), noise)
            np.testing.assert_array_equal(golden.read_file(opened, f"{case}.timesteps"),
                                          scheduler.timesteps(n, gen.shift))
            y, g = np.asarray([c["label"]], np.int32), np.asarray([c["guidance"]], np.float32)
            for mode in c["modes"]:
                z = gen.sample_latents(noise, y, g, n, mode=mode)
                np.testing.assert_array_equal(
                    golden.read_file(opened, f"{case}.latent_final_{mode}"), z)
                np.testing.assert_array_equal(
                    golden.read_file(opened, f"{case}.image_{mode}"), gen.decode(z)[0])
    assert files["generate_50.image_fused"]["tolerance"] == {"metric": "psnr_db", "bar": 40.0}


def test_runtime_and_reference_files_against_fresh_pytorch(bundle, opened, vivid_checkpoint):
    """Independent reference: PyTorch run here, not read from the bundle."""
    cases = opened.manifest["golden"]["cases"]
    with Generator.load(bundle) as gen:
        for n in (3, 50):
            c = cases[f"generate_{n}"]
            want = reference_images(vivid_checkpoint, [c["label"]], [int(c["seed"])], n)[0]
            stored = golden.read_file(opened, f"generate_{n}.reference_image")
            assert golden.judge({"metric": "psnr_db", "bar": 60.0}, want, stored)[0]
            for mode in ("fused", "stepwise"):
                ok, value = golden.judge({"metric": "psnr_db", "bar": 40.0}, want,
                                         gen.generate(c["label"], int(c["seed"]), steps=n,
                                                      guidance=c["guidance"], mode=mode))
                assert ok, (n, mode, value)


def test_edit_reference_files_follow_the_edit_rules(opened, vivid_checkpoint):
    """The stored img2img/inpaint references equal lrf.models.reference.edit run here, and
    inpainting keeps the kept half close to the input (the mask is a KEEP mask)."""
    from lrf.models.checkpoint import load_checkpoint
    from lrf.models.reference import edit, to_uint8

    ckpt = load_checkpoint(vivid_checkpoint)
    for kind in ("img2img", "inpaint"):
        c = opened.manifest["golden"]["cases"][f"{kind}_3"]
        image = golden.read_file(opened, f"{kind}_3.input_image")
        mask = golden.read_file(opened, "inpaint_3.mask") if kind == "inpaint" else None
        want = to_uint8(edit(ckpt, image, c["label"], int(c["seed"]), c["strength"], mask,
                             steps=c["steps"], guidance=c["guidance"]))[0]
        np.testing.assert_array_equal(golden.read_file(opened, f"{kind}_3.reference_image"),
                                      want)
    assert (mask[:, :16] == 255).all() and (mask[:, 16:] == 0).all()


def test_check_passes_on_the_bundle(bundle):
    report = check_bundle(bundle)
    assert "containment and checksums ok" in report
    assert "golden generate_50.image_fused: psnr_db 100" in report
    assert "golden inpaint_3.image_stepwise: psnr_db 100" in report
    assert "golden inpaint_3.reference_image: psnr_db" in report      # runtime vs PyTorch


def test_check_fails_on_a_golden_image_that_no_longer_matches(bundle, tmp_path):
    b = copy_bundle(bundle, tmp_path / "b")
    entry = read(b)["golden"]["files"]["generate_3.image_fused"]
    img = np.asarray(Image.open(b / entry["file"])).copy()
    img[::2] = 255 - img[::2]                             # a different image, same shape
    Image.fromarray(img).save(b / entry["file"])
    write(b, read(b))                                     # checksums refreshed: only golden fails
    with pytest.raises(BundleCheckError, match=r"golden generate_3.image_fused: psnr_db .* misses "
                                               r"the bar 40.0"):
        check_bundle(b)


def test_check_refuses_a_malformed_golden_entry(bundle, tmp_path):
    b = copy_bundle(bundle, tmp_path / "b")
    m = read(b)
    del m["golden"]["files"]["generate_3.noise"]["tolerance"]
    write(b, m)
    with pytest.raises(ValueError, match=r"golden.files.generate_3.noise: expected keys"):
        check_bundle(b)
    assert json.loads((b / "manifest.json").read_text())["schema_version"] == 2
