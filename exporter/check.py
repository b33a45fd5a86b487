"""``lrf-export --check BUNDLE``: re-verify an existing schema v2 or v3 bundle.

The same rules as ``Generator.load`` (one schema check, containment: no symlinks, nothing
unlisted, external data listed; every size and sha256), then the golden files: RNG vectors,
timesteps and noise against ``lrf.prng`` / the scheduler, and every case in its ``modes``
re-run through ``lrf.runtime`` against each file's tolerance and against the PyTorch
``reference_*`` files (an independent check, not a re-read of what the runtime wrote).

A v3 text bundle (BUNDLE.md 11.5) adds: every ``token_ids`` prompt re-tokenized with the
bundle's ``tokenizer.json`` (exact ids and mask), the ``text_embedding`` ids re-encoded by its
``text_encoder`` (against this bundle's file and the fp32 PyTorch ``reference_text_pooled``),
prompt + style + seed -> image, and the prompt-guided edit under ``editing.schedule``. No torch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lrf import prng
from lrf.cli import escape
from lrf.exporter.golden import ENTRY_KEYS, edit_mode, judge, read_file, run_case
from lrf.exporter.metrics import COSINE_BAR, IMAGE_PSNR_DB, PSNR_CAP, TENSOR_REL_MAX_ABS
from lrf.runtime import Generator, open_bundle, scheduler
from lrf.runtime import schema as sc


class BundleCheckError(ValueError):
    """The bundle is readable but does not reproduce its golden files."""


def _expect(ok: bool, line: str) -> None:
    if not ok:
        raise BundleCheckError(line)


def _check_rng(b) -> None:
    for v in read_file(b, "rng_vectors")["vectors"]:
        s = int(v["seed"])
        words = [f"0x{int(w):016x}" for w in prng.words(s, len(v["words_hex"]))]
        ubits = [int(x) for x in prng.uniform(s, len(v["uniform_bits"])).view(np.uint32)]
        normal = prng.normal(s, len(v["normal"]))
        _expect(words == v["words_hex"] and ubits == v["uniform_bits"],
                f"golden rng_vectors: seed {s} does not match lrf.prng (words or uniforms)")
        _expect(bool(np.abs(normal - np.asarray(v["normal"], np.float32)).max() <= 1e-6),
                f"golden rng_vectors: seed {s} normals differ from lrf.prng")


def _check_token_ids(gen: Generator, b) -> int:
    """Every ``token_ids`` case re-tokenized with the bundle's tokenizer: exact ids and mask.
    Tokenizer cases include prompts the prompt gate refuses, so they go to the tokenizer
    directly (the bundle's own files, checked as :class:`lrf.runtime.text.PromptTokenizer`
    checks them). Returns the number of prompts."""
    data = read_file(b, "token_ids")
    rows = data.get("cases") if isinstance(data, dict) else None
    _expect(isinstance(rows, list) and bool(rows), "golden token_ids: expected a non-empty "
            "list of cases")
    tok = gen.prompt_cache().tokenizer.tokenizer
    for i, row in enumerate(rows):
        _expect(isinstance(row, dict) and isinstance(row.get("prompt"), str),
                f"golden token_ids: case {i} has no prompt string")
        enc = tok.encode(row["prompt"])
        _expect(enc.ids == row.get("ids") and enc.attention_mask == row.get("attention_mask"),
                f"golden token_ids: case {i} ({row['prompt'][:40]!r}) tokenizes to "
                f"{enc.ids[:12]}..., the file has {str(row.get('ids'))[:60]}")
    return len(rows)


def _run_text_case(gen: Generator, b, case_id: str, case: dict) -> dict[str, np.ndarray]:
    """A v3 case of a text bundle: ``text_embedding`` (ids -> text_pooled, against both this
    bundle's and the PyTorch file), or a prompt ``generate`` / ``img2img`` case."""
    if case["kind"] == "text_embedding":
        inp = read_file(b, f"{case_id}.inputs")
        out = gen.run("text_encoder", token_ids=np.asarray(inp["token_ids"], np.int64),
                      attention_mask=np.asarray(inp["attention_mask"], np.int64))
        return {"text_pooled": out["text_pooled"],
                "reference_text_pooled": out["text_pooled"]}
    label, seed, n, g = int(case["label"]), int(case["seed"]), case["steps"], case["guidance"]
    style = None if label == len(gen.classes) else label
    if case["kind"] == "generate":
        noise = gen.noise([seed])
        ts = scheduler.timesteps(n, gen.shift)
        text = gen.encode_prompts([case["prompt"]])
        y, gv = np.asarray([label], np.int32), np.asarray([g], np.float32)
        out = {"noise": noise, "timesteps": ts}
        for mode in case["modes"]:
            z = gen.sample_latents(noise, y, gv, n, mode=mode, text=text)
            out[f"latent_final_{mode}"], out[f"image_{mode}"] = z, gen.decode(z)[0]
        if case["modes"]:
            out["reference_image"] = out[f"image_{case['modes'][-1]}"]
        return out
    _expect(case.get("schedule", gen.edit_schedule) == gen.edit_schedule,
            f"golden {case_id}: schedule {case.get('schedule')!r} is not the bundle's "
            f"editing.schedule {gen.edit_schedule!r}")
    image = read_file(b, f"{case_id}.input_image")
    out = {}
    for mode in case["modes"] or ["fused"]:
        out[f"image_{mode}"] = gen.edit(image, seed=seed, strength=case["strength"], steps=n,
                                        guidance=g, mode=mode, prompt=case["prompt"],
                                        style=style)
    out["reference_image"] = list(out.values())[-1]
    return out


def _run_case(gen: Generator, b, case_id: str, case: dict) -> dict[str, np.ndarray]:
    """What this runtime makes for one golden case, keyed by golden content: the noise and
    timesteps it draws itself, then :func:`lrf.exporter.golden.run_case`; the last mode's
    result stands for the reference files. Empty for an edit case of a bundle without an
    encoder."""
    files = b.manifest["golden"]["files"]
    if gen.takes_prompt:
        return _run_text_case(gen, b, case_id, case)
    if case["kind"] == "generate":
        noise = gen.noise([int(case["seed"])])
        ts = scheduler.timesteps(case["steps"], gen.shift)
        out = {"noise": noise, "timesteps": ts, **run_case(gen, case, noise, ts)}
        out["reference_latent_final"] = out.get("latent_final_stepwise")
        out["reference_image"] = out.get("image_stepwise")
        return out
    if "encoder" not in b.graphs:
        return {}
    image = read_file(b, f"{case_id}.input_image")
    mask = read_file(b, f"{case_id}.mask") if f"{case_id}.mask" in files else None
    out = run_case(gen, {**case, "modes": case["modes"] or [edit_mode(mask)]}, image=image,
                   mask=mask)
    out["reference_image"] = list(out.values())[-1]
    return out


# ---------------------------------------------------------------- the golden section's own fields
KINDS = ("generate", "img2img", "inpaint")
TEXT_KINDS = ("generate", "img2img", "text_embedding")   # v3 text bundles (BUNDLE.md 11.5)
FORMATS = {"json": None, "f32": "float32", "png": "uint8"}
METRICS = ("exact", "max_abs", "rel_max_abs", "psnr_db", "cosine_min")
MAX_GOLDEN_ELEMENTS = 1 << 26   # 64 M values: far above any golden file (a 4096 px image)
# content that may go uncompared: inputs, and the int8 PyTorch latent (judged by its image)
UNJUDGED = {"input_image", "mask", "inputs"}


def _is_text(m: dict) -> bool:
    cond = m.get("conditioning") if m.get("schema_version") == 3 else None
    return isinstance(cond, dict) and cond.get("kind") == "text"


def check_golden(m: dict) -> None:
    """Types and ranges of every field of ``golden`` that the check trusts (ManifestError, one
    line: field, expected, got): a missing key, a seed that is not a uint64 string, a shape of
    strings or a bar that lets a wrong image pass are refused before anything is compared."""
    g = m.get("golden")
    if not isinstance(g, dict) or not isinstance(g.get("files"), dict) or \
            not isinstance(g.get("cases"), dict):
        sc.fail("golden", "an object with cases and files", type(g).__name__)
    n_classes, precision = len(m["classes"]), m["precision"]
    text = _is_text(m)
    for cid, case in g["cases"].items():
        where = f"golden.cases.{cid[:60]}"
        if not isinstance(case, dict):
            sc.fail(where, "an object", case)
        kind = sc.string(case, "kind", f"{where}.kind", list(TEXT_KINDS if text else KINDS))
        if kind == "text_embedding":
            prompts = sc.missing(case, "prompts", f"{where}.prompts")
            if not isinstance(prompts, list) or not prompts or \
                    not all(isinstance(p, str) for p in prompts):
                sc.fail(f"{where}.prompts", "a non-empty list of strings", prompts)
            if case.get("modes") != ["single"]:
                sc.fail(f"{where}.modes", "['single']", case.get("modes"))
            continue
        if text and not isinstance(sc.missing(case, "prompt", f"{where}.prompt"), str):
            sc.fail(f"{where}.prompt", "a string", case["prompt"])
        sc.seed(sc.missing(case, "seed", f"{where}.seed"), f"{where}.seed")
        # a text bundle's label is the style; null_class (no style) is one too
        sc.integer(case, "label", f"{where}.label", 0, n_classes - 1 + text)
        sc.integer(case, "steps", f"{where}.steps", 1, scheduler.MAX_STEPS)
        sc.number(case, "guidance", f"{where}.guidance", *scheduler.GUIDANCE_RANGE)
        if kind == "generate":
            if sc.missing(case, "strength", f"{where}.strength") is not None:
                sc.fail(f"{where}.strength", "null for a generate case", case["strength"])
        else:
            sc.number(case, "strength", f"{where}.strength", 0.0, 1.0)
        modes = sc.missing(case, "modes", f"{where}.modes")
        if not isinstance(modes, list) or len(set(map(str, modes))) != len(modes) or \
                not set(map(str, modes)) <= {"fused", "stepwise"}:
            sc.fail(f"{where}.modes", "a list of distinct modes among fused, stepwise", modes)
    tensor_bar = max(TENSOR_REL_MAX_ABS.values())
    for key, e in g["files"].items():
        where = f"golden.files.{key[:60]}"
        if not isinstance(e, dict) or set(e) != set(ENTRY_KEYS):
            sc.fail(where, f"keys {list(ENTRY_KEYS)}",
                    sorted(e) if isinstance(e, dict) else e)
        sc.relpath(e["file"], f"{where}.file")
        if e["file"] not in m["files"]:
            sc.fail(f"{where}.file", "a file listed in files", e["file"])
        fmt = sc.string(e, "format", f"{where}.format", list(FORMATS))
        if e["dtype"] != FORMATS[fmt]:
            sc.fail(f"{where}.dtype", repr(FORMATS[fmt]), e["dtype"])
        shape = e["shape"]
        if fmt == "json" and shape is not None or fmt != "json" and not (
                isinstance(shape, list) and 1 <= len(shape) <= 4 and all(
                    isinstance(d, int) and not isinstance(d, bool) and 1 <= d <= 1 << 16
                    for d in shape) and int(np.prod(shape)) <= MAX_GOLDEN_ELEMENTS):
            sc.fail(f"{where}.shape", "null for json, else 1..4 dims in 1..65536 of at most "
                    f"{MAX_GOLDEN_ELEMENTS} values", shape)
        if e["case"] is not None and e["case"] not in g["cases"]:
            sc.fail(f"{where}.case", "null or a key of golden.cases", e["case"])
        content = sc.string(e, "content", f"{where}.content")
        tol = e["tolerance"]
        if tol is None:
            if content not in UNJUDGED and not (content == "reference_latent_final"
                                                and precision != "fp32"):
                sc.fail(f"{where}.tolerance", "a tolerance (this content is compared)", tol)
            continue
        if not isinstance(tol, dict) or set(tol) != {"metric", "bar"}:
            sc.fail(f"{where}.tolerance", "null or an object {metric, bar}", tol)
        metric = sc.string(tol, "metric", f"{where}.tolerance.metric",
                           list(METRICS if text else METRICS[:-1]))   # cosine: text only
        # a bar looser than the spec's (BUNDLE.md section 6) would let a wrong result pass
        lo, hi = {"exact": (0.0, 0.0), "max_abs": (0.0, tensor_bar),
                  "rel_max_abs": (0.0, tensor_bar),
                  "psnr_db": (IMAGE_PSNR_DB.get(precision, min(IMAGE_PSNR_DB.values())),
                              PSNR_CAP),
                  "cosine_min": (COSINE_BAR, 1.0)}[metric]
        sc.number(tol, "bar", f"{where}.tolerance.bar", lo, hi)


def _missing_package(e: Exception) -> bool:
    """``e`` says an export package is not installed (get_target's ValueError, or the import of
    a target module failing on torch)."""
    if isinstance(e, ModuleNotFoundError):
        return True
    return isinstance(e, ValueError) and "needs the Python package" in str(e)


def check_bundle(path: str | Path, backend: str | None = None) -> str:
    """Verify ``path``; return a short report, raise (ValueError / FileNotFoundError) on failure.

    Needs no torch and no export tools: the golden cases run through ``lrf.runtime``; a target's
    own file checks (:meth:`Target.verify_bundle`) run where its export packages are installed,
    and are required only for a target no runtime backend runs (Core ML here)."""
    from lrf.exporter.targets import TARGET_BACKENDS, get_target, known_targets

    b = open_bundle(path, verify=True)
    m = b.manifest
    check_golden(m)
    lines = [f"{Path(path)}: schema v{m['schema_version']}, target {b.target}, "
             f"{m['precision']}; {len(m['files'])} files, containment and checksums ok"]
    golden = m.get("golden")
    _expect(isinstance(golden, dict) and isinstance(golden.get("files"), dict)
            and isinstance(golden.get("cases"), dict),
            "manifest.json: golden: expected an object with cases and files, got none")
    for key in golden["files"]:
        read_file(b, key)  # every entry one shape, every file inside the bundle and readable
    _check_rng(b)
    lines.append("golden RNG vectors match lrf.prng")
    if b.target not in TARGET_BACKENDS:
        raise ValueError(f"manifest.json: target {b.target!r} is not one this lrf-mobile "
                         f"version knows ({', '.join(known_targets())})")
    backend = backend or TARGET_BACKENDS[b.target]
    try:
        lines += get_target(b.target).verify_bundle(b.path, m)
    except (ValueError, ImportError) as e:  # its export packages (torch among them) are missing
        if TARGET_BACKENDS[b.target] is None or not _missing_package(e):
            raise
        lines.append(f"{b.target} export tools not installed: its own file checks skipped "
                     f"(the runtime checks every graph below)")
    if backend is None:
        lines.append(f"no runtime backend runs target {b.target!r} here: golden cases not re-run")
        return _report(lines)
    # preload: every graph's inputs/outputs are checked against the manifest before any run
    with Generator.load(path, backend=backend, verify=False, preload=True) as gen:
        if gen.takes_prompt:
            n = _check_token_ids(gen, b)
            lines.append(f"golden token_ids: {n} prompts tokenize exactly (tokenizer.json)")
        for case_id, case in sorted(golden["cases"].items()):
            got = _run_case(gen, b, case_id, case)
            if not got:
                lines.append(f"golden {case_id}: not re-run (the bundle has no encoder)")
                continue
            for content, value in got.items():
                key = f"{case_id}.{content}"
                if key not in golden["files"] or value is None:
                    continue
                entry = golden["files"][key]
                ok, measured = judge(entry["tolerance"], read_file(b, key), value)
                shown = "n/a" if measured is None else f"{measured:.4g}"
                tol = entry["tolerance"] or {"metric": "exact", "bar": "identical"}
                _expect(ok, f"golden {key}: {tol['metric']} {shown} misses the "
                            f"bar {tol['bar']} ({entry['file']})")
                if entry["tolerance"] is not None:
                    lines.append(f"golden {key}: {entry['tolerance']['metric']} {shown} "
                                 f"(bar {entry['tolerance']['bar']})")
    return _report(lines)


def _report(lines: list[str]) -> str:
    """The report, every line escaped: case ids and file names come from the bundle."""
    return "\n".join(escape(line) for line in lines)
