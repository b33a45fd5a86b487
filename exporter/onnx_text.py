"""The ``text_encoder`` ONNX graph of a schema v3 text bundle: the frozen MiniLM prompt encoder
(``lrf.models.text.TextEncoder``), its int8 variants and the text parity gate.

    text_encoder(token_ids int64 [B,L], attention_mask int64 [B,L])
        -> text_pooled f32 [B,384]            (masked mean of the token states, L2-normalised)
           (+ text_tokens f32 [B,L,384]: the token states, padding rows zeroed, when the core
              cross-attends to the prompt)

Variants (``--int8``), each measured, the smallest one passing the gate is shipped:

* ``weight_only_int8``: every MatMul weight int8 (one scale per output column, folded to float
  at load: float32 compute) and the token embedding table int8 with one scale per row, gathered
  as int8 and scaled after the Gather (the table stays int8 in memory);
* ``weight_only_int8_emb4``: the same with the embedding table int4 (one scale per 32 values of
  a row, opset 21 blocked ``DequantizeLinear``, folded at load; each scale the one of
  ``amax * {0.5, 0.52, ..., 1.0} / 7`` with the least squared error of its block, which lifts
  MiniLM's worst gate cosine from 0.986 (``amax / 7``) to 0.990 at the same 19.1 MB);
* ``weight_only_int4_ffn``: the same with the feed-forward MatMul weights (the rectangular
  ones, hidden x intermediate) int4 in blocks of 32 and the attention projections (square) int8;
* ``weight_only_int4``: every MatMul weight int4 (blocks of 32 along the reduction axis).

Gate (on by default): cosine similarity of the graph's pooled embedding with the fp32 PyTorch
encoder's, on every one of :data:`GATE_PROMPTS` deterministic prompts (:func:`gate_prompts`), at
least :data:`COSINE_BAR`; the whole image path is gated again by the bundle's image bar.
"""

from __future__ import annotations

import io
import random
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper
from torch import nn

from lrf.exporter.metrics import COSINE_BAR, cosine  # noqa: F401  (torch-free; re-exported)
from lrf.exporter.onnx_int8_weights import INT4_BLOCK, weight_only

OPSET = 18
GATE_PROMPTS = 1000
VARIANTS = ("weight_only_int4", "weight_only_int4_ffn", "weight_only_int8_emb4",
            "weight_only_int8")  # smallest first


class TextEncoderGraph(nn.Module):
    """(token_ids [B,L] int64, attention_mask [B,L] int64) -> pooled [B,T] (, states [B,L,T])."""

    def __init__(self, encoder: nn.Module, tokens: bool):
        super().__init__()
        self.encoder, self.tokens = encoder, tokens

    def forward(self, token_ids, attention_mask):
        states, pooled = self.encoder(token_ids, attention_mask)
        if not self.tokens:
            return pooled
        return pooled, states * attention_mask.unsqueeze(-1).to(states.dtype)


def io_spec(text_dim: int, tokens: bool) -> tuple[list[dict], list[dict]]:
    """The manifest's tensor entries of ``text_encoder`` (``runtime/BUNDLE.md`` 2.2)."""
    def t(n, role, dtype, shape, dims):
        return {"name": n, "role": role, "dtype": dtype, "shape": list(shape), "dims": list(dims)}

    ids = ("batch", "tokens")
    outs = [t("pooled", "text_pooled", "float32", (-1, text_dim), ("batch", "text_dim"))]
    if tokens:
        outs.append(t("states", "text_tokens", "float32", (-1, -1, text_dim),
                      ("batch", "tokens", "text_dim")))
    return ([t("token_ids", "token_ids", "int64", (-1, -1), ids),
             t("attention_mask", "attention_mask", "int64", (-1, -1), ids)], outs)


def export_text_encoder(encoder: nn.Module, path: Path, tokens: bool) -> onnx.ModelProto:
    """Trace the encoder (TorchScript exporter: the BERT graph has no loop) to ``path``."""
    ids = torch.tensor([[101, 1037, 4937, 102], [101, 2000, 102, 0]])
    mask = (ids != 0).long()
    dyn = {"token_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"},
           "pooled": {0: "batch"}, "states": {0: "batch", 1: "tokens"}}
    outs = ["pooled", "states"] if tokens else ["pooled"]
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(TextEncoderGraph(encoder, tokens).eval(), (ids, mask), buf,
                          dynamo=False, opset_version=OPSET, input_names=list(dyn)[:2],
                          output_names=outs, dynamic_axes={k: dyn[k] for k in
                                                           ["token_ids", "attention_mask", *outs]})
    model = onnx.load_from_string(buf.getvalue())
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return model


def embedding_table(model: onnx.ModelProto, ids_input: str = "token_ids") -> str | None:
    """The name of the initializer the token ids index (the first Gather fed by them)."""
    inits = {i.name for i in model.graph.initializer}
    names = {ids_input}
    for node in model.graph.node:   # follow casts of the ids to the Gather
        if node.op_type in ("Cast", "Identity") and node.input[0] in names:
            names.add(node.output[0])
        if node.op_type in ("Gather", "GatherBlockQuantized") and len(node.input) > 1 and \
                node.input[1] in names and node.input[0] in inits:
            return node.input[0]
    return None


def quantize_embedding(model: onnx.ModelProto, bits: int) -> None:
    """The token embedding table [V,T] in int8 (one scale per row, scaled after the Gather) or
    int4 (blocks of INT4_BLOCK along a row, blocked DequantizeLinear at the top), in place."""
    g = model.graph
    name = embedding_table(model)
    if name is None:
        raise ValueError("text_encoder: no Gather of the token ids on a weight table")
    init = next(i for i in g.initializer if i.name == name)
    w = numpy_helper.to_array(init).astype(np.float32)                  # [V,T]
    g.initializer.remove(init)
    if bits == 8:
        amax = np.abs(w).max(axis=1, keepdims=True)
        scale = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)   # [V,1]
        q = np.clip(np.rint(w / scale), -127, 127).astype(np.int8)
        g.initializer.extend([numpy_helper.from_array(q, f"{name}_q"),
                              numpy_helper.from_array(scale, f"{name}_scale")])
        for k, node in enumerate(list(g.node)):
            if node.op_type == "Gather" and node.input[0] == name:
                idx, out = node.input[1], node.output[0]
                new = [helper.make_node("Gather", [f"{name}_q", idx], [f"{out}_q"], axis=0,
                                        name=f"{name}/gather_q{k}"),
                       helper.make_node("Gather", [f"{name}_scale", idx], [f"{out}_s"], axis=0,
                                        name=f"{name}/gather_s{k}"),
                       helper.make_node("Cast", [f"{out}_q"], [f"{out}_f"],
                                        to=onnx.TensorProto.FLOAT, name=f"{name}/cast{k}"),
                       helper.make_node("Mul", [f"{out}_f", f"{out}_s"], [out],
                                        name=f"{name}/scale{k}")]
                pos = list(g.node).index(node)
                g.node.remove(node)
                for j, n in enumerate(new):
                    g.node.insert(pos + j, n)
        return
    from lrf.exporter.onnx_int8_weights import _int4_tensor

    q, scale = int4_rows_mse(w, INT4_BLOCK)
    g.initializer.extend([_int4_tensor(q, f"{name}_q4"),
                          numpy_helper.from_array(scale, f"{name}_q4_scale")])
    g.node.insert(0, helper.make_node("DequantizeLinear", [f"{name}_q4", f"{name}_q4_scale"],
                                      [name], axis=1, block_size=INT4_BLOCK, name=f"{name}/dq"))
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            o.version = max(o.version, 21)
    model.ir_version = max(model.ir_version, 10)


def int4_rows_mse(w: np.ndarray, block: int, steps: int = 26) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int4 (-7..7) of a 2-D ``w`` [V,T] in blocks of ``block`` along each row: (q
    int8 [V,T], scale float32 [V,T/block]), each block's scale ``amax * a / 7`` for the ``a`` in
    ``linspace(0.5, 1, steps)`` with the least squared error (clipping a few outliers rounds
    the rest finer)."""
    blocks = w.reshape(w.shape[0], -1, block).astype(np.float32)        # [V, T/block, block]
    amax = np.abs(blocks).max(axis=2)
    best_err = np.full(amax.shape, np.inf)
    best = np.ones_like(amax)
    for a in np.linspace(0.5, 1.0, steps):
        s = np.where(amax > 0, amax * np.float32(a) / np.float32(7.0), 1.0).astype(np.float32)
        q = np.clip(np.rint(blocks / s[..., None]), -7, 7)
        err = ((q * s[..., None] - blocks) ** 2).sum(axis=2)
        better = err < best_err
        best_err, best = np.where(better, err, best_err), np.where(better, s, best)
    q = np.clip(np.rint(blocks / best[..., None]), -7, 7).astype(np.int8)
    return q.reshape(w.shape), best.astype(np.float32)


def build_variant(src: Path, dst: Path, variant: str) -> dict:
    """Write ``variant`` of the fp32 file ``src`` to ``dst``; returns its quantization record."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown text_encoder variant {variant!r}; choose one of {VARIANTS}")
    model = onnx.load(str(src))
    emb_bits = 8 if variant == "weight_only_int8" else 4
    quantize_embedding(model, emb_bits)   # first: weight_only skips Gather tables anyway
    if variant == "weight_only_int4_ffn":   # feed-forward int4, then the rest (attention) int8
        weight_only(model, 4, select=lambda name, w: w.ndim == 2 and w.shape[0] != w.shape[1])
    weight_only(model, 4 if variant == "weight_only_int4" else 8)
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))
    weight_type = {"weight_only_int4": "int4",
                   "weight_only_int4_ffn": "int4 feed-forward, int8 attention"}
    return {"method": "weight_only", "variant": variant,
            "weight_type": weight_type.get(variant, "int8"),
            "embedding": {"bits": emb_bits, "scale": "one per row" if emb_bits == 8 else
                          f"one per {INT4_BLOCK} values of a row (least squared error)"},
            "block_size": INT4_BLOCK, "per_channel": True,
            "activation_type": "float32 (weights dequantised; int8 embedding rows scaled after "
                               "the Gather)"}


# ------------------------------------------------------------------------------ the gate
GATE_WORDS = """cat dog face smiling grinning heart red blue green yellow purple orange black
white happy sad angry crying laughing tears joy sun moon star cloud rain snow fire water tree
flower rose leaf apple banana cherry grape lemon pizza burger cake cookie coffee tea car bus
train plane rocket ship bike house castle mountain beach ocean wave robot alien ghost skull
clown monster unicorn dragon panda tiger lion monkey bird owl penguin fish whale octopus snake
turtle frog bee butterfly hand thumbs up down clap eyes mouth tongue baby boy girl man woman
king queen wizard fairy vampire ninja pirate sparkles balloon gift trophy guitar camera phone
key lock bell book pencil sword crown glasses umbrella with and of in on at the a""".split()


def gate_prompts(n: int = GATE_PROMPTS, seed: int = 27, vocab: list[str] | None = None
                 ) -> list[str]:
    """``n`` deterministic prompts: emoji-like phrases ("smiling cat face with tears"), half
    of them with random vocabulary words mixed in (``vocab``: the tokenizer's words), in mixed
    case with some punctuation."""
    rng = random.Random(seed)
    words = [w for w in (vocab or []) if w.isalpha() and w.isascii()] or GATE_WORDS
    out = []
    for i in range(n):
        k = rng.randint(1, 7)
        parts = [rng.choice(GATE_WORDS if (i % 2 == 0 or rng.random() < 0.5) else words)
                 for _ in range(k)]
        p = " ".join(parts)
        if rng.random() < 0.2:
            p = p.capitalize()
        if rng.random() < 0.15:
            p += rng.choice(["!", "?", ".", " :)", ", please"])
        out.append(p)
    return out
