#!/usr/bin/env node
// Drive the demo page in Debian's Chromium (headless) through playwright-core; never downloads
// a browser. Prints one JSON object on stdout. Used by tests/test_web_demo.py and for the
// README's timings.
//
//   node tests/drive.mjs check --url URL [--out DIR] [--label L --seed S --steps N --guidance G]
//       golden check, one generation through the form (pixels read back from the canvas),
//       a screenshot, then a long run cancelled from the Cancel button
//   node tests/drive.mjs bench --url URL [--threads 1,4] [--steps N] [--repeats R]
//       median time per image, stepwise and fused, per thread count
//   node tests/drive.mjs screenshot --url URL --out FILE [--label L --seed S --steps N]

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const [command, ...rest] = process.argv.slice(2);
const opt = (name, fallback) => {
  const i = rest.indexOf(`--${name}`);
  return i >= 0 && i + 1 < rest.length ? rest[i + 1] : fallback;
};
const CHROMIUM = process.env.LRF_CHROMIUM ?? "/usr/bin/chromium";
const ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync"];
const TIMEOUT = Number(opt("timeout-ms", 90000));

async function withBrowser(fn) {
  const profile = mkdtempSync(join(tmpdir(), "lrf-chromium-"));   // a fresh --user-data-dir
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM, headless: true, args: ARGS, viewport: { width: 900, height: 560 },
  });
  try {
    return await fn(context);
  } finally {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  }
}

async function openPage(context, url) {
  const page = await context.newPage();
  const log = [];
  page.on("console", (m) => log.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => log.push(`pageerror: ${e.message}`));
  page.setDefaultTimeout(TIMEOUT);
  await page.goto(url);
  await page.waitForFunction(() => ["ready", "error"].includes(document.body.dataset.state));
  const state = await page.evaluate(() => document.body.dataset.state);
  if (state === "error") throw new Error(`page error: ${await page.evaluate(() => window.lrf.error)}\n${log.join("\n")}`);
  return { page, log };
}

async function fillForm(page, { label, seed, steps, guidance, mode }) {
  if (label !== undefined) await page.selectOption("#label", String(label));
  if (seed !== undefined) await page.fill("#seed", String(seed));
  if (steps !== undefined) await page.fill("#steps", String(steps));
  if (guidance !== undefined) await page.fill("#guidance", String(guidance));
  if (mode !== undefined) await page.selectOption("#mode", mode);
}

const readCanvas = (page) => page.evaluate(() => {
  const c = document.getElementById("canvas");
  const px = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
  const rgb = new Uint8Array(c.width * c.height * 3);
  let alphaMax = 0;
  for (let i = 0; i < c.width * c.height; i++) {
    rgb.set(px.subarray(i * 4, i * 4 + 3), i * 3);
    alphaMax = Math.max(alphaMax, px[i * 4 + 3]);
  }
  let bin = "";
  for (const b of rgb) bin += String.fromCharCode(b);
  return { width: c.width, height: c.height, rgb_b64: btoa(bin), alpha_max: alphaMax };
});

function formOptions() {
  return { label: opt("label"), seed: opt("seed"), steps: opt("steps"), guidance: opt("guidance"), mode: opt("mode") };
}

async function generateOnce(page, form) {
  await fillForm(page, form);
  await page.click("#generate");
  await page.waitForFunction(() => ["done", "error"].includes(document.body.dataset.state));
  return page.evaluate(() => ({ state: document.body.dataset.state, status: document.getElementById("status").textContent,
    run: window.lrf.runs.at(-1) ?? null, error: window.lrf.error ?? null }));
}

async function check(context) {
  const { page, log } = await openPage(context, opt("url"));
  const golden = await page.evaluate(() => ({ ...window.lrf.golden, text: document.getElementById("golden").textContent,
    ort: window.lrf.ort, isolated: crossOriginIsolated }));
  const gen = await generateOnce(page, formOptions());
  const image = await readCanvas(page);
  const out = opt("out");
  if (out) await page.screenshot({ path: join(out, "web_demo.png"), fullPage: true });

  // cancel: a long stepwise run, cancelled from the button once it has made progress; the CPU
  // is throttled meanwhile so that even a fast machine cannot finish before the click lands
  const cdp = await context.newCDPSession(page);
  await cdp.send("Emulation.setCPUThrottlingRate", { rate: 4 });
  await fillForm(page, { steps: opt("cancel-steps", "1000"), mode: "stepwise" });
  await page.click("#generate");
  await page.waitForFunction(() => document.body.dataset.state !== "done");
  const started = await page.evaluate(() => ({ state: document.body.dataset.state,
    status: document.getElementById("status").textContent }));
  if (started.state !== "running") throw new Error(`cancel run did not start: ${JSON.stringify(started)}`);
  await page.waitForFunction(() => document.getElementById("progress").value >= 1);
  await page.click("#cancel");
  await page.waitForFunction(() => ["done", "cancelled", "error"].includes(document.body.dataset.state));
  const cancel = await page.evaluate(() => ({ state: document.body.dataset.state,
    status: document.getElementById("status").textContent,
    progress: document.getElementById("progress").value, runs: window.lrf.runs.length }));
  await cdp.send("Emulation.setCPUThrottlingRate", { rate: 1 });
  cancel.canvas_alpha_max = (await readCanvas(page)).alpha_max;
  return { golden, generation: gen, image, cancel, log };
}

async function bench(context) {
  const results = [];
  for (const threads of opt("threads", "1").split(",").map(Number)) {
    const url = new URL(opt("url"));
    url.searchParams.set("threads", String(threads));
    const { page } = await openPage(context, url.href);
    const steps = opt("steps") ? Number(opt("steps")) : undefined;
    const repeats = Number(opt("repeats", 5));
    for (const mode of ["stepwise", "fused"]) {
      results.push(await page.evaluate((a) => window.lrf.bench(a).catch((e) => ({ ...a, error: e.message })),
        { steps, mode, repeats }));
    }
    await page.close();
  }
  return { results };
}

async function screenshot(context) {
  const { page } = await openPage(context, opt("url"));
  const gen = await generateOnce(page, formOptions());
  await page.screenshot({ path: opt("out"), fullPage: true });
  return { generation: gen, golden: await page.evaluate(() => window.lrf.golden.line) };
}

const COMMANDS = { check, bench, screenshot };
if (!COMMANDS[command] || !opt("url")) {
  console.error(`usage: node tests/drive.mjs {${Object.keys(COMMANDS).join("|")}} --url URL [...]`);
  process.exit(2);
}
withBrowser(COMMANDS[command]).then(
  (r) => { process.stdout.write(JSON.stringify(r) + "\n"); },
  (e) => { console.error(e.stack ?? String(e)); process.exit(1); },
);
