// Fetch every file the manifest lists and verify its size and sha256 (crypto.subtle, which
// needs a secure context: https or http://localhost).

/** Lowercase hex SHA-256 of an ArrayBuffer or typed array. */
export async function sha256Hex(data) {
  const digest = await crypto.subtle.digest("SHA-256", data);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Download every entry of manifest.files relative to baseUrl and check it.
 * Returns Map(path -> ArrayBuffer). onProgress(done, total, path) after each file.
 * Throws naming the first file whose size or sha256 differs from the manifest.
 */
export async function fetchVerified(baseUrl, files, onProgress = () => {}) {
  const paths = Object.keys(files).sort();
  const out = new Map();
  let done = 0;
  await Promise.all(paths.map(async (path) => {
    const url = new URL(path, baseUrl);
    const resp = await fetch(url);
    if (!resp.ok) throw new Error(`${path}: HTTP ${resp.status} from ${url}`);
    const buf = await resp.arrayBuffer();
    const want = files[path];
    if (buf.byteLength !== want.size) {
      throw new Error(`${path}: ${buf.byteLength} bytes, manifest says ${want.size}`);
    }
    const got = await sha256Hex(buf);
    if (got !== want.sha256) throw new Error(`${path}: sha256 ${got}, manifest says ${want.sha256}`);
    out.set(path, buf);
    onProgress(++done, paths.length, path);
  }));
  return out;
}
