// manifest.json: fetch, parse and the one schema check (runtime/BUNDLE.md section 2.4, mirrored
// from lrf.runtime's schema.py). A failure is one line:
//   manifest.json: <field path>: expected <type / range>, got <value>
// The page reads every name, shape, role and default from the manifest; nothing is hard-coded.

import { SCHEMA_VERSION, parseGraphs } from "./binding.js";
import { GUIDANCE_RANGE, MAX_STEPS, timesteps } from "./schedule.js";
import { ManifestError, fail, int, need, num, obj, relpath, seedString, str } from "./validate.js";

const TARGETS = ["onnx", "executorch", "coreml"];
const MAX_DIM = 4096, MAX_CLASSES = 1000;
const V1_LINE = "bundle schema v1 is no longer supported by this runtime (schema v2); re-export it with lrf-export";

/** Fetch and check baseUrl/manifest.json; returns {manifest, graphs} (graphs parsed by role). */
export async function loadManifest(baseUrl) {
  const url = new URL("manifest.json", baseUrl);
  const resp = await fetch(url, { cache: "no-store" });
  if (!resp.ok) throw new Error(`no bundle at ${baseUrl}: HTTP ${resp.status} for manifest.json (export one with lrf-export)`);
  let m;
  try { m = JSON.parse(await resp.text()); } catch (e) { throw new ManifestError(`manifest.json: not valid JSON (${e.message}); re-export the bundle`); }
  return checkManifest(m);
}

/** The schema check; returns {manifest, graphs}. */
export function checkManifest(m) {
  if (m === null || typeof m !== "object" || m.schema !== "lrf-bundle") fail("schema", '"lrf-bundle"', m?.schema);
  const version = m.schema_version;
  if (!Number.isInteger(version) || version < 1) fail("schema_version", "a positive integer", version);
  if (version > SCHEMA_VERSION) {
    throw new ManifestError(`manifest.json: bundle schema version ${version} is newer than this page supports (${SCHEMA_VERSION}); update the page or re-export the bundle`);
  }
  if (version < SCHEMA_VERSION) throw new ManifestError(V1_LINE.replace("v1", `v${version}`));
  if (str(m, "target", "target", TARGETS) !== "onnx") fail("target", '"onnx" (the browser runs ONNX bundles)', m.target);
  str(m, "precision", "precision", ["fp32", "int8"]);
  const model = obj(m, "model", "model");
  if (typeof need(model, "guidance_distilled", "model.guidance_distilled") !== "boolean") fail("model.guidance_distilled", "true or false", model.guidance_distilled);
  const classes = need(m, "classes", "classes");
  if (!Array.isArray(classes) || classes.length < 1 || classes.length > MAX_CLASSES ||
      !classes.every((c) => typeof c === "string" && c) || new Set(classes).size !== classes.length) {
    fail("classes", `a list of 1..${MAX_CLASSES} distinct non-empty strings`, classes);
  }
  int(m, "null_class", "null_class", classes.length, classes.length);
  const lat = obj(m, "latent", "latent");
  const c = int(lat, "channels", "latent.channels", 1, MAX_DIM);
  for (const k of ["height", "width"]) int(lat, k, `latent.${k}`, 1, MAX_DIM);
  const img = obj(m, "image", "image");
  str(img, "format", "image.format", ["uint8_nhwc", "float_nchw"]);
  for (const k of ["height", "width"]) int(img, k, `image.${k}`, 8 * lat[k], 8 * lat[k]);
  const codec = obj(m, "codec", "codec");
  int(codec, "scale_factor", "codec.scale_factor", 8, 8);
  for (const [k, lo] of [["latent_mean", -Infinity], ["latent_std", 0]]) {
    const v = need(codec, k, `codec.${k}`);
    if (!Array.isArray(v) || v.length !== c || !v.every((x) => typeof x === "number" && Number.isFinite(x) && x > lo)) {
      fail(`codec.${k}`, `${c} finite numbers${lo === 0 ? " > 0" : ""}`, v);
    }
  }
  const s = obj(m, "sampling", "sampling");
  int(s, "steps", "sampling.steps", 1, MAX_STEPS);
  num(s, "guidance", "sampling.guidance", ...GUIDANCE_RANGE);
  const shift = num(s, "shift", "sampling.shift", 0, 1e6, true);
  str(s, "mode", "sampling.mode", ["fused", "stepwise"]);
  checkScheduler(obj(m, "scheduler", "scheduler"), shift);
  const rng = obj(m, "rng", "rng");
  str(rng, "name", "rng.name", ["splitmix64-boxmuller"]);
  int(rng, "version", "rng.version", 1, 1);
  const files = obj(m, "files", "files");
  if (!Object.keys(files).length) fail("files", "an object listing every bundle file", files);
  for (const [rel, meta] of Object.entries(files)) {
    relpath(rel, `files.${rel}`);
    if (meta === null || typeof meta !== "object") fail(`files.${rel}`, "an object {size, sha256}", meta);
    int(meta, "size", `files.${rel}.size`, 0);
    const h = need(meta, "sha256", `files.${rel}.sha256`);
    if (typeof h !== "string" || !/^[0-9a-f]{64}$/.test(h)) fail(`files.${rel}.sha256`, "64 lowercase hex digits", h);
  }
  const graphs = parseGraphs(obj(m, "graphs", "graphs"), files);
  checkGolden(obj(m, "golden", "golden"), files);
  return { manifest: m, graphs };
}

function checkScheduler(sch, shift) {
  str(sch, "type", "scheduler.type", ["rectified_flow_euler"]);
  const s = num(sch, "shift", "scheduler.shift", 0, 1e6, true);
  if (s !== shift) fail("scheduler.shift", `${shift} (= sampling.shift)`, s);
  for (const [key, values] of Object.entries(obj(sch, "timesteps", "scheduler.timesteps"))) {
    const where = `scheduler.timesteps.${key}`;
    if (!/^[0-9]+$/.test(key) || +key < 1 || +key > MAX_STEPS) fail(where, `a key N in 1..${MAX_STEPS}`, key);
    const n = +key, want = timesteps(n, s);
    if (!Array.isArray(values) || values.length !== n + 1 || !values.every((v) => typeof v === "number")) fail(where, `${n + 1} numbers`, values);
    const i = values.findIndex((v, j) => Math.fround(v) !== want[j]);
    if (i >= 0) fail(`${where}[${i}]`, `${want[i]} (section 3 formula)`, values[i]);
  }
}

const GOLDEN_KEYS = ["file", "format", "dtype", "shape", "case", "content", "tolerance"];
function checkGolden(g, files) {
  const cases = obj(g, "cases", "golden.cases");
  for (const [id, c] of Object.entries(cases)) {
    const p = `golden.cases.${id}`;
    str(c, "kind", `${p}.kind`, ["generate", "img2img", "inpaint"]);
    seedString(need(c, "seed", `${p}.seed`), `${p}.seed`);
    int(c, "label", `${p}.label`, 0);
    int(c, "steps", `${p}.steps`, 1, MAX_STEPS);
    num(c, "guidance", `${p}.guidance`, ...GUIDANCE_RANGE);
    if (!Array.isArray(need(c, "modes", `${p}.modes`))) fail(`${p}.modes`, "a list of modes", c.modes);
  }
  for (const [key, e] of Object.entries(obj(g, "files", "golden.files"))) {
    const p = `golden.files.${key}`;
    const keys = e && typeof e === "object" ? Object.keys(e).sort().join(",") : "";
    if (keys !== [...GOLDEN_KEYS].sort().join(",")) fail(p, `exactly the keys ${GOLDEN_KEYS.join(", ")}`, e);
    if (!(relpath(e.file, `${p}.file`) in files)) fail(`${p}.file`, "a path listed in files", e.file);
    if (e.case !== null && !(e.case in cases)) fail(`${p}.case`, "a case id of golden.cases or null", e.case);
    if (e.tolerance !== null) {
      str(e.tolerance, "metric", `${p}.tolerance.metric`, ["exact", "max_abs", "rel_max_abs", "psnr_db"]);
      num(e.tolerance, "bar", `${p}.tolerance.bar`, 0, 1e9);
    }
  }
}

/** The numbers the page needs, in one place. */
export function describe(m) {
  const { channels, height, width } = m.latent;
  return {
    version: m.schema_version,
    precision: m.precision,
    turbo: m.model.guidance_distilled,
    classes: m.classes,
    latentShape: [channels, height, width],
    imageShape: [m.image.height, m.image.width],
    steps: m.sampling.steps,
    guidance: m.sampling.guidance,
    mode: m.sampling.mode,
    shift: m.sampling.shift,
  };
}
