"""The parity gate itself (``lrf.exporter.parity.gate``), on runners made from PyTorch: one that
is the reference (passes, at the caps), and ones made worse in known ways (each fails its bar,
naming it). No export needed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lrf.exporter import parity
from lrf.exporter.calibration import record_encodings, record_trajectories
from lrf.models.checkpoint import load_checkpoint
from lrf.models.flow import euler_sample
from lrf.models.reference import from_uint8, to_uint8


class TorchRunner(parity.Runner):
    """The PyTorch reference behind the gate's Runner interface; ``harm`` makes it worse."""

    description = "pytorch (test)"

    def __init__(self, ckpt, window=(1, None), harm=None):
        self.ckpt, self.window, self.harm = ckpt, window, harm or {}

    @torch.no_grad()
    def denoise(self, latent, timesteps, label, guidance):
        z = euler_sample(self.ckpt.model, torch.from_numpy(latent), torch.from_numpy(label).long(),
                         ts=torch.from_numpy(timesteps), guidance=float(guidance[0]),
                         null_class=self.ckpt.config.null_class).numpy()
        return z + self.harm.get("denoise", 0.0)

    @torch.no_grad()
    def decode(self, latent):
        return to_uint8(self.ckpt.codec.decode(torch.from_numpy(latent) + self.harm.get("decoder", 0)))

    @torch.no_grad()
    def encode(self, image):
        return self.ckpt.codec.encode(from_uint8(image)).numpy() + self.harm.get("encoder", 0.0)


@pytest.fixture(scope="module")
def setup(vivid_checkpoint):
    ck = load_checkpoint(vivid_checkpoint)
    refs = {n: record_trajectories(ck, [1, 2, 3], [7, 8, 9], steps=n) for n in (2, 4)}
    return ck, refs, record_encodings(ck, refs[4].images)


def _gate(setup, runner, precision="fp32"):
    ck, refs, enc = setup
    return parity.gate(runner, refs, precision=precision, default_steps=4, encodings=enc,
                       fidelity_reason="not in this test")


def test_the_reference_itself_passes_at_the_caps(setup):
    res = _gate(setup, TorchRunner(setup[0]))
    assert res.passed and res.failures == []
    assert sorted(res.graphs) == ["decoder", "denoise", "encoder"]
    assert sorted(res.paths) == ["fused_2", "fused_4", "roundtrip", "stepwise_4"]
    for entry in [*res.graphs.values(), *res.paths.values(), res.class_fidelity]:
        assert {"metric", "value", "bar", "passed"} <= set(entry) and entry["passed"]
    assert res.graphs["decoder"]["value"] == parity.PSNR_CAP
    assert res.graphs["denoise"]["value"] < 1e-5       # the same sampler: rounding only
    assert res.class_fidelity["measured"] is False


@pytest.mark.parametrize("graph, size, failing", [
    ("denoise", 1e-2, {"denoise"}),       # velocity bar (and images stay fine at 1e-2)
    ("decoder", 0.5, {"decoder", "stepwise_4", "fused_2", "fused_4", "roundtrip"}),
    ("encoder", 0.05, {"encoder"}),
])
def test_a_worse_graph_fails_its_bar(setup, graph, size, failing):
    res = _gate(setup, TorchRunner(setup[0], harm={graph: size}))
    assert not res.passed
    named = {f.split(":")[0].split(" ")[0] for f in res.failures}   # the result's key
    assert failing <= named, res.failures
    assert any(graph in f for f in res.failures)


def test_int8_judges_steps_by_their_images(setup):
    """At the int8 bar a small velocity error passes (images are what is judged)."""
    res = _gate(setup, TorchRunner(setup[0], harm={"denoise": 1e-2}), precision="int8")
    assert res.passed, res.failures
    assert res.graphs["denoise"]["bar"] is None


def test_fixed_window_runners_are_measured_in_their_windows(setup):
    res = _gate(setup, TorchRunner(setup[0], window=(2, 2)))
    assert res.passed and res.graphs["denoise"]["window_steps"] == 2
    assert res.graphs["denoise"]["windows"] == 2          # 4 steps in windows of 2
    res = _gate(setup, TorchRunner(setup[0], window=(1, 1)))
    assert "fused_4" not in res.paths and "stepwise_4" in res.paths   # max 1: fused = stepwise


def test_result_shape_is_what_the_manifest_records(setup):
    res = _gate(setup, TorchRunner(setup[0]))
    m = res.manifest()
    assert set(m) == {"simulated", "measured_by", "paths", "class_fidelity", "passed", "failures"}
    assert m["simulated"] is False and m["measured_by"] == "pytorch (test)"
    import json
    json.dumps(m, allow_nan=False)                        # strict JSON
