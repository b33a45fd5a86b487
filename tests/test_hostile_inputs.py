"""Hostile command-line inputs (issue 14, round 2): edit pictures that inflate or lie about
their size, outputs aimed into the bundle being read, unbounded numbers that allocate gigabytes
or train into NaN, and run folders left empty by a failed start. Each is refused with one line
and exit 2, before any work, leaving nothing behind."""

from __future__ import annotations

import io
import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

from lrf import cli


def _one_line(capsys, prog):
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith(prog) and ": error: " in err, err
    assert "Traceback" not in err and "Warning" not in err
    return err


def _png_declaring(path, side):
    """A few hundred bytes of PNG whose header declares side x side RGB pixels."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8,
                                                                      2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * 1024)) + chunk(b"IEND", b""))


# ------------------------------------------------------------------------ edit pictures
@pytest.mark.parametrize("side", [9500, 60000])  # PIL's warning zone, then its error zone
def test_png_bomb_is_one_error_and_no_warning(tmp_path, side):
    from lrf.models.cli import read_picture

    _png_declaring(tmp_path / "bomb.png", side)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PIL's DecompressionBombWarning would be a 2nd line
        with pytest.raises(ValueError, match="--init-image .*bomb"):
            read_picture(str(tmp_path / "bomb.png"), "--init-image", (32, 32))


def test_oversized_picture_is_refused_from_its_header(tmp_path, monkeypatch):
    from lrf.models.cli import read_picture

    Image.new("RGB", (4096, 4096)).save(tmp_path / "big.png")
    from PIL import ImageFile

    monkeypatch.setattr(ImageFile.ImageFile, "load",
                        lambda self: pytest.fail("decoded a picture it should refuse"))
    with pytest.raises(ValueError, match=r"is 4096x4096, far larger than the 32x32 images"):
        read_picture(str(tmp_path / "big.png"), "--init-image", (32, 32))


def test_picture_that_is_not_a_regular_file(tmp_path):
    from lrf.models.cli import read_picture

    with pytest.raises(ValueError, match="is not a regular file"):
        read_picture(str(tmp_path), "--mask", (32, 32))
    with pytest.raises(ValueError, match="is not a regular file"):
        read_picture("/dev/zero", "--mask", (32, 32))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_picture(str(tmp_path / "none.png"), "--mask", (32, 32))


def test_text_chunk_bomb_is_one_line(tmp_path):
    from lrf.models.cli import read_picture

    buf = io.BytesIO()
    Image.new("RGB", (32, 32)).save(buf, format="PNG")
    raw = buf.getvalue()
    data = b"Comment\0\0" + zlib.compress(b"A" * (64 << 20), 9)
    chunk = struct.pack(">I", len(data)) + b"zTXt" + data + struct.pack(
        ">I", zlib.crc32(b"zTXt" + data) & 0xFFFFFFFF)
    (tmp_path / "t.png").write_bytes(raw[:33] + chunk + raw[33:])
    try:
        im = read_picture(str(tmp_path / "t.png"), "--init-image", (32, 32))
    except ValueError as e:
        assert "--init-image" in str(e)
    else:  # PIL may skip the oversized chunk: then the picture itself is fine
        assert im.size == (32, 32)


# ------------------------------------------------------------------------ outputs
def test_generate_refuses_an_output_inside_the_bundle(tmp_path, capsys):
    from lrf.models.cli import main

    b = tmp_path / "bundle"
    (b / "golden").mkdir(parents=True)
    (b / "manifest.json").write_text("{}")
    for out in (b / "golden" / "mine.png", b / "manifest.json"):
        assert main(["--bundle", str(b), "--class", "cat", "--out", str(out)]) == 2
        assert "is inside the bundle folder" in _one_line(capsys, "lrf-generate")
    assert sorted(p.name for p in b.rglob("*")) == ["golden", "manifest.json"]
    assert (b / "manifest.json").read_text() == "{}"


def test_generate_output_through_a_link_into_the_bundle_is_refused_too(tmp_path, capsys):
    from lrf.models.cli import main

    b = tmp_path / "bundle"
    b.mkdir()
    (tmp_path / "alias").symlink_to(b)
    assert main(["--bundle", str(b), "--class", "cat", "--grid",
                 str(tmp_path / "alias" / "g.png")]) == 2
    assert "--grid" in _one_line(capsys, "lrf-generate") and not any(b.iterdir())


# ------------------------------------------------------------------------ bounds
@pytest.mark.parametrize("argv,says", [
    (["--steps", "1000000000"], "--steps must be in [1, 1000]"),
    (["--steps", "2", "1000000000"], "--steps must be in [1, 1000]"),
    (["--latent-size", "100000"], "--latent-size must be in [1, 512]"),
    (["--parity-images", "1000000000"], "--parity-images must be in [1, 10000]"),
    (["--calibration-images", "1000000000"], "--calibration-images must be in [1, 10000]"),
    (["--fidelity-images", "1000000000"], "--fidelity-images must be in [0, 10000]"),
    (["--batch", "1000000"], "--batch must be in [1, 256]"),
    (["--window", "1000000"], "--window must be in [1, 1000]"),
])
def test_export_numbers_are_bounded(tmp_path, capsys, argv, says):
    from lrf.exporter.cli import main

    assert main(["--target", "onnx", "--out", str(tmp_path / "b"), *argv]) == 2
    assert says in _one_line(capsys, "lrf-export") and not any(tmp_path.iterdir())


@pytest.mark.parametrize("argv,says", [
    (["ae", "--lr", "nan"], "--lr must be a number in (0, 10]"),
    (["ae", "--lr", "-1"], "--lr must be a number in (0, 10]"),
    (["ae", "--lr", "0"], "--lr must be a number in (0, 10]"),
    (["ae", "--latent-l2", "inf"], "--latent-l2 must be a number in [0, 1e+06]"),
    (["flow", "--cache", "c", "--codec", "c", "--ema", "2"], "--ema must be a number in [0, 1]"),
    (["flow", "--cache", "c", "--codec", "c", "--snr-gamma", "nan"], "--snr-gamma must be"),
    (["decoder", "--codec", "c", "--adv-weight=-inf"], "--adv-weight must be"),
    (["decoder", "--codec", "c", "--max-train-mse", "0"], "--max-train-mse must be"),
])
def test_train_numbers_are_finite_and_bounded(tmp_path, capsys, argv, says):
    from lrf.training.cli import main

    cmd, rest = argv[0], argv[1:]
    needs = {"ae": ["--data", str(tmp_path)], "decoder": ["--data", str(tmp_path)], "flow": []}
    assert main([cmd, *needs[cmd], "--out", str(tmp_path / "run"), *rest]) == 2
    assert says in _one_line(capsys, "lrf-train") and not (tmp_path / "run").exists()


@pytest.mark.parametrize("value", ["0", "-5", "1000000000", "1e3"])
def test_eval_per_class_is_bounded(capsys, value):
    from lrf.training.evaluate import main

    assert main(["--per-class", value, "--data", "/nonexistent"]) == 2
    assert "--per-class" in _one_line(capsys, "lrf-eval")


@pytest.mark.parametrize("text,ok", [("1e-3", True), ("10", True), ("nan", False),
                                     ("inf", False), ("-inf", False), ("x", False),
                                     ("0", False), ("10.5", False)])
def test_float_arg(text, ok):
    import argparse

    parse = cli.float_arg("--lr", 0, 10, open_lo=True)
    if ok:
        assert parse(text) == float(text)
    else:
        with pytest.raises(argparse.ArgumentTypeError, match="--lr must be"):
            parse(text)


# ------------------------------------------------------------------------ run folders
def test_failed_training_start_leaves_no_empty_run_folder(tmp_path, capsys):
    from lrf.training.cli import main

    (tmp_path / "data").mkdir()
    assert main(["ae", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run")]) == 2
    _one_line(capsys, "lrf-train")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_run_folder_with_a_saved_state_or_made_before_is_kept(tmp_path, monkeypatch, capsys):
    import lrf.training.ae as ae
    from lrf.training.cli import main

    def fails_after_a_state(data, out, cfg):
        (tmp_path / "run" / "sub").mkdir(parents=True)
        (tmp_path / "run" / "state.pt").write_bytes(b"resume from me")
        raise KeyboardInterrupt

    monkeypatch.setattr(ae, "train_ae", fails_after_a_state)
    assert main(["ae", "--data", str(tmp_path), "--out", str(tmp_path / "run")]) == 130
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["state.pt"]  # empty sub: gone

    (tmp_path / "mine").mkdir()
    monkeypatch.setattr(ae, "train_ae", lambda *a: (_ for _ in ()).throw(ValueError("bad")))
    assert main(["ae", "--data", str(tmp_path), "--out", str(tmp_path / "mine")]) == 2
    assert (tmp_path / "mine").is_dir()  # it existed before: not ours to remove
    capsys.readouterr()
