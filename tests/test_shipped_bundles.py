"""The prebuilt bundles in models/bundles/ stay in sync with the shipped checkpoints and still
verify: checksums and containment through lrf.runtime, every golden case re-run, and an image
compared with the PyTorch reference measured here (not read from the bundle)."""

import json
import os

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = {"cifar10-turbo-int8": "cifar10-turbo", "cifar10-int8": "cifar10"}


def _bundle(name):
    return os.path.join(REPO, "models", "bundles", name)


@pytest.mark.parametrize("bundle,checkpoint", sorted(SHIPPED.items()))
def test_bundle_was_exported_from_the_shipped_checkpoint(bundle, checkpoint):
    from lrf.models.checkpoint import checkpoint_sha256

    with open(os.path.join(_bundle(bundle), "manifest.json")) as fh:
        m = json.load(fh)
    want = checkpoint_sha256(os.path.join(REPO, "models", "weights", checkpoint))
    assert m["source_checkpoint"]["sha256"] == want, (
        f"models/bundles/{bundle} was exported from another checkpoint than "
        f"models/weights/{checkpoint}: regenerate it (README, 'Regenerating the prebuilt bundles')")
    assert m["target"] == "onnx" and m["precision"] == "int8" and m["schema_version"] == 2
    # the 4 MB target, measured on disk (every file in the folder, not the manifest's sizes)
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(_bundle(bundle))
               for f in files)
    assert size <= 4_000_000, f"models/bundles/{bundle} is {size:,} bytes"


@pytest.mark.parametrize("bundle", sorted(SHIPPED))
def test_bundle_verifies_and_reproduces_its_golden_files(bundle):
    from lrf.exporter.check import check_bundle

    report = check_bundle(_bundle(bundle))   # raises on any file or golden case that misses
    with open(os.path.join(_bundle(bundle), "manifest.json")) as fh:
        golden = json.load(fh)["golden"]
    measured = {line.split()[1].rstrip(":") for line in report.splitlines()
                if line.startswith("golden ") and "(bar " in line}
    # every golden file of a case that has a tolerance (inputs have none) was re-run and
    # measured here, none skipped
    want = {k for k, e in golden["files"].items()
            if e.get("case") is not None and e.get("tolerance") is not None}
    assert want and want <= measured, sorted(want - measured)
    assert "not re-run" not in report and "checksums ok" in report


def test_default_bundle_matches_the_pytorch_reference():
    from lrf.models.checkpoint import load_checkpoint
    from lrf.models.reference import generate, to_uint8
    from lrf.runtime import Generator

    with Generator.load() as gen:             # no argument: the prebuilt turbo bundle
        assert gen.manifest["model"]["guidance_distilled"] is True
        img = gen.generate("cat", seed=7)
        steps = gen.manifest["sampling"]["steps"]
    ck = load_checkpoint(os.path.join(REPO, "models", "weights", "cifar10-turbo"))
    ref = to_uint8(generate(ck, [ck.class_index("cat")], [7], steps=steps))[0]
    mse = np.mean((img.astype(np.float64) - ref) ** 2)
    assert 10 * np.log10(255.0 ** 2 / max(mse, 1e-12)) >= 25.0   # the int8 bar (BUNDLE.md 5)


def test_sync_check_fails_when_a_checkpoint_changes(tmp_path):
    """Change one byte of a copy of the shipped checkpoint: its digest no longer matches."""
    import shutil

    from lrf.models.checkpoint import checkpoint_sha256

    src = os.path.join(REPO, "models", "weights", "cifar10-turbo")
    dst = tmp_path / "ck"
    shutil.copytree(src, dst)
    before = checkpoint_sha256(dst)
    m = json.loads((dst / "lrf.json").read_text())
    m["sampling"]["steps"] = 2
    (dst / "lrf.json").write_text(json.dumps(m))
    with open(os.path.join(_bundle("cifar10-turbo-int8"), "manifest.json")) as fh:
        shipped = json.load(fh)["source_checkpoint"]["sha256"]
    assert before == shipped and checkpoint_sha256(dst) != shipped
