// The golden self-check (runtime/BUNDLE.md section 6): this browser re-runs every golden case
// and compares each result with the bundle's file under that file's own tolerance. Files are
// found by (case, content), never by file name. The runtime-made files come from lrf.runtime;
// the reference_* files from the PyTorch float32 reference (an independent check).

import { describe } from "./manifest.js";
import { decodePng } from "./png.js";
import { noise, normal, uniform, words } from "./prng.js";
import { sampleLatent } from "./generate.js";
import { timesteps } from "./schedule.js";

/** 10 log10(255^2 / MSE) over all values, capped at 100 dB (identical images). */
export function psnr(a, b) {
  let se = 0;
  for (let i = 0; i < a.length; i++) se += (a[i] - b[i]) ** 2;
  return se === 0 ? 100 : Math.min(100, 10 * Math.log10((255 * 255 * a.length) / se));
}

/** [passed, measured] of `got` against the golden `want` under a tolerance (null: not compared). */
export function judge(tolerance, want, got) {
  if (tolerance === null) return [true, null];
  const { metric, bar } = tolerance;
  if (want.length !== got.length) return [false, null];
  if (metric === "exact") {
    const same = want.every((v, i) => Object.is(v, got[i]));
    return [same, same ? 0 : null];
  }
  if (metric === "psnr_db") {
    const p = psnr(want, got);
    return [p >= bar, p];
  }
  let err = 0, scale = 0;
  for (let i = 0; i < want.length; i++) {
    err = Math.max(err, Math.abs(want[i] - got[i]));
    scale = Math.max(scale, Math.abs(want[i]));
  }
  if (metric === "rel_max_abs") err /= Math.max(scale, 1e-12);
  else if (metric !== "max_abs") throw new Error(`unknown golden tolerance metric ${metric}`);
  return [Number.isFinite(err) && err <= bar, err];
}

const bitsOf = (x) => new Uint32Array(Float32Array.of(x).buffer)[0];

/** Read a golden file by key: json -> object, f32 -> Float32Array, png -> uint8 (RGB, or grey). */
async function read(m, files, key) {
  const e = m.golden.files[key], buf = files.get(e.file);
  if (e.format === "json") return JSON.parse(new TextDecoder().decode(buf));
  if (e.format === "f32") return new Float32Array(buf.slice(0));   // little-endian, as is WASM
  const png = await decodePng(buf);
  if (e.shape?.length === 2) return png.data.filter((_, i) => i % 3 === 0);   // 8-bit grey mask
  return png.data;
}

/** What this browser makes for one case, keyed by golden content. */
async function runCase(m, pipeline, files, id, c) {
  const label = c.label, seed = BigInt(c.seed), steps = c.steps, guidance = c.guidance;
  const opts = { label, seed, steps, guidance };
  const out = {};
  if (c.kind === "generate") {
    const ts = timesteps(steps, m.sampling.shift);
    out.timesteps = ts;
    const z0 = noise(seed, [m.latent.channels, m.latent.height, m.latent.width]);
    out.noise = z0;
    out.denoise_first = await pipeline.denoise(z0, ts.subarray(0, pipeline.window[0] + 1), label, Math.fround(guidance));
    // stepwise always: it is what reference_* is compared against, whatever `modes` lists
    for (const mode of new Set([...c.modes, "stepwise"])) {
      const z = await sampleLatent(m, pipeline, { ...opts, mode });
      out[`latent_final_${mode}`] = z;
      out[`image_${mode}`] = await pipeline.decode(z);
    }
    out.reference_latent_final = out.latent_final_stepwise;
    out.reference_image = out.image_stepwise;
  } else if (pipeline.hasEncoder) {
    const key = (content) => `${id}.${content}`;
    const rgb = await read(m, files, key("input_image"));
    const mask = m.golden.files[key("mask")] ? await read(m, files, key("mask")) : null;
    const z = await sampleLatent(m, pipeline, { ...opts, mode: mask ? "stepwise" : "fused", init: { rgb, strength: c.strength, mask } });
    out.reference_image = await pipeline.decode(z);
    for (const mode of c.modes) out[`image_${mode}`] = out.reference_image;
  }
  return out;
}

/**
 * Run every golden check. Returns {passed, checks: [{key, metric, value, bar, passed}], line,
 * psnr (the default case's stepwise image vs lrf.runtime's), image (that image)}.
 */
export async function runGolden(m, files, pipeline) {
  const gf = m.golden.files, checks = [];
  const add = (key, metric, passed, value, bar) => checks.push({ key, metric, passed, value, bar });

  // RNG vectors: words and uniform bits exact, normals within the noise files' max_abs bar
  const noiseBar = Object.values(gf).find((e) => e.content === "noise")?.tolerance?.bar ?? 1e-6;
  const rngKey = Object.keys(gf).find((k) => gf[k].content === "rng_vectors" && gf[k].case === null);
  for (const v of (await read(m, files, rngKey)).vectors) {
    const w = words(v.seed, v.words_hex.length), u = uniform(v.seed, v.uniform_bits.length);
    const exact = w.every((x, i) => x === BigInt(v.words_hex[i])) && v.uniform_bits.every((b, i) => b === bitsOf(u[i]));
    add(`${rngKey} seed ${v.seed} words+uniforms`, "exact", exact, exact ? 0 : null, 0);
    const [ok, err] = judge({ metric: "max_abs", bar: noiseBar }, Float32Array.from(v.normal), normal(v.seed, v.normal.length));
    add(`${rngKey} seed ${v.seed} normals`, "max_abs", ok, err, noiseBar);
  }

  let headline = null;
  const d = describe(m);
  for (const [id, c] of Object.entries(m.golden.cases).sort()) {
    const got = await runCase(m, pipeline, files, id, c);
    for (const [content, value] of Object.entries(got)) {
      const key = `${id}.${content}`, e = gf[key];
      if (!e || !e.tolerance) continue;
      const [ok, measured] = judge(e.tolerance, await read(m, files, key), value);
      add(key, e.tolerance.metric, ok, measured, e.tolerance.bar);
      if (c.kind === "generate" && c.steps === d.steps && content === "image_stepwise") {
        headline = { key, psnr: measured, bar: e.tolerance.bar, image: value, case: c };
      }
    }
  }
  const passed = checks.length > 0 && checks.every((c) => c.passed);
  const failed = checks.filter((c) => !c.passed).map((c) => c.key);
  const head = headline ? `${headline.psnr?.toFixed(2)} dB vs lrf.runtime's image (bar ${headline.bar} dB), ` +
    `${headline.case.class ?? headline.case.label} seed ${headline.case.seed}, ${headline.case.steps} steps; ` : "";
  const line = `Golden check ${passed ? "PASS" : "FAIL"}: ${head}${checks.length - failed.length}/${checks.length} files within tolerance` +
    (failed.length ? ` (failed: ${failed.slice(0, 3).join(", ")}${failed.length > 3 ? ", ..." : ""})` : "");
  return { passed, checks, line, psnr: headline?.psnr ?? null, bar: headline?.bar ?? null, image: headline?.image ?? null, headline };
}
