"""``lrf-export --check BUNDLE``: re-verify an existing schema v2 bundle.

The same rules as ``Generator.load`` (one schema check, containment: no symlinks, nothing
unlisted, external data listed; every size and sha256), then the golden files: RNG vectors,
timesteps and noise against ``lrf.prng`` / the scheduler, and every case in its ``modes``
re-run through ``lrf.runtime`` against each file's tolerance and against the PyTorch
``reference_*`` files (an independent check, not a re-read of what the runtime wrote).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lrf import prng
from lrf.exporter.golden import judge, read_file
from lrf.runtime import Generator, open_bundle, scheduler


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


def _run_case(gen: Generator, b, case_id: str, case: dict) -> dict[str, np.ndarray]:
    """What this runtime makes for one golden case, keyed by golden content."""
    files = b.manifest["golden"]["files"]
    label, seed, n, g = case["label"], int(case["seed"]), case["steps"], case["guidance"]
    out: dict[str, np.ndarray] = {}
    if case["kind"] == "generate":
        noise = gen.noise([seed])
        y, gv = np.asarray([label], np.int32), np.asarray([g], np.float32)
        ts = scheduler.timesteps(n, gen.shift)
        out["noise"], out["timesteps"] = noise, ts
        k = gen.window[0]
        out["denoise_first"] = gen.denoise(noise, ts[:k + 1], y, gv, window=k)
        for mode in case["modes"]:
            z = gen.sample_latents(noise, y, gv, n, mode=mode)
            out[f"latent_final_{mode}"], out[f"image_{mode}"] = z, gen.decode(z)[0]
        out["reference_latent_final"] = out.get("latent_final_stepwise")
        out["reference_image"] = out.get("image_stepwise")
    elif "encoder" in b.graphs:
        image = read_file(b, f"{case_id}.input_image")
        mask = read_file(b, f"{case_id}.mask") if f"{case_id}.mask" in files else None
        for mode in case["modes"] or ["stepwise" if mask is not None else "fused"]:
            out[f"image_{mode}"] = np.asarray(gen.edit(image, label, seed, case["strength"],
                                                       mask, steps=n, guidance=g, mode=mode))
            out["reference_image"] = out[f"image_{mode}"]
    return out


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
        return "\n".join(lines)
    # preload: every graph's inputs/outputs are checked against the manifest before any run
    with Generator.load(path, backend=backend, verify=False, preload=True) as gen:
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
    return "\n".join(lines)
