"""``lrf-export --out`` is safe to point anywhere (exporter/outdir.py): only an unchanged bundle
of ours is replaced, only its listed files are deleted, and killed exports are cleaned up.
The bundles here are small stand-ins with a real manifest ``files`` table, built in the test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lrf.digest import sha256_file
from lrf.exporter import outdir
from lrf.runtime import MANIFEST, SCHEMA


def fake_bundle(path: Path, files: dict[str, bytes] | None = None) -> Path:
    files = files or {"step.onnx": b"graph", "golden/noise.f32": b"\0" * 16}
    for rel, data in files.items():
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_bytes(data)
    table = {rel: {"size": len(data), "sha256": sha256_file(path / rel)}
             for rel, data in files.items()}
    (path / MANIFEST).write_text(json.dumps({"schema": SCHEMA, "files": table}))
    return path


def tree(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


def test_new_empty_and_own_bundle_are_accepted(tmp_path):
    outdir.check_out(tmp_path / "new")
    (tmp_path / "empty").mkdir()
    outdir.check_out(tmp_path / "empty")
    outdir.check_out(fake_bundle(tmp_path / "b"))


def _refused(out, match):
    with pytest.raises(outdir.OutDirError, match=match) as e:
        outdir.check_out(out)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("tamper,match", [
    (lambda b: (b / "mine.txt").write_text("user data"), "'mine.txt', which its manifest"),
    (lambda b: (b / "notes").mkdir(), "folder 'notes'"),
    (lambda b: (b / "step.onnx").write_bytes(b"GRAPH"), "'step.onnx', which differs"),
    (lambda b: (b / "step.onnx").write_bytes(b"longer graph"), "differs"),
    (lambda b: (b / "link").symlink_to("/etc/passwd"), "symbolic link 'link'"),
    (lambda b: os.mkfifo(b / "fifo"), "'fifo', which is not a regular file"),
    (lambda b: (b / MANIFEST).write_text('{"schema": "other"}'), "schema is not"),
    (lambda b: (b / MANIFEST).write_text("[" * 100000), "not valid JSON"),
    (lambda b: (b / MANIFEST).write_text('{"schema": "lrf-bundle", "files": NaN}'),
     "not valid JSON"),
    (lambda b: (b / MANIFEST).write_text('{"schema": "lrf-bundle", "files": []}'),
     "'files' table"),
])
def test_tampered_bundle_is_refused(tmp_path, tamper, match):
    b = fake_bundle(tmp_path / "b")
    tamper(b)
    _refused(b, match)


def test_foreign_things_are_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    _refused(tmp_path / "file", "not a folder")
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "thesis.tex").write_text("years of work")
    _refused(tmp_path / "home", "not an lrf bundle")
    (tmp_path / "link").symlink_to(fake_bundle(tmp_path / "b"))
    _refused(tmp_path / "link", "symbolic link")
    _refused(tmp_path / "file" / "sub", "not a folder")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / MANIFEST).mkdir()
    _refused(tmp_path / "m", "not a regular file")


def test_replace_deletes_only_listed_files(tmp_path):
    old = fake_bundle(tmp_path / "out")
    new = fake_bundle(outdir.make_temp(old), {"step.onnx": b"new graph"})
    outdir.replace(new, old)
    assert tree(tmp_path) == ["out", "out/manifest.json", "out/step.onnx"]
    assert (old / "step.onnx").read_bytes() == b"new graph"


def test_replace_rechecks_a_bundle_changed_during_export(tmp_path):
    out = fake_bundle(tmp_path / "out")
    new = fake_bundle(outdir.make_temp(out), {"step.onnx": b"new"})
    (out / "added-meanwhile.png").write_bytes(b"user")
    with pytest.raises(outdir.OutDirError, match="added-meanwhile.png"):
        outdir.replace(new, out)
    assert (out / "added-meanwhile.png").read_bytes() == b"user"
    outdir.discard(new)
    assert tree(tmp_path) == sorted(["out", "out/added-meanwhile.png", "out/golden",
                                     "out/golden/noise.f32", "out/manifest.json",
                                     "out/step.onnx"])


def test_replace_onto_missing_or_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    for name in ("missing", "empty"):
        out = tmp_path / name
        outdir.replace(fake_bundle(outdir.make_temp(out)), out)
        assert (out / MANIFEST).is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


_KILLED = """
import os, sys
from lrf.exporter import outdir
t = outdir.make_temp(sys.argv[1])
(t / "step.onnx").write_bytes(b"half written" * 1000)
print(t, flush=True)
os.kill(os.getpid(), 9)
"""


def test_killed_exports_temporary_is_removed_by_the_next(tmp_path):
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-c", _KILLED, str(out)], capture_output=True, text=True)
    assert r.returncode == -9
    left = Path(r.stdout.strip())
    assert left.is_dir()
    live = outdir.make_temp(out)  # sweeps first; its own temporary is locked, so kept
    assert not left.exists() and live.is_dir()
    assert outdir.sweep(out) == [] and live.is_dir()
    outdir.discard(live)
    assert list(tmp_path.iterdir()) == []


def test_killed_commit_is_undone(tmp_path):
    out = tmp_path / "out"
    aside = fake_bundle(tmp_path / f".out{outdir.OLD_TAG}999999999-abcd1234")  # no such pid
    assert outdir.sweep(out) == []
    assert not aside.exists() and (out / "step.onnx").read_bytes() == b"graph"


def test_legacy_and_foreign_leftovers_are_reported_not_deleted(tmp_path):
    out = fake_bundle(tmp_path / "out")
    legacy = tmp_path / ".out.tmpk3j4"
    legacy.mkdir()
    aside = fake_bundle(tmp_path / f".out{outdir.OLD_TAG}999999999-cd")
    (aside / "mine.txt").write_text("user")
    notes = outdir.sweep(out)
    assert len(notes) == 2 and all("\n" not in n for n in notes)
    assert legacy.is_dir() and (aside / "mine.txt").is_file()


@pytest.mark.parametrize("kind", ["user-folder", "bundle+user-file", "symlink"])
def test_lrf_export_refuses_before_any_work(tiny_checkpoint, tmp_path, capsys, kind):
    from lrf.exporter.cli import main

    out = tmp_path / "out"
    if kind == "user-folder":
        out.mkdir()
        (out / "thesis.tex").write_text("years of work")
    elif kind == "bundle+user-file":
        fake_bundle(out)
        (out / "mine.txt").write_text("user")
    else:
        fake_bundle(tmp_path / "real")
        out.symlink_to(tmp_path / "real")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    code = main(["--target", "onnx", "--checkpoint", tiny_checkpoint, "--out", str(out),
                 "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("lrf-export: error: --out")
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
