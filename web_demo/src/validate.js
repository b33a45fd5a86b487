// Field checks for manifest.json, each failing with one line (runtime/BUNDLE.md section 2.4):
//   manifest.json: <field path>: expected <type / range>, got <value>

const SEED = /^(0|[1-9][0-9]{0,19})$/;

export class ManifestError extends Error {
  constructor(message) { super(message); this.name = "ManifestError"; }
}

const show = (v) => { const t = JSON.stringify(v) ?? String(v); return t.length <= 60 ? t : `${t.slice(0, 57)}...`; };
export function fail(path, expected, got) {
  throw new ManifestError(`manifest.json: ${path}: expected ${expected}, got ${show(got)}`);
}
export function need(o, key, path) {
  if (o === null || typeof o !== "object" || !(key in o)) throw new ManifestError(`manifest.json: ${path}: missing (required field)`);
  return o[key];
}
export function obj(o, key, path) {
  const v = need(o, key, path);
  if (v === null || typeof v !== "object" || Array.isArray(v)) fail(path, "an object", v);
  return v;
}
export function int(o, key, path, lo, hi = null) {
  const v = need(o, key, path);
  if (!Number.isInteger(v) || v < lo || (hi !== null && v > hi)) fail(path, `int in ${lo}..${hi ?? ""}`, v);
  return v;
}
export function num(o, key, path, lo, hi, openLo = false) {
  const v = need(o, key, path);
  const ok = typeof v === "number" && Number.isFinite(Math.fround(v)) && (openLo ? v > lo : v >= lo) && v <= hi;
  if (!ok) fail(path, `number in ${openLo ? "(" : "["}${lo}, ${hi}]`, v);
  return v;
}
export function str(o, key, path, choices = null) {
  const v = need(o, key, path);
  if (typeof v !== "string" || !v || (choices && !choices.includes(v))) fail(path, choices ? `one of ${show(choices)}` : "a non-empty string", v);
  return v;
}
export function relpath(v, path) {
  const parts = typeof v === "string" ? v.split("/") : [];
  if (!parts.length || parts.some((p) => p === "" || p === "." || p === "..") || /[\\:]/.test(v)) fail(path, "a relative path inside the bundle", v);
  return v;
}
/** A uint64 seed written as a decimal JSON string -> BigInt. */
export function seedString(v, path) {
  if (typeof v !== "string" || !SEED.test(v) || BigInt(v) >= 1n << 64n) fail(path, "a uint64 seed as a decimal string", v);
  return BigInt(v);
}

