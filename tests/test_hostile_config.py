"""A saved config is untrusted input: every bad field is reported, one line each."""

from __future__ import annotations

import json

import pytest

from lrf.models.config import PRESETS, ConfigError, LRFConfig


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_round_trip(name):
    cfg = PRESETS[name]
    assert LRFConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_turbo_fields_are_kept():
    cfg = LRFConfig.from_dict({**PRESETS["tiny"].to_dict(), "guidance_embed": True,
                               "step_embed": True})
    assert cfg.guidance_embed and cfg.step_embed and cfg.guidance_distilled


@pytest.mark.parametrize("bad,field,says", [
    ({"dim": "128"}, "dim", "got '128' (str)"),
    ({"heads": 4.0}, "heads", "(float)"),
    ({"num_blocks": True}, "num_blocks", "(bool)"),
    ({"dim": 10**30}, "dim", "in [1, 8192]"),
    ({"latent_size": 0}, "latent_size", "in [1, 1024]"),
    ({"recursions": -1}, "recursions", "got -1"),
    ({"conv_kernel": 4}, "conv_kernel", "must be odd"),
    ({"freq_dim": 33}, "freq_dim", "must be even"),
    ({"dim": 130, "heads": 4}, "dim", "divisible by heads"),
    ({"guidance_embed": "yes"}, "guidance_embed", "true or false"),
    ({"step_embed": True}, "step_embed", "needs guidance_embed"),
    ({"softmax_max_tokens": None}, "softmax_max_tokens", "(NoneType)"),
])
def test_one_bad_field(bad, field, says):
    with pytest.raises(ConfigError) as e:
        LRFConfig.from_dict({**PRESETS["tiny"].to_dict(), **bad})
    assert len(e.value.problems) == 1
    assert e.value.problems[0].startswith(f"LRFConfig.{field}: ") and says in str(e.value)
    assert "\n" not in str(e.value)


def test_every_bad_field_is_reported_once():
    with pytest.raises(ConfigError) as e:
        LRFConfig.from_dict({"dim": "x", "heads": [], "mlp_hidden": 1e9, "colour": "red",
                             "__class__": "evil"})
    lines = e.value.problems
    assert len(lines) == 5, lines
    assert sum("unknown key" in ln for ln in lines) == 2
    assert {ln.split(":")[0] for ln in lines if "unknown" not in ln} == {
        "LRFConfig.dim", "LRFConfig.heads", "LRFConfig.mlp_hidden"}


@pytest.mark.parametrize("d", [None, [], "cifar10", 3])
def test_not_an_object(d):
    with pytest.raises(ConfigError, match="expected a JSON object"):
        LRFConfig.from_dict(d)


def test_direct_construction_is_validated_too():
    with pytest.raises(ValueError, match=r"LRFConfig.dim: .*got 'wide'"):
        LRFConfig(dim="wide")
