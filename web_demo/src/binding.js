// The one module that knows how a bundle's graphs are called (runtime/BUNDLE.md section 2.2,
// schema 2). Tensors are bound by role, never by name: the page asks for "latent", "timesteps",
// "label", "guidance", "image" and this module finds the manifest's tensor with that role.
// Everything else talks to the Pipeline from openPipeline:
//   denoise(z, ts, label, g) -> z after the len(ts)-1 Euler steps over ts, in one graph call
//   decode(z)                -> uint8 RGB image, HWC
//   encode(rgb)              -> normalised latent (bundles with an encoder graph)
//   window                   -> [min, max] steps per denoise call (max null = unbounded)

import * as ort from "onnxruntime-web";
import { floatNchwToRgb } from "./pixels.js";
import { fail, int, need, obj, relpath, str } from "./validate.js";

export const SCHEMA_VERSION = 2;
const ROLES = ["latent", "timesteps", "label", "guidance", "image"];
const DTYPES = { float32: Float32Array, int32: Int32Array, uint8: Uint8Array };
// graph -> [input roles, output roles] it must have
const GRAPH_ROLES = {
  denoise: [["guidance", "label", "latent", "timesteps"], ["latent"]],
  decoder: [["latent"], ["image"]],
  encoder: [["image"], ["latent"]],
};

function parseTensor(t, where) {
  if (t === null || typeof t !== "object") fail(where, "a tensor object", t);
  const name = str(t, "name", `${where}.name`), role = str(t, "role", `${where}.role`, ROLES);
  const dtype = str(t, "dtype", `${where}.dtype`, Object.keys(DTYPES));
  const shape = need(t, "shape", `${where}.shape`), dims = need(t, "dims", `${where}.dims`);
  if (!Array.isArray(shape) || shape.length < 1 || shape.length > 8 || !shape.every((s) => s === -1 || (Number.isInteger(s) && s >= 1))) {
    fail(`${where}.shape`, "a list of 1..8 ints (-1 = dynamic, else >= 1)", shape);
  }
  if (!Array.isArray(dims) || dims.length !== shape.length || !dims.every((d) => typeof d === "string" && d)) {
    fail(`${where}.dims`, `${shape.length} dimension names`, dims);
  }
  return { name, role, dtype, shape, dims };
}

/** graphs.* entries -> {name: {file, staticQdq, inputs, outputs, window}}, checked (roles, windows, files). */
export function parseGraphs(graphs, files) {
  const out = {};
  for (const required of ["denoise", "decoder"]) obj(graphs, required, `graphs.${required}`);
  for (const [name, d] of Object.entries(graphs)) {
    const where = `graphs.${name}`;
    if (d === null || typeof d !== "object") fail(where, "a graph object", d);
    const file = relpath(need(d, "file", `${where}.file`), `${where}.file`);
    if (!(file in files)) fail(`${where}.file`, "a path listed in files", file);
    if (str(d, "format", `${where}.format`) !== "onnx") fail(`${where}.format`, '"onnx"', d.format);
    const ext = d.external_data ?? [];
    if (!Array.isArray(ext) || ext.length) fail(`${where}.external_data`, "[] (the page loads single-file graphs)", ext);
    const q = d.quantization;
    const g = { name, file, staticQdq: q !== null && typeof q === "object" && q.method === "static_qdq" };
    for (const [k, kind] of [[0, "inputs"], [1, "outputs"]]) {
      const list = need(d, kind, `${where}.${kind}`);
      if (!Array.isArray(list) || !list.length) fail(`${where}.${kind}`, "a non-empty list of tensors", list);
      g[kind] = list.map((t, i) => parseTensor(t, `${where}.${kind}[${i}]`));
      const roles = g[kind].map((t) => t.role);
      if (new Set(roles).size !== roles.length || new Set(g[kind].map((t) => t.name)).size !== roles.length) {
        fail(`${where}.${kind}`, "distinct roles and names", roles);
      }
      const want = GRAPH_ROLES[name]?.[k];
      if (want && [...roles].sort().join() !== want.join()) fail(`${where}.${kind}`, `roles ${JSON.stringify(want)}`, [...roles].sort());
    }
    if (name === "denoise") {
      const w = obj(d, "window", `${where}.window`);
      const lo = int(w, "min", `${where}.window.min`, 1, 1 << 20);
      const hi = need(w, "max", `${where}.window.max`) === null ? null : int(w, "max", `${where}.window.max`, lo, 1 << 20);
      const ts = g.inputs.find((t) => t.role === "timesteps");
      if (ts.shape.length !== 1 || (ts.shape[0] >= 0 && (hi === null || ts.shape[0] !== hi + 1))) {
        fail(`${where}.inputs[timesteps].shape`, "[-1] or [window.max + 1] (= window.min + 1)", ts.shape);
      }
      if (ts.shape[0] >= 0 && lo !== hi) fail(`${where}.window`, "min == max for a static timesteps shape", w);
      g.window = [lo, hi];
    }
    out[name] = g;
  }
  return out;
}

/** onnxruntime-web's .wasm/.mjs files come from wasmPaths (node_modules, never a CDN). */
export function configureOrt({ wasmPaths, threads }) {
  ort.env.wasm.wasmPaths = wasmPaths;
  // more than one thread needs SharedArrayBuffer, i.e. a cross-origin isolated page
  ort.env.wasm.numThreads = globalThis.crossOriginIsolated ? threads : 1;
  ort.env.wasm.proxy = false;
  return { threads: ort.env.wasm.numThreads, version: ort.env.versions?.web ?? "?" };
}

/** The file's own inputs/outputs must be the manifest's: names, dtypes, ranks, static dims. */
function checkIo(session, g) {
  for (const [kind, meta, want] of [["input", session.inputMetadata, g.inputs], ["output", session.outputMetadata, g.outputs]]) {
    const have = new Map(meta.map((a) => [a.name, a]));
    const names = [...have.keys()].sort(), wantNames = want.map((t) => t.name).sort();
    if (kind === "input" ? names.join() !== wantNames.join() : !wantNames.every((n) => have.has(n))) {
      throw new Error(`${g.file}: graph ${kind}s are [${names}], the manifest says [${wantNames}]; the bundle is inconsistent`);
    }
    for (const t of want) {
      const a = have.get(t.name);
      const shape = a.shape ?? [];
      const bad = !a.isTensor || a.type !== t.dtype || shape.length !== t.shape.length ||
        shape.some((s, i) => typeof s === "number" && s >= 0 && (t.shape[i] >= 0 ? s !== t.shape[i] : kind === "input"));
      if (bad) {
        throw new Error(`${g.file}: ${kind} ${t.name} is ${a.type} [${shape}] in the graph, the manifest says ${t.dtype} [${t.shape}]; the bundle is inconsistent`);
      }
    }
  }
}

/** One feed or result against its spec; `bound` collects dynamic dims so all tensors agree. */
function checkTensor(g, spec, data, dims, bound, kind) {
  const what = `${g.name}: ${kind} ${spec.name} (${spec.role})`;
  if (!(data instanceof DTYPES[spec.dtype])) throw new TypeError(`${what} expected ${spec.dtype}, got ${data?.constructor?.name}`);
  if (dims.length !== spec.shape.length || spec.shape.some((s, i) => s >= 0 && s !== dims[i])) {
    throw new RangeError(`${what} expected shape [${spec.shape.map((s, i) => (s < 0 ? spec.dims[i] : s))}], got [${dims}]`);
  }
  spec.shape.forEach((s, i) => {
    if (s >= 0) return;
    if (dims[i] < 1) throw new RangeError(`${what} dimension ${spec.dims[i]} must be >= 1, got [${dims}]`);
    if ((bound[spec.dims[i]] ??= dims[i]) !== dims[i]) throw new RangeError(`${what} has ${spec.dims[i]}=${dims[i]} but another tensor has ${bound[spec.dims[i]]}`);
  });
}

/** Open the graphs of a verified bundle (files: Map path -> ArrayBuffer). */
export async function openPipeline(m, graphs, files) {
  const sessions = {};
  const open = async (name) => {
    if (!graphs[name]) throw new Error(`bundle has no graph ${name}; graphs: ${Object.keys(graphs).join(", ")}`);
    if (!sessions[name]) {
      // BUNDLE.md 2.2.1: weight-only graphs fold their weights to float at load; static QDQ
      // graphs keep onnxruntime's QDQ fusion (int8 kernels), as the golden files were made
      const fold = graphs[name].staticQdq ? "0" : "1";
      const s = await ort.InferenceSession.create(new Uint8Array(files.get(graphs[name].file)), {
        executionProviders: ["wasm"], graphOptimizationLevel: "all",
        extra: { session: { disable_quant_qdq: fold } },
      });
      checkIo(s, graphs[name]);
      sessions[name] = s;
    }
    return sessions[name];
  };
  // run a graph on feeds keyed by role ({role: [typed array, dims]}); results keyed by role
  const run = async (name, feeds) => {
    const g = graphs[name], session = await open(name), bound = {}, byName = {};
    for (const spec of g.inputs) {
      if (!(spec.role in feeds)) throw new Error(`${name}: missing input ${spec.role}`);
      const [data, dims] = feeds[spec.role];
      checkTensor(g, spec, data, dims, bound, "input");
      byName[spec.name] = new ort.Tensor(spec.dtype, data, dims);
    }
    const raw = await session.run(byName);
    const out = {};
    for (const spec of g.outputs) {
      const t = raw[spec.name];
      checkTensor(g, spec, t.data, t.dims, bound, "output");
      out[spec.role] = { data: t.data, dims: t.dims };
    }
    return out;
  };

  const { channels: C, height: h, width: w } = m.latent;
  for (const name of ["denoise", "decoder"]) await open(name);
  return {
    window: graphs.denoise.window,
    hasEncoder: "encoder" in graphs,
    turbo: m.model.guidance_distilled,
    async denoise(z, ts, label, g) {
      const r = await run("denoise", {
        latent: [z, [1, C, h, w]], timesteps: [Float32Array.from(ts), [ts.length]],
        label: [Int32Array.of(label), [1]], guidance: [Float32Array.of(g), [1]],
      });
      return r.latent.data;
    },
    async decode(z) {
      const { data, dims } = (await run("decoder", { latent: [z, [1, C, h, w]] })).image;
      return m.image.format === "float_nchw" ? floatNchwToRgb(data, dims) : data;
    },
    async encode(rgb) {
      const [H, W] = [m.image.height, m.image.width];
      return (await run("encoder", { image: [rgb, [1, H, W, 3]] })).latent.data;
    },
  };
}
