import Foundation

/// One loaded graph of an inference engine (Core ML here; ONNX Runtime on Android). Sessions are
/// only ever used under their Generator's lock.
public protocol GraphSession: AnyObject {
    /// Runs the graph; inputs and outputs are keyed by the manifest's tensor names.
    func run(_ inputs: [String: Tensor]) throws -> [String: Tensor]
    func close()
}

/// Opens graph files of a bundle.
public protocol Engine: Sendable {
    func open(_ graph: GraphSpec) throws -> GraphSession
}

/// `auto` is the bundle's `sampling.mode`.
public enum Mode: String, CaseIterable, Sendable {
    case auto, fused, stepwise
}

/// Wall-clock milliseconds of each phase of one generation (encode is 0 unless editing).
public struct Timings: CustomStringConvertible, Sendable {
    public let encodeMs, denoiseMs, decodeMs, totalMs: Double
    public var description: String {
        String(format: "encode %.1f ms, denoise %.1f ms, decode %.1f ms, total %.1f ms", encodeMs, denoiseMs, decodeMs, totalMs)
    }
}

/// An ARGB image (0xAARRGGBB, row-major) with how it was made; `calls` = denoise graph calls.
public struct GeneratedImage: Sendable {
    public let width: Int
    public let height: Int
    public let argb: [UInt32]
    public let steps: Int
    public let mode: Mode
    public let calls: Int
    public let timings: Timings
}

/// A validated request: steps, guidance, mode resolved against the manifest's defaults.
public struct Request: Sendable {
    public let label: Int
    public let seed: UInt64
    public let steps: Int
    public let guidance: Float
    public let mode: Mode
}

/// An edit's input: RGB bytes [H, W, 3] at the bundle's image size, and an optional keep mask [H, W].
public struct EditInput: Sendable {
    public let rgb: [UInt8]
    public let strength: Double
    public let keepMask: [UInt8]?

    public init(rgb: [UInt8], strength: Double, keepMask: [UInt8]? = nil) {
        self.rgb = rgb
        self.strength = strength
        self.keepMask = keepMask
    }
}

/// Where an edit starts (BUNDLE.md 8): the encoded input, the noise, the window t_i0 ... t_N and
/// z at t_i0; `keep` is the latent keep mask when inpainting.
public struct EditStart: Sendable {
    public let zImg: [Float]
    public let noise: [Float]
    public let window: [Float]
    public let latent: [Float]
    public let keep: [Bool]?
}

/// Images from a bundle: a mirror of Generator.kt (and runtime/generator.py) for one image,
/// following runtime/BUNDLE.md sections 1 and 8. Tensors are bound by role. Every call holds a
/// lock, which guards the sessions and `closed`: that is why the class is @unchecked Sendable,
/// so a generator can be built on one task and used from another.
public final class Generator: @unchecked Sendable {
    public let manifest: Manifest
    private let engine: Engine
    private var sessions: [String: GraphSession] = [:]
    private var closed = false
    private let lock = NSRecursiveLock()

    public init(manifest: Manifest, engine: Engine) {
        self.manifest = manifest
        self.engine = engine
    }

    private func locked<T>(_ body: () throws -> T) rethrows -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body()
    }

    /// Default/validated request, as runtime/generator.py `resolve` (BUNDLE.md 2.4).
    public func resolve(label: Int, seed: UInt64, steps: Int?, guidance: Float?, mode: Mode) throws -> Request {
        let n = try Schedule.checkSteps(steps ?? manifest.defaultSteps)
        let g = try Schedule.checkGuidance(Double(guidance ?? manifest.defaultGuidance))
        guard label >= 0 && label < manifest.classes.count else {
            throw LRFError.invalid("unknown label \(label); valid: 0-\(manifest.classes.count - 1) (\(manifest.classes.joined(separator: ", ")))")
        }
        let m = mode == .auto ? manifest.defaultMode : mode
        _ = try Schedule.windows(n, manifest.window, fused: m == .fused)   // refuse an N the graph cannot split now
        return Request(label: label, seed: seed, steps: n, guidance: g, mode: m)
    }

    /// `resolve` for an edit: the strength checked, and stepwise when inpainting.
    public func resolveEdit(_ input: EditInput, label: Int, seed: UInt64, steps: Int?, guidance: Float?, mode: Mode) throws -> Request {
        _ = try Editing.checkStrength(input.strength)
        return try resolve(label: label, seed: seed, steps: steps, guidance: guidance, mode: input.keepMask != nil ? .stepwise : mode)
    }

    /// One image for `label` and `seed`. `onStep(i, n)` is called after each denoise call with the
    /// steps done so far; returning false throws LRFError.cancelled (no image).
    public func generate(label: Int, seed: UInt64, steps: Int? = nil, guidance: Float? = nil, mode: Mode = .auto,
                         onStep: ((Int, Int) -> Bool)? = nil) throws -> GeneratedImage {
        try locked {
            let t0 = DispatchTime.now().uptimeNanoseconds
            let r = try resolve(label: label, seed: seed, steps: steps, guidance: guidance, mode: mode)
            let (z, calls) = try sample(r, input: nil, onStep: onStep)
            let t2 = DispatchTime.now().uptimeNanoseconds
            let argb = try decode(z)
            let t3 = DispatchTime.now().uptimeNanoseconds
            return GeneratedImage(width: manifest.imageWidth, height: manifest.imageHeight, argb: argb, steps: r.steps, mode: r.mode,
                                  calls: calls, timings: Timings(encodeMs: 0, denoiseMs: ms(t0, t2), decodeMs: ms(t2, t3), totalMs: ms(t0, t3)))
        }
    }

    /// Image-to-image, or inpainting when `input` has a keep mask (BUNDLE.md 8): encode, noise to
    /// t_i0 (i0 from the strength), denoise over t_i0 ... t_N, decode. Inpainting runs 1-step
    /// windows and re-imposes the kept region after each. Progress counts the N - i0 steps run.
    public func edit(_ input: EditInput, label: Int, seed: UInt64, steps: Int? = nil, guidance: Float? = nil,
                     mode: Mode = .auto, onStep: ((Int, Int) -> Bool)? = nil) throws -> GeneratedImage {
        try locked {
            let t0 = DispatchTime.now().uptimeNanoseconds
            let r = try resolveEdit(input, label: label, seed: seed, steps: steps, guidance: guidance, mode: mode)
            let s = try editStart(input, r)
            let t1 = DispatchTime.now().uptimeNanoseconds
            let (z, calls) = try denoise(s.latent, s.window, r, start: s, onStep: onStep)
            let t2 = DispatchTime.now().uptimeNanoseconds
            let argb = try decode(z)
            let t3 = DispatchTime.now().uptimeNanoseconds
            return GeneratedImage(width: manifest.imageWidth, height: manifest.imageHeight, argb: argb, steps: s.window.count - 1,
                                  mode: r.mode, calls: calls,
                                  timings: Timings(encodeMs: ms(t0, t1), denoiseMs: ms(t1, t2), decodeMs: ms(t2, t3), totalMs: ms(t0, t3)))
        }
    }

    public func editStart(_ input: EditInput, _ r: Request) throws -> EditStart {
        try locked {
            let keep = try input.keepMask.map { try Editing.latentKeepMask($0, height: manifest.imageHeight, width: manifest.imageWidth) }
            let zImg = try encode(input.rgb)
            let noise = try PRNG.noise(seed: r.seed, shape: manifest.latentShape)
            let ts = try Schedule.timesteps(steps: r.steps, shift: manifest.shift)
            let i0 = try Editing.startIndex(ts, strength: input.strength)
            let window = Array(ts[i0...])
            return EditStart(zImg: zImg, noise: noise, window: window, latent: try Editing.noised(zImg, noise, t: window[0]), keep: keep)
        }
    }

    /// The final latent of `r` (an edit when `input` is given) and the number of denoise calls.
    public func sample(_ r: Request, input: EditInput?, onStep: ((Int, Int) -> Bool)? = nil) throws -> ([Float], Int) {
        try locked {
            guard let input = input else {
                return try denoise(try PRNG.noise(seed: r.seed, shape: manifest.latentShape),
                                   try Schedule.timesteps(steps: r.steps, shift: manifest.shift), r, start: nil, onStep: onStep)
            }
            let s = try editStart(input, r)
            return try denoise(s.latent, s.window, r, start: s, onStep: onStep)
        }
    }

    /// The denoise loop over `ts` (windows from Schedule.windows), from latent `z0`. When `start`
    /// has a keep mask (inpainting), 1-step windows and the blend after each.
    public func denoise(_ z0: [Float], _ ts: [Float], _ r: Request, start: EditStart?,
                        onStep: ((Int, Int) -> Bool)?) throws -> ([Float], Int) {
        try locked {
            let n = ts.count - 1
            let inpaint = start?.keep != nil
            if inpaint && !manifest.window.allows(1) {
                throw LRFError.invalid("this bundle's denoise graph takes windows of \(manifest.window) steps; inpainting needs " +
                    "1-step windows: re-export the bundle")
            }
            let ends = try Schedule.windows(n, manifest.window, fused: r.mode == .fused && !inpaint)
            let shape = [1] + manifest.latentShape
            let label = try Tensor.i32([1], [Int32(r.label)])
            let guidance = try Tensor.f32([1], [r.guidance])
            var z = z0
            var i0 = 0
            for i1 in ends {
                let window = try Tensor.f32([i1 - i0 + 1], Array(ts[i0...i1]))
                z = try run(manifest.denoiseGraph, [GraphRoles.latent: try Tensor.f32(shape, z), GraphRoles.timesteps: window,
                                                    GraphRoles.label: label, GraphRoles.guidance: guidance])[GraphRoles.latent]!.floats!
                if let s = start, let keep = s.keep { try Editing.blend(&z, s.zImg, s.noise, t: ts[i1], keep: keep) }
                try progress(onStep, i1, n)
                i0 = i1
            }
            return (z, ends.count)
        }
    }

    /// One denoise call over `window` (K+1 times) from `z`: the golden `denoise_first` check.
    public func denoiseOnce(_ z: [Float], window: [Float], label: Int, guidance: Float) throws -> [Float] {
        try locked {
            try run(manifest.denoiseGraph, [GraphRoles.latent: try Tensor.f32([1] + manifest.latentShape, z),
                                            GraphRoles.timesteps: try Tensor.f32([window.count], window),
                                            GraphRoles.label: try Tensor.i32([1], [Int32(label)]),
                                            GraphRoles.guidance: try Tensor.f32([1], [guidance])])[GraphRoles.latent]!.floats!
        }
    }

    /// RGB bytes [H, W, 3] at the bundle's image size -> the normalised latent [C*h*w].
    public func encode(_ rgb: [UInt8]) throws -> [Float] {
        try locked {
            guard let enc = manifest.encoderGraph else {
                throw LRFError.invalid("this bundle has no encoder graph, so it cannot edit images; re-export it with lrf-export (schema v2)")
            }
            let h = manifest.imageHeight, w = manifest.imageWidth
            guard rgb.count == h * w * 3 else {
                throw LRFError.invalid("the input image must be \(w)x\(h) RGB (\(h * w * 3) bytes), got \(rgb.count) bytes")
            }
            let image: Tensor
            if manifest.imageFormat == "float_nchw" {          // Core ML: float NCHW in [-1, 1]
                image = try Tensor.f32([1, 3, h, w], try Pixels.floatCHW(fromRGBBytes: rgb, height: h, width: w))
            } else {
                image = try Tensor.u8([1, h, w, 3], rgb)
            }
            return try run(enc, [GraphRoles.image: image])[GraphRoles.latent]!.floats!
        }
    }

    /// A latent [C*h*w] -> ARGB pixels of the bundle's image size.
    public func decode(_ z: [Float]) throws -> [UInt32] {
        try locked {
            let image = try run(manifest.decoderGraph, [GraphRoles.latent: try Tensor.f32([1] + manifest.latentShape, z)])[GraphRoles.image]!
            let s = image.shape
            if image.dtype == .uint8 {                                        // [1, H, W, 3]
                guard s[1] == manifest.imageHeight, s[2] == manifest.imageWidth, s[3] == 3 else {
                    throw LRFError.invalid("decoder returned \(s), manifest image is \(manifest.imageHeight)x\(manifest.imageWidth)x3")
                }
                return try Pixels.argbFromRGBBytes(image.bytes!, height: s[1], width: s[2])
            }
            guard s[1] == 3, s[2] == manifest.imageHeight, s[3] == manifest.imageWidth else {   // [1, 3, H, W] in [-1, 1]
                throw LRFError.invalid("decoder returned \(s), manifest image is 3x\(manifest.imageHeight)x\(manifest.imageWidth)")
            }
            return try Pixels.argbFromFloatCHW(image.floats!, height: s[2], width: s[3])
        }
    }

    /// Runs `graph` on inputs given by role; returns its outputs by role, every one checked
    /// against the manifest (expected vs actual dtype/shape, dynamic dims bound across the call).
    public func run(_ graph: GraphSpec, _ inputs: [String: Tensor]) throws -> [String: Tensor] {
        try locked {
            var bound: [String: Int] = [:]
            var feeds: [String: Tensor] = [:]
            for spec in graph.inputs {
                guard let t = inputs[spec.role] else { throw LRFError.invalid("\(graph.name): no tensor given for role '\(spec.role)'") }
                try spec.check(t, graph: graph.name, side: "input", bound: &bound)
                feeds[spec.name] = t
            }
            let result = try session(graph).run(feeds)
            var out: [String: Tensor] = [:]
            for spec in graph.outputs {
                guard let t = result[spec.name] else {
                    throw LRFError.state("\(graph.name): the engine returned no output '\(spec.name)' (got \(result.keys.sorted().joined(separator: ", ")))")
                }
                try spec.check(t, graph: graph.name, side: "output", bound: &bound)
                out[spec.role] = t
            }
            return out
        }
    }

    private func session(_ graph: GraphSpec) throws -> GraphSession {
        guard !closed else { throw LRFError.state("this Generator is closed; load the bundle again") }
        if let s = sessions[graph.name] { return s }
        let s = try engine.open(graph)
        sessions[graph.name] = s
        return s
    }

    /// Opens every graph now (so the first generation's timings exclude loading).
    public func preload() throws {
        try locked {
            for name in manifest.graphs.keys.sorted() { _ = try session(manifest.graphs[name]!) }
        }
    }

    public func close() {
        locked {
            closed = true
            for s in sessions.values { s.close() }
            sessions.removeAll()
        }
    }

    private func progress(_ onStep: ((Int, Int) -> Bool)?, _ i: Int, _ n: Int) throws {
        if let cb = onStep, !cb(i, n) {
            throw LRFError.cancelled("generation cancelled after step \(i)/\(n); no image was produced")
        }
    }

    private func ms(_ a: UInt64, _ b: UInt64) -> Double { Double(b - a) / 1e6 }
}
