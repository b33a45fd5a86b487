"""Hostile inputs, round 3 (issue 25): each section is one failure class of the issue; every
test here failed before its fix. Small stand-in bundles are built in the test (no export), the
ONNX ones from ``bundle_factory`` (one shared bundle, copied before tampering)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from lrf.digest import sha256_file
from lrf.exporter import outdir
from lrf.runtime import MANIFEST, SCHEMA

SHIPPED = Path(__file__).resolve().parents[1] / "models" / "bundles" / "cifar10-turbo-int8"

# ------------------------------------------------------------------------------------ helpers


@contextlib.contextmanager
def deadline(seconds: float):
    """Fail (not hang) when the body runs longer than ``seconds`` (SIGALRM, main thread)."""
    def expired(*_):
        raise TimeoutError(f"took longer than {seconds} s")

    old = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def fake_bundle(path: Path, files: dict[str, bytes] | None = None,
                extra_keys: dict[str, dict] | None = None) -> Path:
    """A folder with a real lrf manifest ``files`` table (and ``extra_keys`` added to it)."""
    files = {"step.onnx": b"graph", "golden/noise.f32": b"\0" * 16} if files is None else files
    path.mkdir(parents=True, exist_ok=True)
    for rel, data in files.items():
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_bytes(data)
    table = {rel: {"size": len(data), "sha256": sha256_file(path / rel)}
             for rel, data in files.items()}
    table.update(extra_keys or {})
    (path / MANIFEST).write_text(json.dumps({"schema": SCHEMA, "files": table}))
    return path


def victim(path: Path, text: str = "precious") -> dict:
    """A file outside every bundle, and the manifest entry that would match it exactly."""
    path.write_text(text)
    return {"size": path.stat().st_size, "sha256": sha256_file(path)}


# ============================================ 1. lrf-export --out deletes files outside --out
@pytest.mark.parametrize("key", ["../victim.txt", "ABSOLUTE", "golden/../../victim.txt"])
def test_replace_never_deletes_a_listed_path_outside_the_bundle(tmp_path, key):
    v = tmp_path / "victim.txt"
    meta = victim(v)
    key = str(v) if key == "ABSOLUTE" else key
    out = fake_bundle(tmp_path / "out", extra_keys={key: meta})
    new = fake_bundle(tmp_path / ".new", {"step.onnx": b"new"})
    with pytest.raises(outdir.OutDirError, match="not a path inside") as e:
        outdir.replace(new, out)
    assert "\n" not in str(e.value)
    assert v.read_text() == "precious"
    assert (out / "step.onnx").read_bytes() == b"graph"


@pytest.mark.parametrize("key", ["../victim.txt", "ABSOLUTE"])
def test_prepare_refuses_a_bundle_listing_paths_outside(tmp_path, key):
    v = tmp_path / "victim.txt"
    meta = victim(v)
    out = fake_bundle(tmp_path / "out", extra_keys={str(v) if key == "ABSOLUTE" else key: meta})
    with pytest.raises(outdir.OutDirError, match="not a path inside"):
        outdir.prepare(out)
    assert v.read_text() == "precious"


@pytest.mark.parametrize("key", ["../victim.txt", "ABSOLUTE", "../../victim.txt"])
def test_sweep_of_a_stale_old_bundle_never_deletes_outside(tmp_path, key):
    v = tmp_path / "victim.txt"
    meta = victim(v)
    out = fake_bundle(tmp_path / "out")
    rel = str(v) if key == "ABSOLUTE" else key
    if key == "../../victim.txt":   # the old bundle one level down: ../.. is tmp_path
        (tmp_path / "deep").mkdir()
        out = fake_bundle(tmp_path / "deep" / "out")
        v2 = tmp_path / "victim.txt"
        meta = {"size": v2.stat().st_size, "sha256": sha256_file(v2)}
    stale = fake_bundle(out.parent / f".out{outdir.OLD_TAG}999999999-abcd1234",
                        extra_keys={rel: meta})
    notes = outdir.sweep(out)
    assert v.read_text() == "precious"
    assert len(notes) == 1 and "\n" not in notes[0] and stale.name in notes[0]
    assert stale.is_dir()


def test_refused_export_still_never_deletes_through_the_sweep(tmp_path):
    """The sweep runs before check_out refuses: it must not delete anything either."""
    v = tmp_path / "victim.txt"
    meta = victim(v)
    out = tmp_path / "out"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")   # check_out refuses this --out
    fake_bundle(tmp_path / f".out{outdir.OLD_TAG}999999999-abcd1234",
                extra_keys={"../victim.txt": meta})
    with pytest.raises(outdir.OutDirError):
        outdir.prepare(out)
    assert v.read_text() == "precious" and (out / "thesis.tex").is_file()


def test_sweep_keeps_a_listed_file_whose_checksum_no_longer_matches(tmp_path):
    out = fake_bundle(tmp_path / "out")
    stale = fake_bundle(tmp_path / f".out{outdir.OLD_TAG}999999999-abcd1234")
    (stale / "step.onnx").write_bytes(b"GRAPH")   # same size, the user's edit
    notes = outdir.sweep(out)
    assert (stale / "step.onnx").read_bytes() == b"GRAPH"
    assert len(notes) == 1 and "step.onnx" in notes[0]
    assert not (stale / "golden" / "noise.f32").exists()   # ours, unchanged: deleted


@pytest.mark.parametrize("name", [f".out{outdir.TEMP_TAG}mine", f".out{outdir.TEMP_TAG}1-x",
                                  f".out{outdir.TEMP_TAG}999999999-notmine!"])
def test_sweep_never_deletes_a_user_folder_with_the_temporary_prefix(tmp_path, name):
    user = tmp_path / name
    user.mkdir()
    (user / "notes.txt").write_text("mine")
    notes = outdir.sweep(tmp_path / "out")
    assert (user / "notes.txt").read_text() == "mine"
    assert len(notes) == 1 and name in notes[0] and "\n" not in notes[0]


@pytest.mark.parametrize("name", [f".out{outdir.OLD_TAG}mine", f".out{outdir.OLD_TAG}1-x"])
def test_sweep_never_moves_a_user_folder_with_the_old_prefix_onto_out(tmp_path, name):
    user = tmp_path / name
    user.mkdir()
    (user / "notes.txt").write_text("mine")
    notes = outdir.sweep(tmp_path / "out")
    assert (user / "notes.txt").read_text() == "mine" and not (tmp_path / "out").exists()
    assert len(notes) == 1 and name in notes[0]


def test_killed_exports_own_temporary_is_still_swept(tmp_path):
    """The proof of ownership does not stop the sweep of a real killed export's temporary."""
    out = tmp_path / "out"
    tmp = Path(outdir.make_temp(out))
    (tmp / "step.onnx").write_bytes(b"half")
    outdir._release(tmp)                 # as if its process had died
    os.rename(tmp, tmp.with_name(tmp.name.replace(f"-{os.getpid()}-", "-999999999-")))
    assert outdir.sweep(out) == []
    assert list(tmp_path.iterdir()) == []


def test_replace_keeps_and_names_an_old_file_changed_after_the_check(tmp_path, monkeypatch,
                                                                     caplog):
    out = fake_bundle(tmp_path / "out")
    new = fake_bundle(Path(outdir.make_temp(out)), {"step.onnx": b"new graph"})
    real_check = outdir.check_out

    def check_then_edit(path):
        real_check(path)
        (Path(path) / "step.onnx").write_bytes(b"GRAPH")   # same size, after the check
    monkeypatch.setattr(outdir, "check_out", check_then_edit)
    with caplog.at_level("WARNING", logger="lrf.exporter"):
        outdir.replace(new, out)
    assert (out / "step.onnx").read_bytes() == b"new graph"
    kept = [p for p in tmp_path.iterdir() if outdir.OLD_TAG in p.name]
    assert len(kept) == 1 and (kept[0] / "step.onnx").read_bytes() == b"GRAPH"
    assert any("step.onnx" in r.getMessage() and "\n" not in r.getMessage()
               for r in caplog.records)


# ============================================================== 4. quadratic containment
DEEP = "a/" * 200_000 + "x.onnx"   # 0.4 MB, 200,001 components


def test_deep_path_in_a_bundle_manifest_is_refused_at_once(tmp_path):
    from lrf.runtime import schema

    with deadline(2), pytest.raises(ValueError, match="relative path inside the bundle"):
        schema.relpath(DEEP, "files.x")


def test_check_tree_is_linear_in_the_listed_paths(tmp_path):
    from lrf.runtime.containment import ContainmentError, check_tree, folders_of

    (tmp_path / "x.onnx").write_bytes(b"x")
    with deadline(3), pytest.raises(ContainmentError, match="32 parts"):
        check_tree(tmp_path, {DEEP, "x.onnx"})
    # the most a manifest may list: 20,000 paths of 31 folders each, in well under a second
    many = {"/".join(f"d{i}" for i in range(31)) + f"/f{k}" for k in range(20_000)}
    with deadline(3):
        assert len(folders_of(many)) == 31


def test_export_out_with_a_deep_manifest_key_is_refused_at_once(tmp_path):
    out = fake_bundle(tmp_path / "out", extra_keys={DEEP: {"size": 1, "sha256": "0" * 64}})
    with deadline(3), pytest.raises(outdir.OutDirError, match="not a path inside"):
        outdir.check_out(out)


def test_deep_manifest_key_through_generator_load_is_one_quick_line(tmp_path):
    from lrf.runtime import Generator

    b = tmp_path / "b"
    b.mkdir()
    m = json.loads((SHIPPED / MANIFEST).read_text())
    m["files"][DEEP] = {"size": 1, "sha256": "0" * 64}
    (b / MANIFEST).write_text(json.dumps(m))
    with deadline(3), pytest.raises(ValueError) as e:
        Generator.load(b)
    assert "\n" not in str(e.value)
