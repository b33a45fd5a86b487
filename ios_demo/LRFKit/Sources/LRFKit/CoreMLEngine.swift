#if canImport(CoreML)
import CoreML
import Foundation

/// Core ML behind the `Engine` protocol. Each graph's `.mlpackage` (a folder, listed file by file
/// in the manifest) is named by the manifest's `file`. `CoreMLEngine.load` compiles every package
/// once with the async `MLModel.compileModel(at:)` and caches the result by the sha256 of the
/// package's files (a swapped bundle recompiles); `open` then only loads compiled models and checks
/// each model's inputs and outputs against the manifest. Tensors cross as `MLShapedArray`.
public final class CoreMLEngine: Engine {
    /// MLComputeUnits as its raw value: every stored property is plainly Sendable.
    let computeUnitsRaw: Int
    /// graph name -> compiled `.mlmodelc`
    let compiled: [String: URL]

    init(computeUnits: MLComputeUnits, compiled: [String: URL]) {
        self.computeUnitsRaw = computeUnits.rawValue
        self.compiled = compiled
    }

    /// Compiles (or finds in the cache) every graph of `manifest`; call after BundleVerifier.load,
    /// which has checked containment and every file's sha256.
    public static func load(source: BundleSource, manifest: Manifest, computeUnits: MLComputeUnits = .all) async throws -> CoreMLEngine {
        let cacheDir = try FileManager.default.url(for: .cachesDirectory, in: .userDomainMask, appropriateFor: nil, create: true)
            .appendingPathComponent("LRFCompiledModels", isDirectory: true)
        try FileManager.default.createDirectory(at: cacheDir, withIntermediateDirectories: true)
        var compiled: [String: URL] = [:]
        for name in manifest.graphs.keys.sorted() {
            let graph = manifest.graphs[name]!
            guard graph.format == "mlpackage" else {
                throw LRFError.invalid("graph \(name) has format '\(graph.format)'; this app runs Core ML bundles (lrf-export --target coreml)")
            }
            let target = cacheDir.appendingPathComponent("\(cacheKey(graph, manifest)).mlmodelc")
            if !FileManager.default.fileExists(atPath: target.path) {
                let tmp = try await MLModel.compileModel(at: try source.url(graph.file))
                // move into the cache in one rename: a half-copied model is never picked up
                try? FileManager.default.removeItem(at: target)
                try FileManager.default.moveItem(at: tmp, to: target)
            }
            compiled[name] = target
        }
        return CoreMLEngine(computeUnits: computeUnits, compiled: compiled)
    }

    /// The graph's files' checksums, hashed: a new bundle never reuses a stale compiled model.
    static func cacheKey(_ graph: GraphSpec, _ manifest: Manifest) -> String {
        let prefix = graph.file + "/"
        let parts = manifest.files.values
            .filter { $0.path == graph.file || $0.path.hasPrefix(prefix) }
            .sorted { $0.path < $1.path }
            .map { "\($0.path)=\($0.sha256)" }
        return graph.name + "-" + String(SHA256Hex.of(Data(parts.joined(separator: "\n").utf8)).prefix(16))
    }

    public func open(_ graph: GraphSpec) throws -> GraphSession {
        guard let url = compiled[graph.name] else { throw LRFError.state("graph \(graph.name) was not compiled by CoreMLEngine.load") }
        let config = MLModelConfiguration()
        config.computeUnits = MLComputeUnits(rawValue: computeUnitsRaw) ?? .all
        let model = try MLModel(contentsOf: url, configuration: config)
        try CoreMLSession.checkSignature(graph, model.modelDescription)
        return CoreMLSession(model: model, graph: graph)
    }
}

/// One loaded model; used only under its Generator's lock.
final class CoreMLSession: GraphSession {
    private var model: MLModel?
    let graph: GraphSpec

    init(model: MLModel, graph: GraphSpec) {
        self.model = model
        self.graph = graph
    }

    /// The model's own inputs and outputs against the manifest entry: the same names, ranks and
    /// static sizes (BUNDLE.md 2.2). Dtypes cross as Core ML allows (multi-arrays have no uint8:
    /// a uint8 manifest tensor is fed as the model's int32/float type and converted back).
    static func checkSignature(_ graph: GraphSpec, _ d: MLModelDescription) throws {
        func check(_ side: String, _ specs: [TensorSpec], _ found: [String: MLFeatureDescription]) throws {
            for spec in specs {
                guard let f = found[spec.name], let c = f.multiArrayConstraint else {
                    throw LRFError.invalid("graph \(graph.name) (\(graph.file)): the model has no multi-array \(side) '\(spec.name)' " +
                        "(it has \(found.keys.sorted().joined(separator: ", "))); the file does not match the manifest")
                }
                let shape = c.shape.map { $0.intValue }
                let flexible = c.shapeConstraint.type != .unspecified && c.shapeConstraint.type != .enumerated
                let same = shape.count == spec.shape.count && (flexible || spec.shape.indices.allSatisfy { spec.shape[$0] < 0 || shape[$0] == spec.shape[$0] })
                if !same {
                    throw LRFError.invalid("graph \(graph.name) (\(graph.file)): \(side) '\(spec.name)' is \(shape) in the model, " +
                        "manifest says \(spec.describe()); the file does not match the manifest")
                }
            }
        }
        try check("input", graph.inputs, d.inputDescriptionsByName)
        try check("output", graph.outputs, d.outputDescriptionsByName)
        let extra = d.inputDescriptionsByName.keys.filter { name in !graph.inputs.contains { $0.name == name } }
        if !extra.isEmpty {
            throw LRFError.invalid("graph \(graph.name) (\(graph.file)): the model has inputs \(extra.sorted()) that the manifest does not list")
        }
    }

    func run(_ inputs: [String: Tensor]) throws -> [String: Tensor] {
        guard let model = model else { throw LRFError.state("\(graph.name): session is closed") }
        var features: [String: MLFeatureValue] = [:]
        for (name, t) in inputs {
            let want = model.modelDescription.inputDescriptionsByName[name]?.multiArrayConstraint?.dataType ?? .float32
            features[name] = MLFeatureValue(multiArray: try toMultiArray(t, as: want))
        }
        let out = try model.prediction(from: try MLDictionaryFeatureProvider(dictionary: features))
        var result: [String: Tensor] = [:]
        for spec in graph.outputs {
            guard let arr = out.featureValue(for: spec.name)?.multiArrayValue else {
                throw LRFError.state("\(graph.name): Core ML returned no multi-array '\(spec.name)' (got \(out.featureNames.sorted()))")
            }
            result[spec.name] = try fromMultiArray(arr, as: spec.dtype)
        }
        return result
    }

    func close() { model = nil }

    /// A tensor as the model's declared multi-array type (whole arrays, no per-element NSNumber).
    private func toMultiArray(_ t: Tensor, as type: MLMultiArrayDataType) throws -> MLMultiArray {
        switch t.dtype {
        case .float32:
            return MLMultiArray(MLShapedArray<Float>(scalars: t.floats!, shape: t.shape))
        case .int32:
            return MLMultiArray(MLShapedArray<Int32>(scalars: t.ints!, shape: t.shape))
        case .uint8:                                         // Core ML has no uint8 multi-arrays
            if type == .int32 { return MLMultiArray(MLShapedArray<Int32>(scalars: t.bytes!.map { Int32($0) }, shape: t.shape)) }
            return MLMultiArray(MLShapedArray<Float>(scalars: t.bytes!.map { Float($0) }, shape: t.shape))
        }
    }

    /// Any Core ML array (float16/32/64, int32; any strides) in the manifest's dtype:
    /// MLShapedArray(converting:) reads it in row-major order whatever its layout.
    private func fromMultiArray(_ a: MLMultiArray, as dtype: DType) throws -> Tensor {
        let shape = a.shape.map { $0.intValue }
        switch dtype {
        case .float32: return try Tensor.f32(shape, MLShapedArray<Float>(converting: a).scalars)
        case .int32: return try Tensor.i32(shape, MLShapedArray<Int32>(converting: a).scalars)
        case .uint8:
            return try Tensor.u8(shape, MLShapedArray<Float>(converting: a).scalars.map { UInt8(max(0, min(255, $0.rounded()))) })
        }
    }
}
#endif
