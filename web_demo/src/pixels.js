// Image values (runtime/BUNDLE.md section 2.2): a decoder with image.format "float_nchw" gives
// float32 [1, 3, H, W] in [-1, 1]; pixels are floor(clamp((x + 1) * 127.5 + 0.5, 0, 255)),
// computed in float32 as lrf.runtime does (round half up).

/** float32 [1,3,H,W] (dims [1, 3, H, W]) -> uint8 RGB, HWC. */
export function floatNchwToRgb(x, [, , H, W]) {
  const out = new Uint8Array(H * W * 3);
  for (let c = 0; c < 3; c++) {
    for (let i = 0; i < H * W; i++) {
      const v = Math.min(1, Math.max(-1, x[c * H * W + i]));
      out[i * 3 + c] = Math.floor(Math.min(255, Math.max(0, Math.fround(Math.fround(Math.fround(v + 1) * 127.5) + 0.5))));
    }
  }
  return out;
}
