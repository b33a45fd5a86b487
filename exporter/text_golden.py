"""Golden files of a schema v3 text bundle (``runtime/BUNDLE.md`` 11.5), beside the v2 kinds:

* ``token_ids`` (``golden/token_ids.json``): prompts -> ids and attention mask through the
  bundle's ``tokenizer.json`` (Python ``tokenizers``), edge cases included (accents, CJK, emoji,
  punctuation, empty, over-long, mixed case, control characters, special-token literals);
* case ``text_embedding``: ids + mask (``inputs.json``) -> ``text_pooled`` of this bundle's
  graph, and the fp32 PyTorch encoder's (``reference_text_pooled``);
* case ``prompt_generate_<N>``: prompt + style + seed -> noise, final latent, RGBA image (this
  bundle, fused) and the PyTorch reference image;
* case ``prompt_img2img_<N>``: one prompt-guided edit of the generate case's reference image at
  strength 0.6 under the bundle's ``editing.schedule``.
"""

from __future__ import annotations

import json

import numpy as np

from lrf import prng
from lrf.exporter.golden import NOISE_MAX_ABS, _Writer, rng_vectors
from lrf.exporter.metrics import COSINE_BAR
from lrf.runtime import scheduler

GOLDEN_PROMPT = "smiling cat face"
EDIT_PROMPT = "red heart"
GOLDEN_SEED = 2024
EDIT_STRENGTH = 0.6
TOKEN_CASES = [
    "cat face", "Café Crème brûlée", "naïve résumé", "猫的脸", "ねこ", "고양이", "🐱 cat 😀",
    "👩\u200d👩\u200d👧 family", "🇯🇵 flag", "hello!!! (world)?", "3.14159 $5 ~tilde~", "",
    "   ", " ".join(["sparkles"] * 40), "MiXeD CaSe WoRdS", "tab\there\nnewline",
    "nul\x00byte", "bell\x07 del\x7f c1\x85", "zero\u200bwidth", "a [MASK] cat", "[PAD]",
    "[mask]", "x" * 101, "e\u0301" * 3, "ΣΑΣ", "İstanbul", "ﬁsh", "Ａｂｃ", "straße",
]
EMBED_PROMPTS = ["cat face", "red heart", "", "smiling sun with sunglasses", "🐱 猫 café"]


def golden_steps(default_steps: int) -> list[int]:
    return [int(default_steps)]


def write(bundle_dir, ckpt, gen, precision: str) -> dict:
    """Write ``golden/`` of a text bundle; returns the manifest's ``golden`` section."""
    import torch
    from lrf.models.reference import conditioner, edit, generate, to_uint8
    from lrf.models.text import tokenize

    w = _Writer(bundle_dir, precision)
    w.json("rng_vectors", rng_vectors())
    tok = gen.prompt_cache().tokenizer.tokenizer
    rows = [{"prompt": p, "ids": e.ids, "attention_mask": e.attention_mask}
            for p, e in zip(TOKEN_CASES, tok.encode_batch(TOKEN_CASES))]
    w.json("token_ids", {"tokenizer": "tokenizer/tokenizer.json", "max_tokens":
                         gen.manifest["tokenizer"]["max_tokens"], "cases": rows})
    cases: dict[str, dict] = {}
    cosine = {"metric": "cosine_min", "bar": COSINE_BAR}
    # ids -> embedding (the empty prompt included: the null prompt's ids)
    cond = conditioner(ckpt)
    ids, mask = tokenize(cond.encoder.tokenizer, EMBED_PROMPTS)
    case = "text_embedding"
    cases[case] = {"kind": "text_embedding", "prompts": EMBED_PROMPTS, "modes": ["single"]}
    path, rel = w._path(case, "inputs.json")
    path.write_text(json.dumps({"prompts": EMBED_PROMPTS, "token_ids": ids.tolist(),
                                "attention_mask": mask.tolist()}, indent=1) + "\n",
                    encoding="utf-8")
    w._entry(case, "inputs", rel, "json", None, None, None)
    out = gen.run("text_encoder", token_ids=ids.numpy(), attention_mask=mask.numpy())
    w.f32(case, "text_pooled", out["text_pooled"],
          w.tensor if precision == "fp32" else cosine)
    with torch.no_grad():
        ref = cond.encoder.model(ids, mask)[1].numpy()
    w.f32(case, "reference_text_pooled", ref, cosine)
    # prompt + seed -> image
    cfg = ckpt.config
    n = int(ckpt.sampling["steps"])
    g = float(ckpt.sampling["guidance"])
    style = 0
    case = f"prompt_generate_{n}"
    cases[case] = {"kind": "generate", "prompt": GOLDEN_PROMPT, "style": style,
                   "style_name": ckpt.classes[style], "label": style, "seed": str(GOLDEN_SEED),
                   "steps": n, "guidance": g, "strength": None, "modes": ["fused"]}
    noise = prng.noise([GOLDEN_SEED], gen.latent_shape)
    w.f32(case, "timesteps", scheduler.timesteps(n, gen.shift), {"metric": "exact", "bar": 0})
    w.f32(case, "noise", noise, {"metric": "max_abs", "bar": NOISE_MAX_ABS})
    text = gen.encode_prompts([GOLDEN_PROMPT])
    y = np.asarray([style], np.int32)
    z = gen.sample_latents(noise, y, g, n, mode="fused", text=text)
    w.f32(case, "latent_final_fused", z, w.tensor)
    w.png(case, "image_fused", gen.decode(z)[0], w.image)
    ref_img = to_uint8(generate(ckpt, [style], [GOLDEN_SEED], prompts=[GOLDEN_PROMPT]))[0]
    w.png(case, "reference_image", ref_img, w.image)
    # one prompt-guided edit, from the generate case's reference image
    case = f"prompt_img2img_{n}"
    cases[case] = {"kind": "img2img", "prompt": EDIT_PROMPT, "style": style,
                   "style_name": ckpt.classes[style], "label": style,
                   "seed": str(GOLDEN_SEED + 1), "steps": n, "guidance": g,
                   "strength": EDIT_STRENGTH, "schedule": gen.edit_schedule, "modes": ["fused"]}
    w.png(case, "input_image", ref_img, None)
    got = gen.edit(ref_img, seed=GOLDEN_SEED + 1, strength=EDIT_STRENGTH, prompt=EDIT_PROMPT,
                   style=style, mode="fused")
    w.png(case, "image_fused", got, w.image)
    ref_edit = to_uint8(edit(ckpt, ref_img, style, GOLDEN_SEED + 1, EDIT_STRENGTH,
                             prompt=EDIT_PROMPT))[0]
    w.png(case, "reference_image", ref_edit, w.image)
    return {"runtime": gen.backend.settings(), "cases": cases, "files": w.files}
