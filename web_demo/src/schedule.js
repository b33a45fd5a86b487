// The sampler's schedule (runtime/BUNDLE.md section 3), bit-exact with lrf.runtime's
// scheduler.py: u_i = 1 - i/N and t_i in float64, each t_i rounded once to float32; the Euler
// update itself runs inside the bundle's denoise graph. Plus the per-call limits (section 2.4)
// and the split of a schedule into denoise windows (section 1, step 4).

export const MAX_STEPS = 1000;
export const GUIDANCE_RANGE = [0, 20];

/** steps as an integer in 1..MAX_STEPS, else RangeError. */
export function checkSteps(n) {
  if (!Number.isInteger(n) || n < 1 || n > MAX_STEPS) throw new RangeError(`steps must be an integer in 1..${MAX_STEPS}, got ${n}`);
  return n;
}

/** guidance as the float32 it will be given to the graph: finite in float32 and in [0, 20]. */
export function checkGuidance(g) {
  const [lo, hi] = GUIDANCE_RANGE;
  if (typeof g !== "number" || !Number.isFinite(Math.fround(g)) || g < lo || g > hi) {
    throw new RangeError(`guidance must be a number in [${lo}, ${hi}] (finite in float32), got ${g}`);
  }
  return Math.fround(g);
}

/** The N+1 float32 sampling times from 1 (noise) to 0 (data). */
export function timesteps(n, shift = 1.0) {
  checkSteps(n);
  if (!Number.isFinite(shift) || shift <= 0) throw new RangeError(`shift must be a positive finite number, got ${shift}`);
  const out = new Float32Array(n + 1);
  for (let i = 0; i <= n; i++) {
    const u = 1.0 - i / n;
    out[i] = (shift * u) / (1.0 + (shift - 1.0) * u);
  }
  return out;
}

/**
 * Split steps 0..n into consecutive windows [i0, i1] of `size` steps (null: as large as the
 * graph allows), each of a length in [wmin, wmax] (wmax null = unbounded).
 */
export function windows(n, size, wmin = 1, wmax = null) {
  const cap = wmax === null ? n : Math.min(wmax, n);
  size = size === null ? cap : Math.max(wmin, Math.min(size, cap));
  const out = [];
  for (let i = 0; i < n;) {
    const k = Math.min(size, n - i);
    if (k < wmin) throw new RangeError(`${n} steps cannot be split into windows of ${wmin} steps (the bundle's denoise graph); use a multiple of ${wmin}`);
    out.push([i, i + k]);
    i += k;
  }
  return out;
}
