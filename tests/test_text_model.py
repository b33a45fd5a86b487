"""Text-to-image on a tiny fixture: captioned data, the RGBA codec, prompt conditioning, the
trainers (ae, cache, flow, distill, judge), the PyTorch reference and lrf-eval, end to end."""

import dataclasses
import json
import os

import numpy as np
import pytest
import torch

from emoji_fixture import COLOURS, SHAPES, STYLES, make_captioned_archive, make_captioned_folder
from lrf.training.captioned import is_held_out, load_captioned


# ---------------------------------------------------------------- data
def test_folder_and_archive_read_the_same(tmp_path):
    folder = make_captioned_folder(str(tmp_path / "f"), 32)
    archive = make_captioned_archive(str(tmp_path / "a"), 32)
    a, b = load_captioned(folder, 16), load_captioned(archive, 16)
    assert a.images.shape == (len(STYLES) * len(COLOURS) * len(SHAPES), 16, 16, 4)
    assert np.array_equal(a.images, b.images) and a.texts == b.texts
    assert sorted(set(a.column("style"))) == sorted(STYLES)
    labels, classes = a.labels("style")
    assert classes == sorted(STYLES) and set(labels.tolist()) == {0, 1}
    # transparent background survives the resize; the shape is opaque
    assert a.images[0, 0, 0, 3] == 0 and a.images[0, 8, 8, 3] == 255


def _metadata(folder):
    return os.path.join(folder, "train", "metadata.jsonl")


@pytest.mark.parametrize("line, words", [
    ("not json", ["row 2", "not valid JSON"]),
    ('{"file_name": "filled/red-circle.png"}', ["row 2", "'text'"]),
    ('{"file_name": "../../etc/passwd", "text": "x"}', ["row 2", "leaves the data folder"]),
    ('{"file_name": "filled/none.png", "text": "x"}', ["row 2", "not in the data"]),
    ('[1, 2]', ["row 2", "JSON object"]),
])
def test_bad_rows_name_the_file_and_the_row(tmp_path, line, words):
    folder = make_captioned_folder(str(tmp_path / "f"), 16)
    with open(_metadata(folder)) as fh:
        rows = fh.read().splitlines()
    rows.insert(1, line)
    with open(_metadata(folder), "w") as fh:
        fh.write("\n".join(rows) + "\n")
    with pytest.raises(ValueError) as e:
        load_captioned(folder, 16)
    assert "metadata.jsonl" in str(e.value)
    for w in words:
        assert w in str(e.value)


def test_bad_image_is_named(tmp_path):
    folder = make_captioned_folder(str(tmp_path / "f"), 16)
    with open(os.path.join(folder, "train", "filled", "red-circle.png"), "wb") as fh:
        fh.write(b"not a png")
    with pytest.raises(ValueError, match="red-circle.png.*not a readable image"):
        load_captioned(folder, 16)


def test_prepared_file_round_trips(tmp_path):
    from lrf.training.captioned import prepare

    folder = make_captioned_folder(str(tmp_path / "f"), 32)
    ds = prepare(folder, str(tmp_path / "p.safetensors"), 16)
    back = load_captioned(str(tmp_path / "p.safetensors"), 16)
    assert np.array_equal(ds.images, back.images) and ds.texts == back.texts
    assert back.columns["aliases"] == ds.columns["aliases"]
    with pytest.raises(ValueError, match="prepared at 16 px"):
        load_captioned(str(tmp_path / "p.safetensors"), 32)


def test_held_out_split_is_by_caption_and_stable():
    names = [f"name {i}" for i in range(2000)]
    held = [n for n in names if is_held_out(n, 0.1)]
    assert 120 < len(held) < 280                       # about 10%
    assert held == [n for n in names if is_held_out(n.upper(), 0.1)]   # case-blind
    assert not any(is_held_out(n, 0.0) for n in names)


def test_rgba_conversions_invert_on_the_grid():
    from lrf.models.codec import model_to_rgba, rgba_to_model

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (2, 8, 8, 4), dtype=np.uint8)
    x[..., 3] = 255                                       # opaque: exact inverse
    assert np.array_equal(model_to_rgba(rgba_to_model(x)), x)
    x[0, 0, 0] = [200, 10, 10, 0]                          # transparent: colour is dropped
    assert model_to_rgba(rgba_to_model(x))[0, 0, 0].tolist() == [0, 0, 0, 0]
    x[0, 0, 1] = [200, 100, 50, 128]                       # half: close to the input
    got = model_to_rgba(rgba_to_model(x))[0, 0, 1].astype(int)
    assert got[3] == 128 and np.abs(got[:3] - [200, 100, 50]).max() <= 1


# ---------------------------------------------------------------- model
def _text_model(attention: bool):
    from lrf.models.config import PRESETS
    from lrf.models.lrf import LRFModel

    torch.manual_seed(0)
    m = LRFModel.from_lrf_config(dataclasses.replace(PRESETS["tiny-text"], text_attention=attention))
    with torch.no_grad():   # zero-initialised projections would hide the conditioning
        for p in m.parameters():
            if p.dim() > 1 and float(p.abs().sum()) == 0:
                p.normal_(std=0.05)
    return m.eval()


@pytest.mark.parametrize("attention", [False, True])
def test_prompt_changes_the_velocity_and_is_required(attention):
    m = _text_model(attention)
    z, t, y = torch.randn(2, 4, 4, 4), torch.tensor([0.5, 0.5]), torch.tensor([0, 1])
    p = torch.nn.functional.normalize(torch.randn(2, 384), dim=-1)
    tok, mask = torch.randn(2, 5, 384), torch.ones(2, 5, dtype=torch.long)
    v1 = m(z, t, y, text=p, tokens=tok, token_mask=mask)
    v2 = m(z, t, y, text=p.flip(0), tokens=tok.flip(0), token_mask=mask)
    assert not torch.allclose(v1, v2)
    with pytest.raises(ValueError, match="text-conditioned"):
        m(z, t, y)


def test_padding_tokens_do_not_matter():
    m = _text_model(True)
    z, t, y = torch.randn(1, 4, 4, 4), torch.tensor([0.3]), torch.tensor([1])
    p, tok = torch.randn(1, 384), torch.randn(1, 6, 384)
    mask = torch.tensor([[1, 1, 1, 0, 0, 0]])
    a = m(z, t, y, text=p, tokens=tok, token_mask=mask)
    tok2 = tok.clone()
    tok2[:, 3:] = 99.0
    b = m(z, t, y, text=p, tokens=tok2, token_mask=mask)
    assert torch.allclose(a, b, atol=1e-6)


def test_text_config_fields_are_validated_and_old_configs_load():
    from lrf.models.config import ConfigError, LRFConfig

    with pytest.raises(ConfigError, match="text_attention: needs text_dim"):
        LRFConfig(text_attention=True)
    with pytest.raises(ConfigError, match="text_dim"):
        LRFConfig.from_dict({"text_dim": -1})
    old = LRFConfig().to_dict()
    for k in ("text_dim", "text_attention"):
        old.pop(k)
    assert LRFConfig.from_dict(old) == LRFConfig()


def test_text_encoder_is_minilm_mean_pooled_and_uncased():
    from lrf.models.text import PromptEncoder

    enc = PromptEncoder()
    states, mask, pooled = enc.encode(["Cat Face", "cat face", "", "x " * 200])
    assert torch.allclose(pooled[0], pooled[1]) and mask[2].sum() == 2    # [CLS] [SEP]
    assert mask[3].sum() == enc.max_tokens                                # truncated
    assert torch.allclose(pooled.norm(dim=-1), torch.ones(4), atol=1e-5)
    # the sentence-transformers embedding of the same model (mean pooling, normalised)
    m = mask[0].bool()
    ref = torch.nn.functional.normalize(states[0][m].mean(0), dim=0)
    assert torch.allclose(ref, pooled[0], atol=1e-5)
    sim = pooled @ pooled.T
    assert sim[0, 1] > 0.99 and sim[0, 3] < 0.9


# ---------------------------------------------------------------- trainers, end to end
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """prep -> ae -> cache -> flow (teacher) -> distill (turbo) -> judge, tiny and fast."""
    from lrf.training.cli import main

    root = tmp_path_factory.mktemp("text")
    data = make_captioned_archive(str(root), 32)
    prep = str(root / "shapes.safetensors")
    run = lambda *a: main([str(x) for x in a])  # noqa: E731
    assert run("prep", "--data", data, "--size", 32, "--out", prep) == 0
    assert run("ae", "--data", prep, "--out", root / "ae", "--size", 32, "--steps", 6,
               "--batch-size", 8, "--width", 8, "--held-out", 0.2) == 0
    codec = root / "ae" / "codec.safetensors"
    assert run("cache", "--codec", codec, "--data", prep, "--out", root / "cache.safetensors",
               "--held-out", 0.2) == 0
    assert run("flow", "--cache", root / "cache.safetensors", "--codec", codec, "--out",
               root / "flow", "--preset", "tiny-text", "--steps", 8, "--batch-size", 8,
               "--eval-every", 4) == 0
    assert run("distill", "--teacher", root / "flow" / "checkpoint", "--cache",
               root / "cache.safetensors", "--out", root / "turbo", "--trajectories", 24,
               "--chunk", 8, "--teacher-steps", 4, "--steps", 4, "--batch-size", 8,
               "--eval-every", 2) == 0
    assert run("judge", "--data", prep, "--out", root / "judge", "--steps", 4,
               "--batch-size", 8) == 0
    return root


def test_trainers_write_loadable_text_checkpoints(trained):
    from lrf.models.checkpoint import load_checkpoint

    t = load_checkpoint(trained / "flow" / "checkpoint")
    s = load_checkpoint(trained / "turbo" / "checkpoint")
    assert t.config.text_dim == 384 and t.classes == sorted(STYLES)
    assert s.config.guidance_embed and s.sampling["steps"] == 1
    assert t.training["text"]["held_out_fraction"] == 0.2
    logs = [json.loads(line) for line in open(trained / "flow" / "flow_log.jsonl")]
    assert any("ema_val_held_out" in r for r in logs)      # unseen prompts are measured
    assert (trained / "flow" / "flow_loss.png").is_file()


def test_held_out_captions_never_reach_the_generator(trained):
    from lrf.training.text_flow import load_text_cache

    cache, meta = load_text_cache(str(trained / "cache.safetensors"))
    held = {meta["prompts"][int(i)] for i in cache["prompt"][cache["held_out"]]}
    assert held and all(is_held_out(p, 0.2) for p in held)
    trained_prompts = {meta["prompts"][int(i)] for i in cache["prompt"][~cache["held_out"]]}
    trained_prompts |= {meta["prompts"][int(i)] for i in cache["alias_idx"]}
    assert not held & trained_prompts


def test_resume_continues_the_same_run(trained, tmp_path):
    import shutil

    from lrf.training.cli import main

    out = tmp_path / "flow"
    shutil.copytree(trained / "flow", out)
    codec = trained / "ae" / "codec.safetensors"
    args = ["flow", "--cache", str(trained / "cache.safetensors"), "--codec", str(codec),
            "--out", str(out), "--preset", "tiny-text", "--batch-size", "8", "--eval-every", "4"]
    assert main(args + ["--steps", "12"]) == 0
    steps = [json.loads(line)["step"] for line in open(out / "flow_log.jsonl")]
    assert max(steps) == 12
    # other options: refused with one line naming the option, and nothing trained
    assert main(args + ["--steps", "16", "--lr", "0.5"]) == 2
    assert max(json.loads(line)["step"] for line in open(out / "flow_log.jsonl")) == 12


def _vivid_checkpoint(path):
    """The trained tiny checkpoint with a random codec whose images follow the latent (the
    few-step trained one decodes every latent to nearly the same picture)."""
    from conftest import _vivid
    from lrf.models.checkpoint import load_checkpoint
    from lrf.training.ae_captioned import new_rgba_codec

    ck = load_checkpoint(path)
    torch.manual_seed(0)
    codec = new_rgba_codec(8, ck.config.latent_channels, 8)
    _vivid(codec)
    ck.codec = codec.eval()
    return ck


def test_reference_generates_rgba_from_a_prompt(trained):
    from lrf.models.reference import generate, to_uint8

    ck = _vivid_checkpoint(trained / "turbo" / "checkpoint")
    xa = generate(ck, [0, 0], [0, 1], prompts=["red circle", "red circle"])
    xb = generate(ck, [0], [0], prompts=["blue square"])
    a = to_uint8(xa)
    assert a.shape == (2, 32, 32, 4) and a.dtype == np.uint8
    assert not np.array_equal(a[0], to_uint8(xb)[0])          # the prompt matters
    again = to_uint8(generate(ck, [0, 0], [0, 1], prompts=["red circle", "red circle"]))
    assert np.array_equal(again, a)                              # deterministic per seed
    alone = to_uint8(generate(ck, [0], [0], prompts=["red circle"]))
    # a row depends on its batch only through float rounding (runtime/BUNDLE.md)
    assert np.abs(alone[0].astype(int) - a[0]).max() <= 2
    with pytest.raises(ValueError, match="give a prompt"):
        generate(ck, [0], [0])
    # any Unicode is a prompt; lone surrogates are replaced, not a crash
    odd = to_uint8(generate(ck, [0], [0], prompts=["\x00\u202e\ud800 cat \U0001F431"]))
    assert odd.shape == (1, 32, 32, 4)


def test_lrf_eval_reports_alignment_baseline_and_grid(trained, tmp_path):
    from lrf.training.evaluate import main

    folder = make_captioned_folder(str(tmp_path / "data"), 32)
    out = tmp_path / "report.json"
    assert main([str(trained / "flow" / "checkpoint"), "--judge",
                 str(trained / "judge" / "judge.safetensors"), "--data", folder,
                 "--steps", "2", "--held-out-pairs", "6", "--seen-pairs", "6",
                 "--grid", str(tmp_path / "grid.png"), "--copies", str(tmp_path / "c.png"),
                 "--json", str(out)]) == 0
    rep = json.loads(out.read_text())
    for k in ("generated", "real", "lookup_baseline"):
        assert 0 <= rep["held_out"][k]["top1"] <= rep["held_out"][k]["top5"] <= 1
    assert rep["seen"]["fd_judge"] >= 0 and rep["pairs"]["held_out"] > 0
    from PIL import Image

    with Image.open(tmp_path / "grid.png") as im:
        assert im.size[0] > 2 * 32 * len(STYLES)


def test_pipeline_takes_prompt_and_style(trained):
    from lrf.models.reference import LRFPipeline

    assert LRFPipeline.from_pretrained(str(trained / "turbo" / "checkpoint"))._text is not None
    pipe = LRFPipeline.from_checkpoint(_vivid_checkpoint(trained / "turbo" / "checkpoint"))
    out = pipe(prompt=["red circle", "blue square"], style=["filled", None],
               num_inference_steps=1, seeds=[0, 0], output_type="np").images
    assert out.shape == (2, 32, 32, 4) and not np.array_equal(out[0], out[1])
    pil = pipe(prompt="red circle", style="filled", num_inference_steps=1).images[0]
    assert pil.mode == "RGBA"
    with pytest.raises(ValueError, match="unknown style"):
        pipe(prompt="red circle", style="cubist")
    with pytest.raises(ValueError, match="text-to-image"):
        pipe(class_labels=[0])


def test_edit_moves_toward_the_prompt_and_keeps_masked_pixels(trained):
    from lrf.models.checkpoint import load_checkpoint
    from lrf.models.reference import edit, to_uint8

    ck = load_checkpoint(trained / "flow" / "checkpoint")
    img = load_captioned(make_captioned_folder(str(trained / "editsrc"), 32), 32).images[0]
    rgb = img[..., :3].copy()                         # an opaque RGB input is accepted too
    a = to_uint8(edit(ck, img, 0, 0, 0.6, prompt="blue square", steps=4))
    b = to_uint8(edit(ck, rgb, 0, 0, 0.6, prompt="blue square", steps=4))
    assert a.shape == b.shape == (1, 32, 32, 4)
    keep = np.zeros((32, 32), bool)
    keep[:16] = True
    c = to_uint8(edit(ck, img, 0, 0, 1.0, mask=keep, prompt="blue square", steps=4))
    full = to_uint8(edit(ck, img, 0, 0, 1.0, prompt="blue square", steps=4))
    # the kept half follows the input's round trip more closely than the unmasked edit does
    rt = to_uint8(edit(ck, img, 0, 0, 0.0, prompt="blue square", steps=4))
    d_keep = np.abs(c[0, :16].astype(int) - rt[0, :16]).mean()
    d_free = np.abs(full[0, :16].astype(int) - rt[0, :16]).mean()
    assert d_keep < d_free


def test_lrf_generate_prompt_png_has_alpha(trained, tmp_path):
    from PIL import Image

    from lrf.models.cli import main

    out = tmp_path / "cat.png"
    ck = str(trained / "turbo" / "checkpoint")
    assert main(["--checkpoint", ck, "--prompt", "red circle", "--style", "filled",
                 "--out", str(out), "--no-progress"]) == 0
    with Image.open(out) as im:
        assert im.mode == "RGBA" and im.size == (32, 32)
    grid = tmp_path / "g.png"
    assert main(["--checkpoint", ck, "--prompt", "red circle", "--prompt", "blue square",
                 "--grid", str(grid), "--per-class", "2", "--no-progress"]) == 0
    with Image.open(grid) as im:
        assert im.size == (64, 64) and im.mode == "RGBA"


@pytest.mark.parametrize("argv, words", [
    (["--class", "cat"], ["text-to-image", "--prompt"]),
    (["--prompt", "x", "--style", "cubist"], ["unknown --style", "filled"]),
])
def test_lrf_generate_text_errors_are_one_line(trained, tmp_path, capsys, argv, words):
    from lrf.models.cli import main

    rc = main(["--checkpoint", str(trained / "turbo" / "checkpoint"), *argv,
               "--out", str(tmp_path / "x.png"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and all(w in err for w in words)
    assert not (tmp_path / "x.png").exists()


def test_shipped_emoji_turbo_draws_on_a_transparent_background():
    """The shipped 1-step student: a 64 px RGBA emoji whose corners are transparent and whose
    centre is not, for seen and held-out prompts alike."""
    from lrf.models.checkpoint import load_checkpoint
    from lrf.models.reference import generate, to_uint8

    ck = load_checkpoint(os.path.join(os.path.dirname(__file__), "..", "models", "weights",
                                      "emoji-turbo"))
    assert ck.config.text_dim == 384 and ck.classes == ["emojione", "fluent", "fluent-flat",
                                                        "noto", "twemoji"]
    prompts = ["grinning face", "red heart", "crocodile", "a cat astronaut"]
    imgs = to_uint8(generate(ck, [3] * 4, [0, 1, 2, 3], prompts=prompts))
    assert imgs.shape == (4, 64, 64, 4)
    corners = imgs[:, [0, 0, -1, -1], [0, -1, 0, -1], 3]
    assert corners.max() <= 8                                  # clean background
    assert (imgs[:, 24:40, 24:40, 3].mean(axis=(1, 2)) > 128).all()   # something is drawn
    assert len({im.tobytes() for im in imgs}) == 4
