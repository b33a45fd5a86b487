"""``export_text_bundle``: a text-to-image checkpoint -> a verified schema v3 ONNX bundle
(``runtime/BUNDLE.md`` section 11). :func:`lrf.exporter.export.export_bundle` calls it for a
checkpoint whose core takes a prompt.

    1. graphs: ``text_encoder`` (``lrf.exporter.onnx_text``), ``denoise``, ``decoder`` and
       ``encoder`` (``lrf.exporter.text_graphs``); the tokenizer files copied into
       ``tokenizer/``; ``--int8``: text encoder variants measured by the text gate (the
       smallest that passes ships), the other graphs weight-only int8
    2. manifest v3 written; the bundle loaded through ``lrf.runtime``
    3. parity gate: (a) cosine of the bundle's pooled prompt embedding (tokenizer + graph) with
       the fp32 PyTorch encoder's on every one of ``text_prompts`` prompts >= COSINE_BAR;
       (b) image PSNR of prompt + style + seed cases against the PyTorch reference >= the
       precision's image bar (``--int8``: when the image misses it, the larger passing
       text-encoder variants and float32 decoder and/or denoise graphs are tried, fewest bytes
       first, each try recorded); below either bar nothing is written
    4. golden files (``lrf.exporter.text_golden``), manifest finished, re-verified, committed
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx

from lrf.exporter import onnx_text, outdir, parity, text_golden, text_graphs
from lrf.exporter import writer as bw
from lrf.exporter.metrics import IMAGE_PSNR_DB, psnr
from lrf.exporter.targets import GraphRecord, Target
from lrf.runtime import Generator

PARITY_PROMPTS = ("cat face", "red heart", "smiling sun with sunglasses", "blue circle",
                  "green tree", "pizza slice", "ghost", "rocket ship")


class _OnnxText(Target):
    name = "onnx"
    backend = "onnxruntime"

    def tool_versions(self) -> dict[str, str]:
        from lrf.exporter.targets import package_version

        return {d: package_version(d) for d in ("onnx", "onnxruntime", "tokenizers")}


def export_text_bundle(ckpt, out: Path, int8: bool = False, text_prompts: int =
                       onnx_text.GATE_PROMPTS, parity_images: int = 8,
                       log: Callable[[str], None] = print) -> Path:
    """Write the v3 bundle of text checkpoint ``ckpt`` at ``out``; ParityError below a bar."""
    import torch
    from lrf.models.reference import conditioner
    from lrf.models.text import minilm_dir

    cfg = ckpt.config
    precision = "int8" if int8 else "fp32"
    if text_prompts < 1 or parity_images < 1:
        raise ValueError("text_prompts and parity_images must be >= 1")
    out = Path(out)
    outdir.prepare(out)
    cond = conditioner(ckpt)
    max_tokens = cond.encoder.max_tokens
    tmp = bw.temp_dir_for(out)
    try:
        src = minilm_dir()
        (tmp / "tokenizer").mkdir()
        for f in ("tokenizer.json", "vocab.txt"):
            shutil.copyfile(src / f, tmp / "tokenizer" / f)
        vocab = (tmp / "tokenizer" / "vocab.txt").read_text(encoding="utf-8").splitlines()
        tokens = bool(cfg.text_attention)
        log(f"text: exporting text_encoder, denoise, decoder, encoder ({precision})")
        graphs = text_graphs.build(ckpt, cond.null(), max_tokens)
        quant, fp32_bytes = {}, {}
        for name, (model, _) in graphs.items():
            onnx.save(model, str(tmp / f"{name}.onnx"))
            quant[name] = {"method": "none"}
            if int8:
                from lrf.exporter.onnx_int8_weights import weight_only

                fp32_bytes[name] = (tmp / f"{name}.onnx").read_bytes()
                weight_only(model, 8)
                onnx.save(model, str(tmp / f"{name}.onnx"))
                quant[name] = {"method": "weight_only", "variant": "weight_only",
                               "weight_type": "int8", "per_channel": True}
        te_io = onnx_text.io_spec(cfg.text_dim, tokens)
        prompts = onnx_text.gate_prompts(text_prompts, vocab=vocab)
        with torch.no_grad():
            ids, mask = _tokenize(cond, prompts)
            ref_pooled = cond.encoder.model(ids, mask)[1].numpy()
        with tempfile.TemporaryDirectory(prefix="lrf-text-") as scratch:
            fp32 = Path(scratch) / "text_encoder.fp32.onnx"
            onnx_text.export_text_encoder(cond.encoder.model, fp32, tokens)
            candidates = []
            for variant in (onnx_text.VARIANTS if int8 else ("fp32",)):
                path = Path(scratch) / f"{variant}.onnx"
                rec = {"method": "none"} if variant == "fp32" else \
                    onnx_text.build_variant(fp32, path, variant)
                if variant == "fp32":
                    shutil.copyfile(fp32, path)
                cos = onnx_text.cosine(_run_text(path, rec, ids.numpy(), mask.numpy()),
                                       ref_pooled)
                c = {"name": variant, "bytes": path.stat().st_size,
                     "cosine_min": float(cos.min()), "cosine_mean": float(cos.mean()),
                     "passed": bool(cos.min() >= onnx_text.COSINE_BAR)}
                log(f"text_encoder {variant}: {c['bytes']} bytes, cosine min "
                    f"{c['cosine_min']:.4f} mean {c['cosine_mean']:.4f} on {len(prompts)} prompts")
                candidates.append((c, rec, path))
            passing = [x for x in candidates if x[0]["passed"]]
            best = min(passing, key=lambda x: x[0]["bytes"]) if passing else \
                max(candidates, key=lambda x: x[0]["cosine_min"])
            shutil.copyfile(best[2], tmp / "text_encoder.onnx")
            selection = {"rule": f"smallest file with cosine >= {onnx_text.COSINE_BAR} on every "
                                 "gate prompt (and, --int8, the image bar: parity.image."
                                 "fallback)", "candidates": [x[0] for x in candidates]}
            quant["text_encoder"] = {**best[1], "selection": selection}
            # the larger passing variants, for the image gate's fallback (--int8)
            text_choices = {x[0]["name"]: (x[2].read_bytes(), {**x[1], "selection": selection})
                            for x in sorted(passing, key=lambda x: x[0]["bytes"])}
        ios = {"text_encoder": te_io, **{n: io for n, (_, io) in graphs.items()}}
        records = {}
        for name, io in ios.items():
            model = onnx.load(str(tmp / f"{name}.onnx"))
            opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
            extra = {"opset": opset}
            if name == "denoise":
                extra.update(window={"min": 1, "max": None}, form="loop")
            records[name] = GraphRecord(name=name, file=f"{name}.onnx", format="onnx",
                                        inputs=io[0], outputs=io[1], quantization=quant[name],
                                        extra=extra)
        steps = int(ckpt.sampling["steps"])
        manifest = bw.build_manifest(ckpt, _OnnxText(), precision, records, cfg.latent_size,
                                     text_golden.golden_steps(steps), mode="fused")
        v3_sections(manifest, ckpt, cond, vocab, max_tokens)
        bw.write_manifest(tmp, manifest)
        with Generator.load(tmp, threads=1) as gen:
            text = _text_gate(gen, prompts, ref_pooled, log)
            image = _image_gate(gen, ckpt, precision, parity_images, log)
        variant = best[0]
        if int8 and text["passed"] and not image["passed"]:
            image, name = _fallback(tmp, manifest, fp32_bytes, text_choices, best[0]["name"],
                                    image, lambda g: _image_gate(g, ckpt, precision,
                                                                 parity_images, log), log)
            variant = next(c for c, _, _ in candidates if c["name"] == name)
            if name != best[0]["name"]:   # gate (a) again, on the variant now in the bundle
                with Generator.load(tmp, threads=1) as gen:
                    text = _text_gate(gen, prompts, ref_pooled, log)
        result = {"text_encoder": {**text, "variant": variant}, "image": image}
        manifest["parity"] = result
        failures = [k for k, v in result.items() if not v["passed"]]
        if failures:
            raise parity.ParityError([f"{k}: {result[k]}" for k in failures])
        with Generator.load(tmp, threads=1) as gen:
            manifest["golden"] = text_golden.write(tmp, ckpt, gen, precision)
        bw.write_manifest(tmp, manifest)
        Generator.load(tmp).close()
        bw.commit(tmp, out)
    except BaseException:
        outdir.discard(tmp)
        raise
    log(f"wrote {out}")
    return out


def v3_sections(manifest: dict, ckpt, cond, vocab: list[str], max_tokens: int) -> None:
    """The schema v3 fields of a text bundle (BUNDLE.md section 11)."""
    from lrf import editing

    cfg = ckpt.config
    manifest["image"].update(channels=4, color="RGBA", alpha="straight")
    manifest["conditioning"] = {
        "kind": "text", "inputs": ["prompt", "style"], "text_dim": cfg.text_dim,
        "text_tokens": bool(cfg.text_attention),
        "null": {"prompt": cond.null_prompt, "style": cfg.null_class},
        "styles": "classes (index = label); null_class = no style",
        "prompt_rules": "lrf.runtime.prompt.check_prompt (BUNDLE.md 11.2)"}
    manifest["tokenizer"] = {
        "type": "bert-wordpiece-uncased", "spec": "runtime/TOKENIZER.md",
        "tokenizer_json": "tokenizer/tokenizer.json", "vocab": "tokenizer/vocab.txt",
        "vocab_size": len(vocab), "max_tokens": max_tokens,
        "special_tokens": {"[PAD]": 0, "[UNK]": 100, "[CLS]": 101, "[SEP]": 102, "[MASK]": 103},
        "lowercase": True, "strip_accents": True, "max_input_chars_per_word": 100,
        "truncation": f"[CLS], the first {max_tokens - 2} pieces, [SEP]",
        "padding": "right, with [PAD] = 0 and attention mask 0"}
    manifest["editing"] = {"schedule": editing.default_schedule(cfg)}


def _tokenize(cond, prompts):
    from lrf.models.text import tokenize

    return tokenize(cond.encoder.tokenizer, prompts)


def _run_text(path: Path, quantization: dict, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    from lrf.runtime.backend_onnxruntime import folds_weights, make_session

    sess = make_session(str(path), threads=1, fold_weights=folds_weights(quantization))
    out = []
    for s in range(0, len(ids), 256):
        out.append(sess.run(["pooled"], {"token_ids": ids[s:s + 256],
                                         "attention_mask": mask[s:s + 256]})[0])
    return np.concatenate(out)


def _fallback(tmp: Path, manifest: dict, fp32_bytes: dict[str, bytes],
              text_choices: dict[str, tuple[bytes, dict]], text_variant: str, image: dict,
              gate: Callable, log: Callable[[str], None]) -> tuple[dict, str]:
    """The ``--int8`` bundle missed the image bar (b). Try, fewest bytes first, every other
    configuration of a text-encoder variant that passed the cosine gate (a) (``text_choices``:
    name -> (file bytes, quantization record)) and float32 for none, the decoder, the denoise
    graph or both (``fp32_bytes``), keeping the first that passes. Every try is recorded in
    the image gate's ``fallback``; returns (that gate, or the last failing one; the text
    variant in place)."""
    int8_bytes = {n: (tmp / f"{n}.onnx").read_bytes() for n in fp32_bytes}
    int8_quant = {n: manifest["graphs"][n]["quantization"] for n in fp32_bytes}
    sets = [(), ("decoder",), ("denoise",), ("denoise", "decoder")]
    configs = sorted(((v, keep) for v in text_choices for keep in sets),
                     key=lambda c: len(text_choices[c[0]][0]) + sum(
                         len(fp32_bytes[n]) - len(int8_bytes[n]) for n in c[1]))
    tries = [{"text_encoder": text_variant, "float32": [], "psnr_db": image["value"],
              "passed": False}]
    for v, keep in configs:
        if (v, keep) == (text_variant, ()):
            continue
        data, rec = text_choices[v]
        (tmp / "text_encoder.onnx").write_bytes(data)
        te = manifest["graphs"]["text_encoder"]
        te["quantization"] = rec
        te["opset"] = next(o.version for o in onnx.load_from_string(data).opset_import
                           if o.domain in ("", "ai.onnx"))
        for n in fp32_bytes:
            (tmp / f"{n}.onnx").write_bytes(fp32_bytes[n] if n in keep else int8_bytes[n])
            manifest["graphs"][n]["quantization"] = int8_quant[n] if n not in keep else {
                "method": "none", "fallback": "float32: with the weight-only int8 graph the "
                                              "image missed its bar (parity.image.fallback)"}
        bw.write_manifest(tmp, manifest)
        log(f"parity: int8 image below the bar; trying text_encoder {v}"
            + (f", {' and '.join(keep)} in float32" if keep else ""))
        with Generator.load(tmp, threads=1) as gen:
            image = gate(gen)
        tries.append({"text_encoder": v, "float32": list(keep), "psnr_db": image["value"],
                      "passed": image["passed"]})
        if image["passed"]:
            break
    image["fallback"] = tries
    return image, v


def _text_gate(gen, prompts, ref_pooled, log) -> dict:
    """(a) the bundle's own prompt path (tokenizer + text_encoder) vs fp32 PyTorch, on every
    gate prompt."""
    cache = gen.prompt_cache()
    got = np.concatenate([cache.one(p)["text_pooled"] for p in prompts])
    cos = onnx_text.cosine(got, ref_pooled)
    text = {"metric": "cosine", "bar": onnx_text.COSINE_BAR, "prompts": len(prompts),
            "min": float(cos.min()), "mean": float(cos.mean()),
            "passed": bool(cos.min() >= onnx_text.COSINE_BAR)}
    log(f"parity: text embedding cosine min {text['min']:.4f} (bar {text['bar']})")
    return text


def _image_gate(gen, ckpt, precision, parity_images, log) -> dict:
    """(b) final images of prompt + style + seed cases vs the PyTorch reference."""
    from lrf.models.reference import generate, to_uint8

    n = len(ckpt.classes)
    cases = [(PARITY_PROMPTS[i % len(PARITY_PROMPTS)], (i % (n + 1)), i)
             for i in range(parity_images)]
    styles = [s if s < n else None for _, s, _ in cases]
    want = to_uint8(generate(ckpt, [ckpt.config.null_class if s is None else s for s in styles],
                             [c[2] for c in cases], prompts=[c[0] for c in cases]))
    have = gen.generate_batch(None, [c[2] for c in cases], prompts=[c[0] for c in cases],
                              styles=styles)
    value = psnr(want, have)
    image = {"metric": "psnr_db", "bar": IMAGE_PSNR_DB[precision], "value": value,
             "cases": [{"prompt": p, "style": s, "seed": str(seed)} for (p, _, seed), s in
                       zip(cases, styles)], "passed": bool(value >= IMAGE_PSNR_DB[precision])}
    log(f"parity: image PSNR {value:.2f} dB (bar {image['bar']})")
    return image
