"""One default model everywhere (lrf/defaults.py): lrf-generate without --bundle, lrf-export,
LRFPipeline.from_pretrained(), lrf-bench and Generator.load() all start from the same model,
and the prebuilt default bundle was exported from the default checkpoint. Bundles record where
their checkpoint came from without the exporting machine's absolute paths."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent


def _default_bundle_manifest() -> dict:
    from lrf.runtime.generator import default_bundle

    return json.loads((Path(default_bundle()) / "manifest.json").read_text())


def test_every_default_names_the_one_model():
    from lrf.benchmarks.plan import default_checkpoint
    from lrf.defaults import DEFAULT_BUNDLE, DEFAULT_MODEL
    from lrf.models.checkpoint import DEFAULT_CHECKPOINT
    from lrf.runtime.generator import DEFAULT_BUNDLE as RUNTIME_BUNDLE

    assert DEFAULT_CHECKPOINT == REPO / "models" / "weights" / DEFAULT_MODEL
    assert default_checkpoint().resolve() == DEFAULT_CHECKPOINT
    assert RUNTIME_BUNDLE == DEFAULT_BUNDLE, "runtime/generator.py: use lrf.defaults.DEFAULT_BUNDLE"


def test_default_bundle_was_exported_from_the_default_checkpoint():
    """Measured: the default checkpoint's digest against the one the bundle's manifest records,
    so switching one default without the other fails here."""
    from lrf.models.checkpoint import DEFAULT_CHECKPOINT, checkpoint_sha256

    m = _default_bundle_manifest()
    assert m["source_checkpoint"]["sha256"] == checkpoint_sha256(DEFAULT_CHECKPOINT)
    # the prebuilt default is the guidance-distilled student, and so is the default checkpoint
    cfg = json.loads((DEFAULT_CHECKPOINT / "lrf.json").read_text())["config"]
    assert m["model"]["guidance_distilled"] is bool(cfg.get("guidance_embed")) is True


def test_pipeline_and_load_checkpoint_default_to_the_bundle_source():
    import torch

    from lrf.models.checkpoint import load_checkpoint
    from lrf.models.reference import LRFPipeline

    source = REPO / _default_bundle_manifest()["source_checkpoint"]["path"]
    want = load_checkpoint(source).model.state_dict()
    for model in (LRFPipeline.from_pretrained().transformer, load_checkpoint().model):
        got = model.state_dict()
        assert got.keys() == want.keys()
        assert all(torch.equal(got[k], want[k]) for k in want)


def test_generate_cli_without_bundle_uses_the_default_checkpoint(tmp_path):
    """lrf-generate's PyTorch path with no --checkpoint draws what the default bundle's source
    checkpoint draws (1 step: the turbo default)."""
    from PIL import Image

    from lrf.models.cli import main

    source = str(REPO / _default_bundle_manifest()["source_checkpoint"]["path"])
    common = ["--class", "cat", "--seed", "3", "--steps", "1", "--no-progress"]
    assert main([*common, "--out", str(tmp_path / "default.png")]) == 0
    assert main([*common, "--checkpoint", source, "--out", str(tmp_path / "source.png")]) == 0
    a, b = (np.asarray(Image.open(tmp_path / f"{n}.png")) for n in ("default", "source"))
    assert np.array_equal(a, b)


def test_export_default_out_is_named_after_the_default_model(tmp_path, monkeypatch):
    from lrf.defaults import DEFAULT_MODEL
    from lrf.exporter.cli import _targets_and_outs, build_parser

    monkeypatch.chdir(tmp_path)
    _, outs = _targets_and_outs(build_parser().parse_args(["--target", "all", "--int8"]))
    assert all(Path(o).parent.name == f"{DEFAULT_MODEL}-int8" for o in outs if o), outs


def test_bench_on_the_default_bundle_exports_nothing():
    """The README's lrf-bench command: the prebuilt bundle and its own checkpoint's PyTorch
    baseline, no export into the cache (which would take minutes)."""
    from lrf.benchmarks.cli import _prepare, build_parser
    from lrf.models.checkpoint import DEFAULT_CHECKPOINT
    from lrf.runtime.generator import default_bundle

    args = build_parser().parse_args(["--device", "cpu", "--ram-limit", "3G", "--bundle",
                                      os.path.relpath(default_bundle())])
    ckpt, _, plan, exports = _prepare(args, lambda m: None)
    assert exports == {} and plan
    assert Path(ckpt.path).resolve() == DEFAULT_CHECKPOINT


# --------------------------------------------- source_checkpoint.path: no absolute path leaks
def test_checkpoint_label_is_relative_inside_the_project_and_a_name_outside(tmp_path):
    from lrf.exporter.writer import checkpoint_label

    assert checkpoint_label(REPO / "models" / "weights" / "cifar10-turbo") == \
        "models/weights/cifar10-turbo"
    assert checkpoint_label(tmp_path / "runs" / "turbo") == "turbo"


def test_tiny_export_records_no_absolute_path(tmp_path_factory, tiny_checkpoint):
    from bundle_factory import shared_bundle

    m = json.loads((shared_bundle(tmp_path_factory, tiny_checkpoint) / "manifest.json")
                   .read_text())
    path = m["source_checkpoint"]["path"]
    assert path == Path(tiny_checkpoint).name and not os.path.isabs(path), path
    assert str(tmp_path_factory.getbasetemp()) not in json.dumps(m)
