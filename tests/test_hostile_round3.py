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


# ================================================ ONNX bundles (the shared tiny test bundle)
@pytest.fixture(scope="module")
def bundle(vivid_checkpoint, tmp_path_factory):
    from bundle_factory import shared_bundle

    return shared_bundle(tmp_path_factory, vivid_checkpoint)


@pytest.fixture
def copy(bundle, tmp_path):
    from bundle_factory import copy_bundle

    return copy_bundle(bundle, tmp_path / "b")


def _latent_cs(b: Path) -> tuple[int, int]:
    lat = json.loads((b / MANIFEST).read_text())["latent"]
    return lat["channels"], lat["height"]


def _loop_graph(b: Path, trip: str = "const", where: str = "denoise", nested: bool = False):
    """Replace ``where``.onnx with a graph whose Loop runs ``trip`` times: "const" (10**15),
    "timesteps" (len(timesteps) * 10**12), "none" (no trip count: only a condition that stays
    true). The body adds nothing, so only the trip count makes it hang."""
    import onnx
    from onnx import TensorProto, helper

    from bundle_factory import denoise_model, read, write

    c, s = _latent_cs(b)
    lat = ["batch", c, s, s]
    inner = [helper.make_node("Identity", ["cond"], ["cond_out"]),
             helper.make_node("Identity", ["z_in"], ["z_out"])]
    if nested:
        sub = helper.make_graph(
            [helper.make_node("Identity", ["c2"], ["c2o"]),
             helper.make_node("Identity", ["w"], ["wo"])], "inner",
            [helper.make_tensor_value_info("j", TensorProto.INT64, []),
             helper.make_tensor_value_info("c2", TensorProto.BOOL, []),
             helper.make_tensor_value_info("w", TensorProto.FLOAT, lat)],
            [helper.make_tensor_value_info("c2o", TensorProto.BOOL, []),
             helper.make_tensor_value_info("wo", TensorProto.FLOAT, lat)])
        inner[1] = helper.make_node("Loop", ["outer_k", "", "z_in"], ["z_out"], body=sub)
    body = helper.make_graph(
        inner, "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
         helper.make_tensor_value_info("z_in", TensorProto.FLOAT, lat)],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("z_out", TensorProto.FLOAT, lat)])
    inits = [helper.make_tensor("big", TensorProto.INT64, [], [10**15]),
             helper.make_tensor("many", TensorProto.INT64, [1], [10**12]),
             helper.make_tensor("one", TensorProto.INT64, [1], [1]),
             helper.make_tensor("axis0", TensorProto.INT64, [1], [0]),
             helper.make_tensor("yes", TensorProto.BOOL, [], [True])]
    nodes = [helper.make_node("Shape", ["timesteps"], ["n"]),
             helper.make_node("Sub", ["n", "one"], ["k1"]),
             helper.make_node("Squeeze", ["k1", "axis0"], ["outer_k"])]
    if trip == "const":
        loop_in = ["big", "", "latent"]
    elif trip == "timesteps":
        nodes += [helper.make_node("Mul", ["n", "many"], ["nn"]),
                  helper.make_node("Squeeze", ["nn", "axis0"], ["huge"])]
        loop_in = ["huge", "", "latent"]
    elif trip == "legit":
        loop_in = ["outer_k", "", "latent"]
    else:
        loop_in = ["", "yes", "latent"]
    nodes.append(helper.make_node("Loop", loop_in, ["denoised"], body=body))
    model = denoise_model(nodes, inits, c, s)
    onnx.checker.check_model(model)
    if where == "decoder":   # the same Loop in front of the real decoder
        dec = onnx.load(str(b / "decoder.onnx"))
        loop = helper.make_node("Loop", ["big", "", "latent"], ["latent_looped"], body=helper.make_graph(
            [helper.make_node("Identity", ["cond"], ["cond_out"]),
             helper.make_node("Identity", ["z_in"], ["z_out"])], "body",
            [helper.make_tensor_value_info("i", TensorProto.INT64, []),
             helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
             helper.make_tensor_value_info("z_in", TensorProto.FLOAT, None)],
            [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
             helper.make_tensor_value_info("z_out", TensorProto.FLOAT, None)]))
        for n in dec.graph.node:
            n.input[:] = ["latent_looped" if x == "latent" else x for x in n.input]
        dec.graph.node.insert(0, loop)
        dec.graph.initializer.append(inits[0])
        onnx.save(dec, str(b / "decoder.onnx"))
    else:
        onnx.save(model, str(b / "denoise.onnx"))
    write(b, read(b))
    return b


# ==================================================== 2. a hostile graph cannot be stopped
@pytest.mark.parametrize("trip,where,nested", [("const", "denoise", False),
                                               ("timesteps", "denoise", False),
                                               ("none", "denoise", False),
                                               ("legit", "denoise", True),
                                               ("const", "decoder", False)])
def test_loop_trip_count_not_the_schemas_is_refused_at_load(copy, trip, where, nested):
    from lrf.exporter.check import check_bundle
    from lrf.runtime import Generator

    _loop_graph(copy, trip, where, nested)
    for load in (lambda: Generator.load(copy), lambda: check_bundle(copy)):
        with deadline(20), pytest.raises(ValueError, match="Loop") as e:
            load()
        assert "\n" not in str(e.value) and f"{where}.onnx" in str(e.value)


def test_loop_with_the_schemas_trip_count_still_loads(copy):
    from lrf.runtime import Generator

    _loop_graph(copy, "legit")   # a Loop over len(timesteps) - 1: what the schema defines
    with Generator.load(copy) as gen:
        z = gen.noise([0])
        out = gen.denoise(z, gen_ts(gen, 2), np.zeros(1, np.int32), 1.0)
    assert np.array_equal(out, z)


def gen_ts(gen, n):
    from lrf.runtime import scheduler

    return scheduler.timesteps(n, gen.shift)


_HANG = r"""
import os, sys, time
sys.argv[0] = "lrf-generate"
try:   # the structural refusal off: the watchdog alone must stop the graph
    import lrf.runtime.onnx_structure as S
    S.check_graph_structure = lambda *a, **k: None
except ImportError:   # before issue 25
    pass
import onnxruntime
real_run = onnxruntime.InferenceSession.run
def run(self, *a, **k):
    open(os.environ["MARK"], "w").close()
    return real_run(self, *a, **k)
onnxruntime.InferenceSession.run = run
if sys.argv[1] == "api":
    from lrf.runtime import Generator
    gen = Generator.load(sys.argv[2], time_limit=float(sys.argv[3]))
    t0 = time.monotonic()
    try:
        gen.generate(0, 0)
    except ValueError as e:
        print(f"{time.monotonic() - t0:.2f} {e}")
else:
    from lrf.models.cli import main
    sys.exit(main(["--bundle", sys.argv[2], "--class", "0", "--out", sys.argv[3]]))
"""


def _hang(args, mark, **kw):
    import subprocess
    import sys

    env = dict(os.environ, MARK=str(mark), OMP_NUM_THREADS="1")

    def as_from_a_terminal():
        # an ignored SIGINT is inherited through exec: another test of this pytest process may
        # leave it ignored (lrf.cli ignores a second Ctrl-C while it cleans up), and a program
        # started with SIGINT ignored is rightly deaf to Ctrl-C, as a shell's background job is
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    return subprocess.Popen([sys.executable, "-c", _HANG, *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=as_from_a_terminal, **kw)


def test_hanging_graph_is_stopped_by_its_time_limit(copy, tmp_path):
    _loop_graph(copy, "const")
    p = _hang(["api", str(copy), "1.0"], tmp_path / "mark")
    try:
        out, err = p.communicate(timeout=90)
    finally:
        p.kill()
    took, _, msg = out.strip().partition(" ")
    assert "time limit" in msg and "denoise" in msg, (out, err)
    assert float(took) < 5.0
    assert "\x1b[" not in err, err   # no onnxruntime log line


@pytest.mark.parametrize("sig,status,word", [(signal.SIGINT, 130, "interrupted"),
                                             (signal.SIGTERM, 143, "terminated")])
def test_signal_ends_a_hanging_graph_within_a_second(copy, tmp_path, sig, status, word):
    _loop_graph(copy, "const")
    mark = tmp_path / "mark"
    p = _hang(["cli", str(copy), str(tmp_path / "x.png")], mark)
    try:
        t0 = time.monotonic()
        while not mark.exists() and p.poll() is None and time.monotonic() - t0 < 90:
            time.sleep(0.05)
        assert mark.exists(), p.communicate(timeout=5)
        time.sleep(0.5)                       # well inside the Loop now
        sent = time.monotonic()
        p.send_signal(sig)
        try:
            p.wait(timeout=5)
        except Exception:
            pass
        took = time.monotonic() - sent
        out, err = p.communicate(timeout=5) if p.returncode is not None else ("", "")
    finally:
        p.kill()
    assert p.returncode == status, (p.returncode, err)
    assert err.strip().splitlines() == [f"lrf-generate: {word}"], err
    assert took < 1.0, took
    assert not list(tmp_path.glob("*.png*"))


# ========================================== 7. Generator.denoise maps labels onto other classes
@pytest.mark.parametrize("label", [np.array([-5]), np.array([2**40], np.int64),
                                   np.array([10], np.int64), np.array([0.5]), np.array([[0]]),
                                   np.array([True]), np.array([0, 1])])
def test_denoise_refuses_out_of_range_labels(bundle, label):
    from lrf.runtime import Generator

    with Generator.load(bundle) as gen:
        with pytest.raises(ValueError, match="label") as e:
            gen.denoise(gen.noise([0]), gen_ts(gen, 1), label, 1.0)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("text", ["²", "9" * 5001, "٣", " 3", "+3", "3.0"])
def test_odd_label_strings_get_our_message(bundle, text):
    from lrf.runtime import Generator

    with Generator.load(bundle) as gen:
        with pytest.raises(ValueError, match="unknown label") as e:
            gen.class_index(text)
    assert len(str(e.value)) < 400


# ============================================================= runtime weak spots
def test_onnxruntime_failure_while_running_is_one_line_naming_the_graph(copy, tmp_path, capfd):
    import onnx
    from onnx import TensorProto, helper

    from bundle_factory import denoise_model, read, write
    from lrf.models.cli import main

    c, s = _latent_cs(copy)
    nodes = [helper.make_node("Reshape", ["latent", "odd"], ["r"]),   # fails at run time
             helper.make_node("Reshape", ["r", "back"], ["denoised"])]
    inits = [helper.make_tensor("odd", TensorProto.INT64, [2], [-1, 1000003]),
             helper.make_tensor("back", TensorProto.INT64, [4], [-1, c, s, s])]
    model = denoise_model(nodes, inits, c, s)
    onnx.save(model, str(copy / "denoise.onnx"))
    write(copy, read(copy))
    rc = main(["--bundle", str(copy), "--class", "0", "--out", str(tmp_path / "x.png")])
    err = capfd.readouterr().err
    assert rc == 2, err
    assert len(err.strip().splitlines()) == 1 and "\x1b" not in err, err
    assert "denoise" in err and "internal error" not in err


@pytest.mark.parametrize("field,text", [
    ('"guidance": 3.0', '"guidance": 1' + "0" * 400),
    ('"shift": 1.0,', '"shift": 1' + "0" * 400 + ","),
    ('"guidance": 3.0', '"guidance": 1e400'),
])
def test_huge_json_numbers_are_a_manifest_error(copy, field, text):
    from lrf.runtime import Generator

    raw = (copy / MANIFEST).read_text()
    m = json.loads(raw)
    raw = json.dumps(m).replace(field, text, 1)
    assert text in raw
    (copy / MANIFEST).write_text(raw)
    with pytest.raises(ValueError) as e:
        Generator.load(copy)
    assert type(e.value).__name__ in ("ManifestError", "ValueError")
    assert "manifest.json" in str(e.value) and "\n" not in str(e.value)


def test_latent_larger_than_the_graph_is_refused_at_load(copy):
    from bundle_factory import read, write
    from lrf.runtime import Generator

    m = read(copy)
    m["latent"]["height"] = m["latent"]["width"] = 4096
    m["image"]["height"] = m["image"]["width"] = 8 * 4096
    write(copy, m, refresh=False)
    with deadline(5), pytest.raises(ValueError, match="latent") as e:
        Generator.load(copy)
    assert "4096" in str(e.value)


def test_graph_replaced_by_a_folder_is_not_called_unlisted(copy):
    from lrf.runtime import Generator

    (copy / "decoder.onnx").unlink()
    (copy / "decoder.onnx").mkdir()
    with pytest.raises(ValueError) as e:
        Generator.load(copy)
    assert "not listed" not in str(e.value) and "folder" in str(e.value)


def test_graph_swapped_after_load_is_refused_when_first_opened(copy):
    from lrf.runtime import Generator

    gen = Generator.load(copy)   # graphs open lazily
    good = (copy / "decoder.onnx").read_bytes()
    (copy / "decoder.onnx").write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    with pytest.raises(ValueError, match="decoder.onnx.*(changed|sha256)"):
        gen.generate(0, 0)
    gen.close()


def test_bundle_in_a_non_utf8_folder_runs(bundle, tmp_path):
    import shutil

    from lrf.runtime import Generator

    odd = os.path.join(os.fsencode(tmp_path), b"caf\xe9-bundle")
    shutil.copytree(os.fsencode(bundle), odd)
    with Generator.load(os.fsdecode(odd)) as gen:
        img = gen.generate(0, 0)
    assert img.dtype == np.uint8


def test_onnxruntime_telemetry_is_off_for_what_lrf_starts(bundle, tmp_path):
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("ORT_")}
    env["HOME"] = str(tmp_path)
    code = ("import sys\nfrom lrf.runtime import Generator\n"
            "Generator.load(sys.argv[1]).generate(0, 0)\n")
    r = subprocess.run([sys.executable, "-c", code, str(bundle)], env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    left = [str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")]
    assert left == [], left


# =========================================== 3. bundle and checkpoint strings reach the terminal
HOSTILE = "ca\x1b[2J\x1b]0;owned\x07t\u202egnp.exe\u2066"
RAW = ("\x1b", "\x07", "\u202e", "\u2066")


def _hostile_checkpoint(src: str, dst: Path, classes=None, sampling=None) -> str:
    from conftest import CLASSES
    from lrf.models.checkpoint import load_checkpoint, save_checkpoint

    ck = load_checkpoint(src)
    save_checkpoint(dst, ck.model, ck.codec, classes or [HOSTILE] + CLASSES[1:],
                    sampling=sampling or {"steps": 1})
    return str(dst)


def test_bundle_class_name_is_escaped_on_the_success_line(copy, tmp_path, capsys):
    from bundle_factory import read, write
    from lrf.models.cli import main

    m = read(copy)
    m["classes"][0] = HOSTILE
    write(copy, m, refresh=False)
    rc = main(["--bundle", str(copy), "--class", "0", "--out", str(tmp_path / "x.png"),
               "--steps", "1"])
    out = capsys.readouterr().out
    assert rc == 0 and "wrote" in out and "\\x1b" in out, out
    assert not any(c in out for c in RAW), repr(out)


def test_checkpoint_class_name_is_escaped_on_the_success_line(tiny_checkpoint, tmp_path, capsys):
    from lrf.models.cli import main

    ck = _hostile_checkpoint(tiny_checkpoint, tmp_path / "ck")
    rc = main(["--checkpoint", ck, "--class", "0", "--out", str(tmp_path / "x.png"),
               "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0 and "wrote" in out, out
    assert not any(c in out for c in RAW), repr(out)


def test_check_report_escapes_golden_case_ids(copy):
    from bundle_factory import read, write
    from lrf.exporter.check import check_bundle

    m = read(copy)
    g = m["golden"]
    old = next(k for k in g["cases"] if k.startswith("generate_"))
    new = old + "\x1b]0;owned\x07\u202e"
    g["cases"][new] = g["cases"].pop(old)
    for key in [k for k in g["files"] if k.startswith(old + ".")]:
        entry = g["files"].pop(key)
        entry["case"] = new
        g["files"][new + key[len(old):]] = entry
    write(copy, m, refresh=False)
    report = check_bundle(copy)
    assert "owned" in report
    assert not any(c in report for c in RAW), repr(report)


# ====================================== 5. the PyTorch path accepts guidance 1e39 (black image)
@pytest.mark.parametrize("extra", [["--guidance", "1e39"], ["--guidance", "-1"],
                                   ["--guidance", "21"]])
@pytest.mark.parametrize("source", ["checkpoint", "default", "bundle"])
def test_one_guidance_rule_for_every_path(tiny_checkpoint, bundle, tmp_path, capsys, extra,
                                          source):
    from lrf.models.cli import main

    src = {"checkpoint": ["--checkpoint", tiny_checkpoint], "default": [],
           "bundle": ["--bundle", str(bundle)]}[source]
    rc = main([*src, "--class", "0", "--steps", "1", "--out", str(tmp_path / "x.png"), *extra])
    err = capsys.readouterr().err
    assert rc == 2 and "guidance" in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("what", ["--out", "--grid"])
def test_checkpoint_sampling_guidance_obeys_the_same_rule(tiny_checkpoint, tmp_path, capsys, what):
    from conftest import CLASSES
    from lrf.models.cli import main

    ck = _hostile_checkpoint(tiny_checkpoint, tmp_path / "ck", CLASSES,
                             {"steps": 1, "guidance": 1e39})
    args = ["--class", "0", "--out", str(tmp_path / "x.png")] if what == "--out" else \
        ["--grid", str(tmp_path / "x.png"), "--per-class", "1"]
    rc = main(["--checkpoint", ck, *args, "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "guidance" in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "x.png").exists()


# ============================================ 6. lrf-bench --json/--plot replaces anything
@pytest.mark.parametrize("flag", ["--json", "--plot"])
@pytest.mark.parametrize("kind", ["fifo", "device", "folder"])
def test_bench_outputs_are_checked_before_measuring(tmp_path, monkeypatch, capsys, flag, kind):
    from lrf.benchmarks import cli as bench

    def measuring(*a, **k):
        raise RuntimeError("measuring started")
    monkeypatch.setattr(bench, "_prepare", measuring)
    target = tmp_path / "out"
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "folder":
        target.mkdir()
    else:
        target = Path("/dev/full")
    rc = bench.main(["--bundle", str(SHIPPED), flag, str(target)])
    err = capsys.readouterr().err
    assert rc == 2 and flag in err and "measuring started" not in err, err
    assert len(err.splitlines()) == 1
    if kind == "fifo":
        assert os.path.exists(target) and not target.is_file()


def test_bench_writes_through_the_one_atomic_output(tmp_path, monkeypatch):
    """The report is written by lrf.cli.atomic_output (the project's one output check)."""
    import lrf.cli
    from lrf.benchmarks import cli as bench

    used = []
    real = lrf.cli.atomic_output

    def spy(path, flag="--out"):
        used.append(flag)
        return real(path, flag)
    monkeypatch.setattr(bench, "atomic_output", spy, raising=False)
    src = Path(bench.__file__).read_text()
    assert 'atomic_output(args.json, "--json")' in src and \
        'atomic_output(args.plot, "--plot")' in src


# ============================================================= CLI weak spots
def test_unwritable_out_names_the_out_not_the_temporary(tmp_path):
    from lrf.cli import atomic_output

    target = tmp_path / "x.png"
    with pytest.raises(OSError) as e:
        with atomic_output(target) as tmp:
            raise PermissionError(13, "Permission denied", str(tmp))
    assert str(target) in str(e.value) and ".lrf-tmp-" not in str(e.value), str(e.value)
    assert list(tmp_path.iterdir()) == []


def test_stdout_failure_after_the_png_says_so(bundle, tmp_path, capsys, monkeypatch):
    import errno
    import sys

    from lrf.models.cli import main

    class Full:
        def write(self, text):
            raise OSError(errno.ENOSPC, "No space left on device")

        def flush(self):
            pass
    monkeypatch.setattr(sys, "stdout", Full())
    rc = main(["--bundle", str(bundle), "--class", "0", "--steps", "1", "--out",
               str(tmp_path / "x.png")])
    err = capsys.readouterr().err
    assert rc == 2 and "standard output" in err and "x.png" in err, err
    assert (tmp_path / "x.png").is_file()


_HUP = r"""
import sys, time
from lrf.cli import atomic_output, run
def fn(argv):
    with atomic_output(sys.argv[1]) as tmp:
        open(tmp, "w").write("half")
        print("ready", flush=True)
        time.sleep(60)
sys.exit(run("prog", fn))
"""


def test_sighup_during_the_final_write_leaves_no_temporary(tmp_path):
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-c", _HUP, str(tmp_path / "x.png")], text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert p.stdout.readline().strip() == "ready"
        p.send_signal(signal.SIGHUP)
        p.wait(timeout=10)
        err = p.stderr.read()
    finally:
        p.kill()
    assert p.returncode == 129 and err.strip() == "prog: hangup", (p.returncode, err)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("text", ["²", "9" * 5001, "٣"])
def test_checkpoint_odd_label_strings_get_our_message(tiny_checkpoint, text):
    from lrf.models.checkpoint import load_checkpoint

    with pytest.raises(ValueError, match="unknown class") as e:
        load_checkpoint(tiny_checkpoint).class_index(text)
    assert len(str(e.value)) < 400


# ==================================== lrf-export --check: the golden section's own fields
def _golden_case(m):
    return next(v for k, v in m["golden"]["cases"].items() if k.startswith("generate_"))


def _golden_file(m, suffix):
    return next(v for k, v in m["golden"]["files"].items() if k.endswith(suffix))


@pytest.mark.parametrize("tamper,match", [
    (lambda m: _golden_case(m).pop("seed"), r"golden\.cases\..*seed"),
    (lambda m: _golden_case(m).update(seed="abc"), r"golden\.cases\..*seed"),
    (lambda m: _golden_case(m).update(seed=1.5), r"golden\.cases\..*seed"),
    (lambda m: _golden_case(m).update(steps="2"), r"golden\.cases\..*steps"),
    (lambda m: _golden_case(m).update(label=99), r"golden\.cases\..*label"),
    (lambda m: _golden_case(m).update(modes=["warp"]), r"golden\.cases\..*modes"),
    (lambda m: _golden_file(m, ".noise").update(shape=["a", "b"]), r"golden\.files\..*shape"),
    (lambda m: _golden_file(m, ".noise").update(shape=[2**40, 2**40]), r"golden\.files\..*shape"),
    (lambda m: _golden_file(m, ".noise")["tolerance"].update(bar=-1), r"golden\.files\..*bar"),
    (lambda m: _golden_file(m, ".noise")["tolerance"].update(metric="vibes"),
     r"golden\.files\..*metric"),
    (lambda m: _golden_file(m, ".noise").update(tolerance=None), r"golden\.files\..*tolerance"),
])
def test_check_validates_the_golden_section(copy, tamper, match):
    from bundle_factory import read, write
    from lrf.exporter.check import check_bundle

    m = read(copy)
    tamper(m)
    write(copy, m, refresh=False)
    with pytest.raises(ValueError, match=match) as e:
        check_bundle(copy)
    assert "\n" not in str(e.value)


def test_negative_psnr_bar_cannot_pass_a_wrong_image(copy):
    from PIL import Image

    from bundle_factory import read, write
    from lrf.exporter.check import check_bundle

    m = read(copy)
    for key, entry in m["golden"]["files"].items():
        if entry["tolerance"] and entry["tolerance"]["metric"] == "psnr_db":
            entry["tolerance"]["bar"] = -1000
            if entry["content"].startswith("image_"):
                h, w, c = entry["shape"]
                Image.fromarray(np.zeros((h, w, c), np.uint8)).save(copy / entry["file"])
    write(copy, m)
    with pytest.raises(ValueError, match="bar"):
        check_bundle(copy)


# ===================================================================== prompts (text bundles)
PROMPTS_OK = ["a photo of a cat", "日本語のプロンプト", "emoji 🐈‍⬛", "x" * 1000]


@pytest.mark.parametrize("text", PROMPTS_OK)
def test_ordinary_prompts_pass_unchanged(text):
    from lrf.runtime.prompt import check_prompt

    assert check_prompt(text) == text


@pytest.mark.parametrize("text,says", [
    ("a\x00cat", "NUL"),
    ("a\x1b[2Jcat", "control character"),
    ("\x07", "control character"),
    ("cat\u202egod", "bidirectional"),
    ("cat\u2066x\u2069", "bidirectional"),
    ("cat\ud800", "surrogate"),
    ("\udfff", "surrogate"),
    ("x" * (1 << 20), "characters"),
    ("", "empty"),
    ("   \n\t ", "empty"),
    (b"bytes", "str"),
    (None, "str"),
    (42, "str"),
])
def test_hostile_prompts_are_one_clear_line(text, says):
    from lrf.runtime.prompt import check_prompt

    with deadline(2), pytest.raises(ValueError, match=says) as e:
        check_prompt(text)
    msg = str(e.value)
    assert "\n" not in msg and len(msg) < 300
    assert not any(c in msg for c in ("\x00", "\x1b", "\x07", "\u202e", "\u2066")), repr(msg)
    msg.encode("utf-8")   # printable: no lone surrogate in the message either


def test_prompt_newlines_and_tabs_are_ordinary_whitespace():
    from lrf.runtime.prompt import check_prompt

    assert check_prompt("a cat\non a mat\tat noon") == "a cat\non a mat\tat noon"
