#if canImport(CoreML)
import CoreML
import Foundation

/// Core ML behind the `Engine` protocol. Each graph's `.mlpackage` (a directory, listed file by
/// file in the manifest) is named by the manifest's `file`; it is compiled on device once
/// (MLModel.compileModel) and cached by the sha256 of its files, so a swapped bundle recompiles.
public final class CoreMLEngine: Engine {
    let source: BundleSource
    let manifest: Manifest
    let computeUnits: MLComputeUnits
    let cacheDir: URL

    public init(source: BundleSource, manifest: Manifest, computeUnits: MLComputeUnits = .all) throws {
        self.source = source
        self.manifest = manifest
        self.computeUnits = computeUnits
        cacheDir = try FileManager.default.url(for: .cachesDirectory, in: .userDomainMask, appropriateFor: nil, create: true)
            .appendingPathComponent("LRFCompiledModels", isDirectory: true)
        try FileManager.default.createDirectory(at: cacheDir, withIntermediateDirectories: true)
    }

    public func open(_ graph: GraphSpec) throws -> GraphSession {
        let url = source.url(graph.file)
        let config = MLModelConfiguration()
        config.computeUnits = computeUnits
        let compiled: URL
        if url.pathExtension == "mlmodelc" {
            compiled = url
        } else {
            compiled = cacheDir.appendingPathComponent("\(cacheKey(graph)).mlmodelc")
            if !FileManager.default.fileExists(atPath: compiled.path) {
                let tmp = try MLModel.compileModel(at: url)
                // move into the cache atomically: a half-copied model is never picked up
                try? FileManager.default.removeItem(at: compiled)
                try FileManager.default.moveItem(at: tmp, to: compiled)
            }
        }
        return CoreMLSession(model: try MLModel(contentsOf: compiled, configuration: config), graph: graph)
    }

    /// The graph's files' checksums, hashed: a new bundle never reuses a stale compiled model.
    func cacheKey(_ graph: GraphSpec) -> String {
        let prefix = graph.file.hasSuffix("/") ? graph.file : graph.file + "/"
        let parts = manifest.files.values
            .filter { $0.path == graph.file || $0.path.hasPrefix(prefix) }
            .sorted { $0.path < $1.path }
            .map { "\($0.path)=\($0.sha256)" }
        return graph.name + "-" + String(SHA256Hex.of(Data(parts.joined(separator: "\n").utf8)).prefix(16))
    }
}

final class CoreMLSession: GraphSession {
    private var model: MLModel?
    let graph: GraphSpec

    init(model: MLModel, graph: GraphSpec) {
        self.model = model
        self.graph = graph
    }

    func run(_ inputs: [String: Tensor]) throws -> [String: Tensor] {
        guard let model = model else { throw LRFError.state("\(graph.name): session is closed") }
        var features: [String: MLFeatureValue] = [:]
        for (name, t) in inputs { features[name] = MLFeatureValue(multiArray: try toMultiArray(t)) }
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

    private func toMultiArray(_ t: Tensor) throws -> MLMultiArray {
        let shape = t.shape.map { NSNumber(value: $0) }
        switch t.dtype {
        case .float32:
            let a = try MLMultiArray(shape: shape, dataType: .float32)
            let p = a.dataPointer.bindMemory(to: Float.self, capacity: t.count)
            for (i, v) in t.floats!.enumerated() { p[i] = v }
            return a
        case .int32:
            let a = try MLMultiArray(shape: shape, dataType: .int32)
            let p = a.dataPointer.bindMemory(to: Int32.self, capacity: t.count)
            for (i, v) in t.ints!.enumerated() { p[i] = v }
            return a
        case .uint8:
            throw LRFError.invalid("\(graph.name): Core ML has no uint8 multi-array inputs")
        }
    }

    /// Reads any Core ML array (float16/32/64, int32; any strides) into the manifest's dtype.
    private func fromMultiArray(_ a: MLMultiArray, as dtype: DType) throws -> Tensor {
        let shape = a.shape.map { $0.intValue }
        let strides = a.strides.map { $0.intValue }
        let count = shape.reduce(1, *)
        var values = [Double](repeating: 0, count: count)
        var index = [Int](repeating: 0, count: shape.count)
        for linear in 0..<count {
            var offset = 0
            for k in 0..<shape.count { offset += index[k] * strides[k] }
            values[linear] = a[offset].doubleValue
            var k = shape.count - 1                     // row-major increment of the multi-index
            while k >= 0 {
                index[k] += 1
                if index[k] < shape[k] { break }
                index[k] = 0
                k -= 1
            }
        }
        switch dtype {
        case .float32: return try Tensor.f32(shape, values.map { Float($0) })
        case .int32: return try Tensor.i32(shape, values.map { Int32($0) })
        case .uint8: return try Tensor.u8(shape, values.map { UInt8(max(0, min(255, $0))) })
        }
    }
}
#endif
