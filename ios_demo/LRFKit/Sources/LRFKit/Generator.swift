import Foundation

/// One loaded graph of an inference engine (Core ML here; ONNX Runtime on Android).
public protocol GraphSession: AnyObject {
    /// Runs the graph; inputs and outputs are keyed by the manifest's tensor names.
    func run(_ inputs: [String: Tensor]) throws -> [String: Tensor]
    func close()
}

/// Opens graph files of a bundle.
public protocol Engine {
    func open(_ graph: GraphSpec) throws -> GraphSession
}

public enum Mode: String, CaseIterable {
    case auto, fused, stepwise
}

/// Wall-clock milliseconds of each phase of one generation.
public struct Timings: CustomStringConvertible {
    public let noiseMs, denoiseMs, decodeMs, totalMs: Double
    public var description: String {
        String(format: "noise %.1f ms, denoise %.1f ms, decode %.1f ms, total %.1f ms", noiseMs, denoiseMs, decodeMs, totalMs)
    }
}

/// An ARGB image (0xAARRGGBB, row-major) with how it was made.
public struct GeneratedImage {
    public let width: Int
    public let height: Int
    public let argb: [UInt32]
    public let steps: Int
    public let mode: Mode
    public let timings: Timings
}

/// Images from a bundle: a mirror of Generator.kt (and runtime/generator.py) for one image.
/// Calls are serialised by a lock; graph sessions open on first use.
public final class Generator {
    public let manifest: Manifest
    private let engine: Engine
    private var sessions: [String: GraphSession] = [:]
    private var closed = false
    private let lock = NSRecursiveLock()

    public init(manifest: Manifest, engine: Engine) {
        self.manifest = manifest
        self.engine = engine
    }

    /// Default/validated (steps, guidance, mode), as runtime/generator.py `resolve`.
    public func resolve(steps: Int?, guidance: Float?, mode: Mode) throws -> (Int, Float, Mode) {
        let n = steps ?? manifest.defaultSteps
        guard n >= 1 else { throw LRFError.invalid("steps must be >= 1, got \(n)") }
        let g = guidance ?? manifest.defaultGuidance
        guard g.isFinite else { throw LRFError.invalid("guidance must be a finite number, got \(g)") }
        let m: Mode = mode == .auto ? (manifest.fusedGraph(steps: n) != nil ? .fused : .stepwise) : mode
        if m == .fused && manifest.fusedGraph(steps: n) == nil {
            let have = manifest.fusedSteps.isEmpty ? "no N" : manifest.fusedSteps.map(String.init).joined(separator: ", ")
            throw LRFError.invalid("no fused graph for steps=\(n); this bundle has fused graphs for \(have): " +
                "use one of those, stepwise mode, or re-export with --steps \(n)")
        }
        return (n, g, m)
    }

    public func checkLabel(_ label: Int) throws -> Int {
        guard label >= 0 && label < manifest.classes.count else {
            throw LRFError.invalid("unknown label \(label); valid: 0-\(manifest.classes.count - 1) (\(manifest.classes.joined(separator: ", ")))")
        }
        return label
    }

    /// One image for `label` and `seed`. `onStep(i, n)` is called after step i (1-based); fused
    /// mode calls it once with (n, n). Returning false throws LRFError.cancelled (no image).
    public func generate(label: Int, seed: UInt64, steps: Int? = nil, guidance: Float? = nil, mode: Mode = .auto,
                         onStep: ((Int, Int) -> Bool)? = nil) throws -> GeneratedImage {
        lock.lock()
        defer { lock.unlock() }
        let t0 = DispatchTime.now().uptimeNanoseconds
        let (n, g, m) = try resolve(steps: steps, guidance: guidance, mode: mode)
        _ = try checkLabel(label)
        let shape = [1] + manifest.latentShape                               // [1, C, h, w]
        let noise = try PRNG.noise(seed: seed, shape: manifest.latentShape)
        let t1 = DispatchTime.now().uptimeNanoseconds
        let labelT = try Tensor.i32([1], [Int32(label)])
        let guidanceT = try Tensor.f32([1], [g])
        let image: Tensor
        let t2: UInt64
        if m == .fused {
            image = try run(manifest.fusedGraph(steps: n)!, [try Tensor.f32(shape, noise), labelT, guidanceT])[0]
            t2 = DispatchTime.now().uptimeNanoseconds
            try progress(onStep, n, n)
        } else {
            let z = try sampleLatent(noise, shape: shape, label: labelT, guidance: guidanceT, steps: n, onStep: onStep)
            t2 = DispatchTime.now().uptimeNanoseconds
            image = try run(try manifest.graph(Manifest.decoder), [try Tensor.f32(shape, z)])[0]
        }
        let argb = try toARGB(image)
        let t3 = DispatchTime.now().uptimeNanoseconds
        return GeneratedImage(width: manifest.imageWidth, height: manifest.imageHeight, argb: argb, steps: n, mode: m,
                              timings: Timings(noiseMs: ms(t0, t1), denoiseMs: ms(t1, t2), decodeMs: ms(t2, t3), totalMs: ms(t0, t3)))
    }

    /// The stepwise Euler loop: step graph + Schedule.eulerStep, on one latent.
    public func sampleLatent(_ noise: [Float], shape: [Int], label: Tensor, guidance: Tensor, steps: Int,
                             onStep: ((Int, Int) -> Bool)?) throws -> [Float] {
        let ts = try Schedule.timesteps(steps: steps, shift: manifest.shift)
        let step = try manifest.graph(Manifest.step)
        var z = noise
        for i in 0..<steps {
            let v = try run(step, [try Tensor.f32(shape, z), try Tensor.f32([1], [ts[i]]), label, guidance])[0]
            try Schedule.eulerStep(&z, v.floats!, t: ts[i], tNext: ts[i + 1])
            try progress(onStep, i + 1, steps)
        }
        return z
    }

    /// Runs `graph` on inputs in the manifest's input order; names come from the manifest.
    /// Inputs and outputs are checked against the manifest (expected vs actual dtype/shape).
    public func run(_ graph: GraphSpec, _ inputs: [Tensor]) throws -> [Tensor] {
        lock.lock()
        defer { lock.unlock() }
        guard inputs.count == graph.inputs.count else {
            throw LRFError.invalid("\(graph.name): expected \(graph.inputs.count) inputs, got \(inputs.count)")
        }
        var bound: [String: Int] = [:]
        var feeds: [String: Tensor] = [:]
        for k in inputs.indices {
            try graph.inputs[k].check(inputs[k], graph: graph.name, role: "input", bound: &bound)
            feeds[graph.inputs[k].name] = inputs[k]
        }
        let result = try session(graph).run(feeds)
        return try graph.outputs.map { (spec: TensorSpec) throws -> Tensor in
            guard let t = result[spec.name] else {
                throw LRFError.state("\(graph.name): the engine returned no output '\(spec.name)' (got \(result.keys.sorted().joined(separator: ", ")))")
            }
            try spec.check(t, graph: graph.name, role: "output", bound: &bound)
            return t
        }
    }

    func toARGB(_ image: Tensor) throws -> [UInt32] {
        let s = image.shape
        if image.dtype == .uint8 {                                            // [1, H, W, 3]
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

    private func session(_ graph: GraphSpec) throws -> GraphSession {
        guard !closed else { throw LRFError.state("this Generator is closed; load the bundle again") }
        if let s = sessions[graph.name] { return s }
        let s = try engine.open(graph)
        sessions[graph.name] = s
        return s
    }

    /// Opens every graph now (so the first generation's timings exclude loading).
    public func preload() throws {
        lock.lock()
        defer { lock.unlock() }
        for g in manifest.graphs.values { _ = try session(g) }
    }

    public func close() {
        lock.lock()
        defer { lock.unlock() }
        closed = true
        for s in sessions.values { s.close() }
        sessions.removeAll()
    }

    private func progress(_ onStep: ((Int, Int) -> Bool)?, _ i: Int, _ n: Int) throws {
        if let cb = onStep, !cb(i, n) {
            throw LRFError.cancelled("generation cancelled after step \(i)/\(n); no image was produced")
        }
    }

    private func ms(_ a: UInt64, _ b: UInt64) -> Double { Double(b - a) / 1e6 }
}
