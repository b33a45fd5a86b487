// The page: load a bundle from ?bundle=URL (default ./public/bundle/), verify it, run the golden
// self-check, then generate on demand. window.lrf exposes the same for tests and benchmarks.

import { configureOrt, openPipeline } from "./binding.js";
import { Cancelled, generate, paint } from "./generate.js";
import { runGolden } from "./golden.js";
import { describe, loadManifest } from "./manifest.js";
import { parseSeed } from "./prng.js";
import { checkGuidance, checkSteps } from "./schedule.js";
import { fetchVerified } from "./sha256.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const bundleUrl = new URL(params.get("bundle") ?? "./public/bundle/", location.href);
if (!bundleUrl.pathname.endsWith("/")) bundleUrl.pathname += "/";

const setState = (s) => { document.body.dataset.state = s; };
const status = (text) => { $("status").textContent = text; };
const lrf = (window.lrf = { state: () => document.body.dataset.state, runs: [] });
let shown = null;            // the image on the canvas (uint8 HWC), a possible edit input
let fileImage = null;        // the picked file, resized to the model's size

async function load() {
  const threads = Math.max(1, Number(params.get("threads") ?? 1) || 1);
  const ortInfo = configureOrt({ wasmPaths: new URL("../node_modules/onnxruntime-web/dist/", import.meta.url).href, threads });
  $("runtime-info").textContent = `onnxruntime-web ${ortInfo.version}, WASM, ${ortInfo.threads} thread(s)` +
    (crossOriginIsolated ? " (cross-origin isolated)" : " (not cross-origin isolated: 1 thread)") + ` · bundle ${bundleUrl.href}`;

  const { manifest: m, graphs } = await loadManifest(bundleUrl);
  const d = describe(m);
  const info = `Bundle: schema v${d.version}, ${d.precision}${d.turbo ? ", turbo (guidance-distilled)" : ""}, ` +
    `${m.model.parameters ?? "?"} parameters, ${d.imageShape[1]}x${d.imageShape[0]} images`;
  $("bundle-info").textContent = `${info} · verifying files…`;
  const files = await fetchVerified(bundleUrl, m.files, (i, n) => status(`sha256 ${i}/${n} files`));
  const bytes = [...files.values()].reduce((s, b) => s + b.byteLength, 0);
  $("bundle-info").textContent = `${info} · ${files.size} files, ${(bytes / 1e6).toFixed(2)} MB, sha256 verified`;
  status("opening graphs…");
  const pipeline = await openPipeline(m, graphs, files);
  Object.assign(lrf, { manifest: m, pipeline, ort: ortInfo });

  status("golden self-check…");
  const t0 = performance.now();
  const g = await runGolden(m, files, pipeline);
  lrf.golden = { passed: g.passed, psnr: g.psnr, bar: g.bar, line: g.line, checks: g.checks, ms: performance.now() - t0 };
  $("golden").textContent = g.line;
  $("golden").classList.add(g.passed ? "pass" : "fail");
  $("golden").title = g.checks.map((c) => `${c.passed ? "ok  " : "FAIL"} ${c.key}: ${c.metric} ${c.value} (bar ${c.bar})`).join("\n");

  for (const [i, name] of d.classes.entries()) $("label").add(new Option(`${i} ${name}`, String(i)));
  const gc = g.headline?.case;
  $("label").value = String(gc?.label ?? 0);
  $("seed").value = String(gc?.seed ?? 0);
  $("steps").value = String(d.steps);
  $("guidance").value = String(d.guidance);
  $("mode").value = d.mode;
  if (g.image) {
    show(g.image);
    $("caption").textContent = `golden case: ${gc.class ?? gc.label}, seed ${gc.seed}, ${gc.steps} steps (stepwise)`;
  }
  $("edit").disabled = !pipeline.hasEncoder;
  if (pipeline.hasEncoder) $("edit").title = "";
  status("ready");
  $("generate").disabled = false;
  setState("ready");
}

function show(image) {
  shown = image;
  paint($("canvas"), image, describe(lrf.manifest).imageShape);
}

/** An image file drawn at the model's size, as uint8 RGB HWC. */
async function loadFileImage(file) {
  const [h, w] = describe(lrf.manifest).imageShape;
  const bmp = await createImageBitmap(file, { resizeWidth: w, resizeHeight: h, resizeQuality: "high" });
  const c = new OffscreenCanvas(w, h), ctx = c.getContext("2d");
  ctx.drawImage(bmp, 0, 0);
  const px = ctx.getImageData(0, 0, w, h).data, rgb = new Uint8Array(w * h * 3);
  for (let i = 0; i < w * h; i++) rgb.set(px.subarray(i * 4, i * 4 + 3), i * 3);
  return rgb;
}

function readControls() {
  const m = lrf.manifest;
  const label = Number($("label").value);
  if (!(Number.isInteger(label) && label >= 0 && label < m.classes.length)) throw new RangeError(`unknown class ${$("label").value}`);
  const opts = {
    label, seed: parseSeed($("seed").value.trim()), steps: checkSteps(Number($("steps").value)),
    guidance: checkGuidance(Number($("guidance").value)), mode: $("mode").value, init: null,
  };
  const from = $("init").value;
  if (!$("edit").disabled && from !== "none") {
    const rgb = from === "current" ? shown : fileImage;
    if (!rgb) throw new Error(from === "current" ? "no image shown yet to start from" : "pick an image file first");
    opts.init = { rgb: Uint8Array.from(rgb), strength: Number($("strength").value), mask: null };
  }
  return opts;
}

let controller = null;

async function onGenerate(event) {
  event.preventDefault();
  if (controller) return;
  let opts;
  try { opts = readControls(); } catch (e) { status(e.message); return; }
  controller = new AbortController();
  $("generate").disabled = true;
  $("cancel").disabled = false;
  $("progress").max = opts.steps;
  $("progress").value = 0;
  setState("running");
  const what = `${lrf.manifest.classes[opts.label]}, seed ${opts.seed}, ${opts.steps} steps, guidance ${opts.guidance}, ${opts.mode}` +
    (opts.init ? `, from an image at strength ${opts.init.strength}` : "");
  status(`generating ${what}…`);
  try {
    const r = await generate(lrf.manifest, lrf.pipeline, { ...opts, signal: controller.signal, onStep: (i) => { $("progress").value = i; } });
    show(r.image);
    lrf.runs.push({ ...opts, init: opts.init ? { strength: opts.init.strength } : null, seed: String(opts.seed), ms: r.ms, threads: lrf.ort.threads });
    $("caption").textContent = what;
    status(`done in ${r.ms.toFixed(0)} ms (${lrf.ort.threads} thread${lrf.ort.threads > 1 ? "s" : ""})`);
    setState("done");
  } catch (e) {
    if (!(e instanceof Cancelled)) throw e;
    // a cancelled run leaves no image behind
    shown = null;
    const c = $("canvas");
    c.getContext("2d", { willReadFrequently: true }).clearRect(0, 0, c.width, c.height);
    $("caption").textContent = "";
    status(e.message);
    setState("cancelled");
  } finally {
    controller = null;
    $("generate").disabled = false;
    $("cancel").disabled = true;
  }
}

/** Time `repeats` generations (for web_demo/README.md's figures); seeds 1..repeats after a warm-up. */
lrf.bench = async ({ steps, mode = "stepwise", repeats = 5, label = 0, guidance } = {}) => {
  const m = lrf.manifest, d = describe(m);
  const opts = { label, steps: steps ?? d.steps, guidance: guidance ?? d.guidance, mode };
  await generate(m, lrf.pipeline, { ...opts, seed: 0n });
  const ms = [];
  for (let i = 0; i < repeats; i++) ms.push((await generate(m, lrf.pipeline, { ...opts, seed: BigInt(i + 1) })).ms);
  ms.sort((a, b) => a - b);
  return { ...opts, threads: lrf.ort.threads, repeats, median_ms: ms[ms.length >> 1], min_ms: ms[0], ms };
};

$("controls").addEventListener("submit", (e) => onGenerate(e).catch(fail));
$("cancel").addEventListener("click", () => controller?.abort());
$("strength").addEventListener("input", () => { $("strength-value").textContent = Number($("strength").value).toFixed(2); });
$("init").addEventListener("change", () => { if ($("init").value === "file") $("init-file").click(); });
$("init-file").addEventListener("change", async () => {
  const f = $("init-file").files[0];
  if (f) fileImage = await loadFileImage(f).catch((e) => { status(`cannot read ${f.name}: ${e.message}`); return null; });
});

function fail(e) {
  console.error(e);
  status(`error: ${e.message}`);
  lrf.error = String(e.message ?? e);
  setState("error");
}

load().catch((e) => {
  $("golden").textContent = `Golden check not run: ${e.message}`;
  $("golden").classList.add("fail");
  fail(e);
});
