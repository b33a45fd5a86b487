// Editing rules (runtime/BUNDLE.md section 8; lrf/editing.py is the reference): start an image
// part-way along the schedule (img2img) and keep masked latent cells (inpainting).
//   i0   = the i minimising |t_i - strength| (float64); a tie goes to the larger i
//   z    = (1 - t_i0) * encoder(image) + t_i0 * noise                       (float32)
//   keep = a latent cell is kept only if every pixel of its 8x8 block is kept (value >= 128)
//   inpaint, after each step to time t: kept cells = (1 - t) * z_img + t * noise

/** strength as a number in [0, 1] (0 keeps the image, 1 ignores it), else RangeError. */
export function checkStrength(s) {
  if (typeof s !== "number" || !Number.isFinite(s) || s < 0 || s > 1) {
    throw new RangeError(`strength must be a number in [0, 1] (0 keeps the image, 1 ignores it), got ${s}`);
  }
  return s;
}

/** The schedule index an edit starts at: nearest t to strength, ties to the smaller t. */
export function startIndex(ts, strength) {
  const s = checkStrength(strength);
  let best = 0;
  for (let i = 0; i < ts.length; i++) if (Math.abs(ts[i] - s) <= Math.abs(ts[best] - s)) best = i;
  return best;
}

/** (1 - t) z_img + t noise in float32. */
export function noised(zImg, noise, t) {
  t = Math.fround(t);
  const a = Math.fround(1 - t), out = new Float32Array(zImg.length);
  for (let i = 0; i < out.length; i++) out[i] = Math.fround(a * zImg[i]) + Math.fround(t * noise[i]);
  return out;
}

/** Pixel keep mask (uint8, one value per pixel, H x W) -> latent keep mask (Uint8Array h x w). */
export function latentKeepMask(mask, height, width, factor = 8) {
  const h = height / factor, w = width / factor, keep = new Uint8Array(h * w).fill(1);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) if (mask[y * width + x] < 128) keep[Math.floor(y / factor) * w + Math.floor(x / factor)] = 0;
  }
  return keep;
}

/** Inpainting after a step to time t: kept cells (keep [h*w], broadcast over C) take the input re-noised to t. */
export function blend(z, zImg, noise, t, keep) {
  const cells = keep.length, back = noised(zImg, noise, t), out = Float32Array.from(z);
  for (let i = 0; i < z.length; i++) if (keep[i % cells]) out[i] = back[i];
  return out;
}
