// Portable noise (runtime/BUNDLE.md section 4; lrf's prng.py is the reference).
// SplitMix64 in counter form on BigInt (all arithmetic mod 2^64), Box-Muller in float64,
// stored as float32. Words and uniforms are bit-exact with Python; normals agree to ~1e-7
// (V8's Math.log/cos/sin may differ from glibc's in the last float64 bit).

const MASK = (1n << 64n) - 1n;
const GAMMA = 0x9E3779B97F4A7C15n;
const M1 = 0xBF58476D1CE4E5B9n;
const M2 = 0x94D049BB133111EBn;

/** A seed from a JSON number, a decimal or "0x" string, or a BigInt -> BigInt in [0, 2^64). */
export function parseSeed(value) {
  let s;
  if (typeof value === "bigint") s = value;
  else if (typeof value === "number") {
    // above 2^53 a JSON number has already lost bits: such seeds must come as strings
    if (!Number.isSafeInteger(value)) throw new RangeError(`seed ${value} is not an exact integer; pass it as a string`);
    s = BigInt(value);
  } else if (typeof value === "string" && /^\s*(0x[0-9a-f]+|[0-9]+)\s*$/i.test(value)) s = BigInt(value.trim());
  else throw new RangeError(`seed must be an integer in [0, 2^64), got ${JSON.stringify(value)}`);
  if (s < 0n || s > MASK) throw new RangeError(`seed must be in [0, 2^64), got ${s}`);
  return s;
}

function mix(z) {
  z = ((z ^ (z >> 30n)) * M1) & MASK;
  z = ((z ^ (z >> 27n)) * M2) & MASK;
  return z ^ (z >> 31n);
}

/** The first n SplitMix64 outputs for seed (BigInt[]). */
export function words(seed, n) {
  const s = parseSeed(seed);
  const out = new Array(n);
  for (let i = 0; i < n; i++) out[i] = mix((s + BigInt(i + 1) * GAMMA) & MASK);
  return out;
}

/** n float32 uniforms in (0, 1], exact: ((word >> 40) + 1) * 2^-24. */
export function uniform(seed, n) {
  const w = words(seed, n);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (Number(w[i] >> 40n) + 1) * 2 ** -24;
  return out;
}

/** n float32 standard normals: pairs (2j, 2j+1) of uniforms, Box-Muller in float64. */
export function normal(seed, n) {
  const m = n + (n & 1);
  const u = uniform(seed, m);
  const out = new Float32Array(m);
  for (let j = 0; j < m; j += 2) {
    const r = Math.sqrt(-2.0 * Math.log(u[j]));
    const theta = 2.0 * Math.PI * u[j + 1];
    out[j] = r * Math.cos(theta);
    out[j + 1] = r * Math.sin(theta);
  }
  return out.subarray(0, n);
}

/** Latent noise for one image: [C, h, w] row-major as a Float32Array of C*h*w values. */
export function noise(seed, [c, h, w]) {
  return normal(seed, c * h * w).slice();
}
