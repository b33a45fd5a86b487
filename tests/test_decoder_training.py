"""Issue 15 decoder fine-tune on a tiny synthetic image folder (seconds; needs no ../shared)."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import SMALL_CODEC


@pytest.fixture(scope="module")
def flat_data(tmp_path_factory):
    """2 classes of flat-colour 32x32 images (trivially learnable): 12 train / 2 test each."""
    root = tmp_path_factory.mktemp("flat") / "set"
    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("test", 2)):
        for name in ("cat", "ship"):
            d = root / split / name
            d.mkdir(parents=True)
            for i in range(n):
                img = np.broadcast_to(rng.integers(30, 225, 3, dtype=np.uint8), (32, 32, 3))
                Image.fromarray(np.ascontiguousarray(img)).save(d / f"{i:04d}.png")
    return str(root)


@pytest.fixture(scope="module")
def small_codec(tmp_path_factory):
    from lrf.models.codec import Codec

    torch.manual_seed(0)
    codec = Codec.new(**SMALL_CODEC)
    codec = Codec(codec.ae, [0.1, -0.2, 0.3, 0.0], [1.5, 0.8, 1.2, 1.0])
    path = tmp_path_factory.mktemp("codec") / "codec.safetensors"
    codec.save_file(str(path))
    return str(path)


def _cfg(**kw):
    from lrf.training.decoder import DecoderConfig

    base = dict(epochs=4, batch_size=8, lr=2e-3, warmup=1, adv_start=3, adv_ramp=3,
                disc_width=8, ema=0.0, bf16=False)
    return DecoderConfig(**{**base, **kw})


def test_trains_only_the_decoder_and_lowers_mse(flat_data, small_codec, tmp_path):
    from lrf.models.codec import Codec
    from lrf.training.ae import reconstruction_mse
    from lrf.training.data import load_image_folder
    from lrf.training.decoder import train_decoder

    before = Codec.from_pretrained(small_codec)
    test = load_image_folder(flat_data, "test")
    mse_before = reconstruction_mse(before, test.images)
    res = train_decoder(small_codec, flat_data, str(tmp_path), _cfg(epochs=8), log=lambda m: None)
    after = Codec.from_pretrained(str(tmp_path / "codec.safetensors"))
    for k, v in before.ae.encoder.state_dict().items():
        assert torch.equal(v, after.ae.encoder.state_dict()[k]), k
    assert after.stats_dict() == before.stats_dict()
    assert any(not torch.equal(v, after.ae.decoder.state_dict()[k])
               for k, v in before.ae.decoder.state_dict().items())
    assert res["steps"] == 8 * 3 and res["test_mse"] < 0.5 * mse_before
    recs = [json.loads(line) for line in open(tmp_path / "decoder_log.jsonl")]
    adv = [r["adv_weight"] for r in recs if "adv_weight" in r]
    assert adv and all(w > 0 for w in adv)          # the GAN term was on, and logged
    for name in ("mse", "d_loss", "adv_weight"):
        assert (tmp_path / f"decoder_{name}.png").stat().st_size > 1000


def test_stop_and_resume_equals_one_run(flat_data, small_codec, tmp_path):
    from safetensors.torch import load_file

    from lrf.training.decoder import train_decoder

    quiet = lambda m: None  # noqa: E731
    train_decoder(small_codec, flat_data, str(tmp_path / "one"), _cfg(), log=quiet)
    msgs = []
    r = train_decoder(small_codec, flat_data, str(tmp_path / "two"), _cfg(), stop_after=4,
                      log=quiet)
    assert r == {"stopped": True, "steps": 4, "seconds": r["seconds"]}
    assert not (tmp_path / "two" / "codec.safetensors").exists()
    with open(tmp_path / "two" / "decoder_log.jsonl", "a") as fh:  # as if killed after a save
        fh.write(json.dumps({"step": 99, "mse": 1.0}) + "\n")
    r = train_decoder(small_codec, flat_data, str(tmp_path / "two"), _cfg(), log=msgs.append)
    assert r["steps"] == 12 and any("resumed" in m and "at step 4" in m for m in msgs)
    a = load_file(str(tmp_path / "one" / "codec.safetensors"))
    b = load_file(str(tmp_path / "two" / "codec.safetensors"))
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert all(json.loads(line)["step"] <= 12 for line in open(tmp_path / "two" / "decoder_log.jsonl"))
    r = train_decoder(small_codec, flat_data, str(tmp_path / "three"), _cfg(), stop_after=4,
                      log=quiet)
    r = train_decoder(small_codec, flat_data, str(tmp_path / "three"), _cfg(), finish=True,
                      max_train_mse=1e9, log=quiet)
    assert r["steps"] == 4 and r["alpha"] == 1.0
    assert (tmp_path / "three" / "codec.safetensors").is_file()
    with pytest.raises(ValueError, match="even the starting decoder"):
        train_decoder(small_codec, flat_data, str(tmp_path / "three"), _cfg(), finish=True,
                      max_train_mse=0.0, log=quiet)
    with pytest.raises(FileNotFoundError, match="no training state"):
        train_decoder(small_codec, flat_data, str(tmp_path / "four"), _cfg(), finish=True,
                      log=quiet)
    with pytest.raises(ValueError, match=r"resume state was made with other options \(lr\)"):
        train_decoder(small_codec, flat_data, str(tmp_path / "two"), _cfg(lr=1e-3), log=quiet)
    with pytest.raises(ValueError, match="would train none"):
        train_decoder(small_codec, flat_data, str(tmp_path / "two"), _cfg(), log=quiet)


def test_artefact_measure_flags_checkerboard_and_speckle_not_smooth():
    from lrf.training.decoder_report import artefact_flags, artefact_thresholds

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:32, 0:32]
    smooth = []
    for _ in range(200):  # random low-frequency colour images stand in for "real" ones
        a, b, ph = rng.uniform(0.05, 0.3, 3), rng.uniform(0.5, 3, 2), rng.uniform(0, 6, 3)
        img = 0.5 + a * np.sin(2 * np.pi * (b[0] * xx[..., None] + b[1] * yy[..., None]) / 32 + ph)
        smooth.append((img * 255).astype(np.uint8))
    smooth = np.stack(smooth)
    th = artefact_thresholds(smooth[:100])
    checker = smooth[100:110].astype(np.int16) + (20 * (-1) ** (xx + yy))[None, ..., None]
    speckle = smooth[110:120].astype(np.int16)
    chroma = rng.normal(0, 25, (10, 32, 32, 1)) * np.array([1.0, -1.0, 0.0])   # luma-neutral-ish
    speckle = speckle + chroma
    as_u8 = lambda v: np.clip(v, 0, 255).astype(np.uint8)  # noqa: E731
    assert artefact_flags(as_u8(checker), th).all()
    assert artefact_flags(as_u8(speckle), th).all()
    assert artefact_flags(smooth[120:], th).mean() <= 0.05


def test_cli_bad_input_is_one_line(small_codec, flat_data, tmp_path, capsys):
    from lrf.training.cli import main

    rc = main(["decoder", "--codec", str(tmp_path / "none"), "--data", flat_data,
               "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "none" in err
    rc = main(["decoder", "--codec", small_codec, "--data", flat_data, "--out", str(tmp_path / "o"),
               "--adv-start", "-1"])
    err = capsys.readouterr().err
    assert rc == 2 and "adv_start" in err and len(err.strip().splitlines()) == 1
