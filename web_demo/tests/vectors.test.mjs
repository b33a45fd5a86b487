// The page's ports of the spec units against the cross-language golden vectors that the Kotlin
// and Swift ports are held to (derived from the Python reference by tests/test_cross_language.py):
// PRNG words/uniforms/normals, the schedule, pixel conversion and the editing rules.
//   node --test tests/            (from web_demo/; no browser needed)

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { blend, latentKeepMask, noised, startIndex } from "../src/edit.js";
import { floatNchwToRgb } from "../src/pixels.js";
import { normal, uniform, words } from "../src/prng.js";
import { timesteps, windows } from "../src/schedule.js";

const FIXTURE = new URL("../../android_demo/core/src/test/resources/golden_vectors.json", import.meta.url);
const V = JSON.parse(readFileSync(FIXTURE, "utf8"));
const bits = (a) => Array.from(new Uint32Array(Float32Array.from(a).buffer), (b) => b.toString(16).padStart(8, "0"));
const fromBits = (hex) => new Float32Array(new Uint32Array(hex.map((h) => parseInt(h, 16))).buffer);

test("prng: words and uniforms bit-exact, normals within 1e-6", () => {
  for (const c of V.prng.cases) {
    assert.deepEqual(words(c.seed, c.n).map((w) => w.toString(16).padStart(16, "0")), c.words, `seed ${c.seed}`);
    assert.deepEqual(bits(uniform(c.seed, c.n)), c.uniform_bits, `seed ${c.seed}`);
    const n = normal(c.seed, c.n), want = fromBits(c.normal_bits);
    n.forEach((x, i) => assert.ok(Math.abs(x - want[i]) <= 1e-6, `seed ${c.seed} normal ${i}`));
  }
});

test("normal(seed, n) is a prefix of normal(seed, n + 1)", () => {
  assert.deepEqual(Array.from(normal(42, 9)), Array.from(normal(42, 10).subarray(0, 9)));
});

test("schedule: bit-exact timesteps", () => {
  for (const c of V.schedule.cases) assert.deepEqual(bits(timesteps(c.steps, c.shift)), c.timestep_bits, `N=${c.steps} s=${c.shift}`);
});

test("windows: stepwise, fused and fixed-K splits", () => {
  assert.deepEqual(windows(3, 1), [[0, 1], [1, 2], [2, 3]]);
  assert.deepEqual(windows(5, null), [[0, 5]]);
  assert.deepEqual(windows(4, null, 2, 2), [[0, 2], [2, 4]]);
  assert.throws(() => windows(5, null, 2, 2), /multiple of 2/);
});

test("pixels: float NCHW -> uint8 HWC, round half up", () => {
  const p = V.pixels;
  assert.deepEqual(Array.from(floatNchwToRgb(fromBits(p.float_chw_bits), [1, 3, p.height, p.width])), p.rgb_hwc);
});

test("editing: start index, noised, keep masks, blend", () => {
  const e = V.editing;
  for (const c of e.start) assert.equal(startIndex(timesteps(c.steps, c.shift), c.strength), c.start_index, JSON.stringify(c));
  const zImg = normal(e.z_img_seed, e.n), eps = normal(e.noise_seed, e.n);
  for (const c of e.noised) assert.deepEqual(bits(noised(zImg, eps, fromBits([c.t_bits])[0])), c.result_bits);
  for (const c of e.masks) assert.deepEqual(Array.from(latentKeepMask(c.mask, c.height, c.width), Boolean), c.keep);
  const b = e.blend, n = b.shape.reduce((x, y) => x * y);
  const z = normal(b.latent_seed, n), zi = normal(e.z_img_seed, n), no = normal(e.noise_seed, n);
  const got = blend(z, zi, no, fromBits([b.t_bits])[0], Uint8Array.from(b.keep, Number));
  assert.deepEqual(bits(got), b.result_bits);
});
