"""The real text encoder of a shipped text bundle: MiniLM (``lrf.models.text``, 22.7M
parameters) exported once for this module through ``lrf-export``'s text path with ``--int8``,
its variants measured against the fp32 PyTorch encoder by the 0.99 cosine gate (on fewer
prompts than the exporter's 1,000, to keep CI short: the rule is the same), then re-verified
by ``lrf-export --check``. ``test_text_bundle.py`` covers the rest of schema v3 on a tiny BERT."""

from __future__ import annotations

import numpy as np
import pytest

from bundle_factory import read
from conftest import make_text_checkpoint

GATE_PROMPTS = 200


@pytest.fixture(scope="module")
def minilm_int8(tmp_path_factory):
    from lrf.exporter.text_export import export_text_bundle
    from lrf.models.checkpoint import load_checkpoint

    root = tmp_path_factory.mktemp("minilm")
    ckpt = make_text_checkpoint(root / "turbo")
    return export_text_bundle(load_checkpoint(ckpt), root / "bundle", int8=True,
                              text_prompts=GATE_PROMPTS, parity_images=2, log=lambda s: None)


@pytest.mark.slow
def test_minilm_int8_text_encoder_passes_the_cosine_gate(minilm_int8):
    from lrf.exporter.onnx_text import VARIANTS

    m = read(minilm_int8)
    assert m["conditioning"]["text_dim"] == 384
    gate = m["parity"]["text_encoder"]
    assert gate["prompts"] == GATE_PROMPTS and gate["min"] >= 0.99
    q = m["graphs"]["text_encoder"]["quantization"]
    cands = {c["name"]: c for c in q["selection"]["candidates"]}
    assert list(cands) == list(VARIANTS)
    assert cands[q["variant"]]["passed"] and all(
        c["bytes"] >= cands[q["variant"]]["bytes"] for c in cands.values() if c["passed"])
    # int8 MatMuls and table: about a quarter of MiniLM's 90 MB of fp32 weights
    size = (minilm_int8 / "text_encoder.onnx").stat().st_size
    assert size == cands[q["variant"]]["bytes"] and size < 26e6


@pytest.mark.slow
def test_minilm_bundle_reproduces_its_golden_files(minilm_int8):
    from lrf.exporter.check import check_bundle
    from lrf.runtime import Generator

    report = check_bundle(minilm_int8)
    assert "golden text_embedding.reference_text_pooled: cosine_min" in report
    with Generator.load(minilm_int8, threads=1) as gen:
        a = gen.prompt_cache().one("smiling cat face")["text_pooled"]
        b = gen.prompt_cache().one("Smiling CAT face!")["text_pooled"]
        c = gen.prompt_cache().one("pizza slice")["text_pooled"]
    cos = lambda x, y: float((x * y).sum() / np.linalg.norm(x) / np.linalg.norm(y))  # noqa: E731
    assert cos(a, b) > cos(a, c)   # MiniLM's embedding means something; a random one would not
