#!/usr/bin/env node
// Serve the demo on localhost with cross-origin isolation (COOP/COEP), which onnxruntime-web
// needs for more than one WASM thread. No dependencies.
//   node serve.mjs [--port 8000] [--host 127.0.0.1] [--bundle DIR]
// --bundle serves DIR at /public/bundle/ (default: ./public/bundle). --port 0 picks a free port.
// The first line on stdout is the page's URL.

import { createReadStream, statSync } from "node:fs";
import { createServer } from "node:http";
import { dirname, extname, join, normalize, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";

const root = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const opt = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback;
};
const port = Number(opt("port", 8000));
const host = opt("host", "127.0.0.1");
const bundle = resolve(opt("bundle", join(root, "public", "bundle")));
const TYPES = {
  ".html": "text/html; charset=utf-8", ".js": "text/javascript", ".mjs": "text/javascript",
  ".css": "text/css", ".json": "application/json", ".wasm": "application/wasm", ".png": "image/png",
  ".map": "application/json",
};

function resolvePath(urlPath) {
  const p = decodeURIComponent(urlPath.split("?")[0]);
  const [base, rest] = p.startsWith("/public/bundle/") ? [bundle, p.slice("/public/bundle/".length)] : [root, p];
  const file = normalize(join(base, rest === "/" || rest === "" ? "index.html" : rest));
  return file === base || file.startsWith(base + sep) ? file : null;   // nothing outside the roots
}

const server = createServer((req, res) => {
  const file = resolvePath(req.url);
  let st;
  try { st = file && statSync(file); } catch { st = null; }
  if (!st || !st.isFile()) {
    res.writeHead(404, { "Content-Type": "text/plain" }).end(`not found: ${req.url}\n`);
    return;
  }
  res.writeHead(200, {
    "Content-Type": TYPES[extname(file)] ?? "application/octet-stream",
    "Content-Length": st.size,
    "Cache-Control": "no-cache",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
  });
  if (req.method === "HEAD") res.end();
  else createReadStream(file).pipe(res);
});

server.listen(port, host, () => {
  console.log(`http://${host}:${server.address().port}/`);
  console.error(`serving ${root} (bundle: ${bundle}) with COOP/COEP; Ctrl-C stops`);
});
