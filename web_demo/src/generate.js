// One image with progress and cancel (runtime/BUNDLE.md sections 1 and 8). The schedule is split
// into denoise windows: stepwise = one step per call (progress after each, cancellable), fused =
// as few calls as the graph allows. Optionally starts from an image (img2img) or keeps a masked
// part of it (inpainting, one step per call).

import { blend, latentKeepMask, noised, startIndex } from "./edit.js";
import { noise } from "./prng.js";
import { checkGuidance, checkSteps, timesteps, windows } from "./schedule.js";

export class Cancelled extends Error {
  constructor(step, steps) {
    super(`cancelled after step ${step}/${steps}; no image`);
    this.name = "Cancelled";
  }
}

// Give the page a chance to paint the progress bar and to see a Cancel click; a task boundary
// every ~30 ms keeps that cost out of the timing of fast steps. A plain timer task, not
// scheduler.yield(), whose continuation outranks input and would starve the Cancel click.
const YIELD_MS = 30;
const nextTask = () => new Promise((r) => setTimeout(r, 0));

/**
 * Final latent for one image. opts: {label, seed (BigInt), steps, guidance, mode: "stepwise" |
 * "fused", init: null | {rgb (uint8 HWC), strength, mask (uint8 HxW keep mask) | null},
 * onStep(i, n) -> false cancels, signal: AbortSignal}. Throws Cancelled between windows.
 */
export async function sampleLatent(m, pipeline, { label, seed, steps, guidance, mode = "stepwise", init = null, onStep = () => {}, signal }) {
  checkSteps(steps);
  const g = checkGuidance(guidance);
  const ts = timesteps(steps, m.sampling.shift);
  const eps = noise(seed, [m.latent.channels, m.latent.height, m.latent.width]);
  let z = eps, i0 = 0, zImg = null, keep = null;
  if (init) {
    zImg = await pipeline.encode(init.rgb);
    i0 = startIndex(ts, init.strength);
    z = noised(zImg, eps, ts[i0]);
    if (init.mask) keep = latentKeepMask(init.mask, m.image.height, m.image.width);
  }
  const [wmin, wmax] = pipeline.window;
  const spans = windows(steps - i0, mode === "stepwise" || keep ? 1 : null, wmin, wmax);
  let lastYield = performance.now();
  for (const [a, b] of spans) {
    const win = ts.subarray(i0 + a, i0 + b + 1);
    z = await pipeline.denoise(z, win, label, g);
    if (keep) z = blend(z, zImg, eps, ts[i0 + b], keep);
    if (onStep(i0 + b, steps) === false) throw new Cancelled(i0 + b, steps);
    if (spans.length > 1 && performance.now() - lastYield > YIELD_MS) {
      await nextTask();
      lastYield = performance.now();
    }
    if (signal?.aborted) throw new Cancelled(i0 + b, steps);
  }
  return z;
}

/** One image: sampleLatent then the decoder. Returns {image (uint8 HWC), ms}. */
export async function generate(m, pipeline, opts) {
  const t0 = performance.now();
  const z = await sampleLatent(m, pipeline, opts);
  const image = await pipeline.decode(z);
  return { image, ms: performance.now() - t0 };
}

/** Paint a uint8 RGB HWC image onto a canvas of exactly its size (CSS scales it, pixelated). */
export function paint(canvas, image, [height, width]) {
  canvas.width = width;
  canvas.height = height;
  const rgba = new ImageData(width, height);
  for (let i = 0; i < width * height; i++) {
    rgba.data.set(image.subarray(i * 3, i * 3 + 3), i * 4);
    rgba.data[i * 4 + 3] = 255;
  }
  canvas.getContext("2d", { willReadFrequently: true }).putImageData(rgba, 0, 0);
}
