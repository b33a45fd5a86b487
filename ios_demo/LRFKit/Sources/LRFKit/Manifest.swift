import Foundation

/// A listed bundle file: size in bytes and lower-case hex sha256.
public struct FileEntry: Sendable {
    public let path: String
    public let size: Int64
    public let sha256: String
}

/// A bundle's manifest.json, parsed and validated (runtime/BUNDLE.md, schema v2): the one schema
/// check at load, one line per failure. A mirror of Manifest.kt; everything the app needs comes
/// from here, nothing about files or tensor names is hard-coded.
public struct Manifest: Sendable {
    public static let schema = "lrf-bundle"
    public static let schemaVersion = 2
    public static let fileName = "manifest.json"
    /// Graph names fixed by the schema (BUNDLE.md 2.2); files and tensor names are not.
    public static let denoise = "denoise"
    public static let decoder = "decoder"
    public static let encoder = "encoder"
    public static let schedulerType = "rectified_flow_euler"
    static let targets = ["onnx", "executorch", "coreml"]
    static let precisions = ["fp32", "int8"]
    static let imageFormats = ["uint8_nhwc", "float_nchw"]
    static let maxDim: Int64 = 4096
    static let maxClasses = 1000

    public let schemaVersion: Int
    public let target: String
    public let precision: String
    /// A "turbo" model: its denoise graph makes one core call per step (guidance is an input).
    public let guidanceDistilled: Bool
    public let classes: [String]
    /// Latent shape of one image: [C, h, w].
    public let latentShape: [Int]
    public let imageHeight: Int
    public let imageWidth: Int
    public let imageFormat: String
    public let defaultSteps: Int
    public let defaultGuidance: Float
    public let defaultMode: Mode
    public let shift: Double
    public let storedTimesteps: [Int: [Float]]
    public let graphs: [String: GraphSpec]
    public let files: [String: FileEntry]
    public let golden: GoldenSpec?

    public var denoiseGraph: GraphSpec { graphs[Manifest.denoise]! }
    public var decoderGraph: GraphSpec { graphs[Manifest.decoder]! }
    /// The image -> latent graph editing needs; nil in a bundle without one.
    public var encoderGraph: GraphSpec? { graphs[Manifest.encoder] }
    public var window: WindowSpec { denoiseGraph.window! }

    /// Parses and validates manifest text; `source` names the file in error messages.
    public static func parse(_ text: String, source: String = Manifest.fileName) throws -> Manifest {
        try parse(Data(text.utf8), source: source)
    }

    public static func parse(_ data: Data, source: String = Manifest.fileName) throws -> Manifest {
        let m = try JSONObj.parse(data, source: source)
        let schemaValue = m.raw("schema")
        if (schemaValue as? String) != schema { throw m.expected("schema", "\"\(schema)\" (is this an LRF bundle?)", schemaValue) }
        let version = try m.intIn("schema_version", 1, nil)
        if version < schemaVersion {
            throw LRFError.invalid("\(source): bundle schema v\(version) is no longer supported by this runtime " +
                "(schema v\(schemaVersion)); re-export it with lrf-export")
        }
        if version > schemaVersion {
            throw m.fail("schema_version", "bundle schema v\(version) is newer than this app supports (v\(schemaVersion)); " +
                "update the app or re-export the bundle with the matching lrf-export")
        }

        let target = try m.choice("target", targets)
        let precision = try m.choice("precision", precisions)
        let distilled = try m.obj("model").bool("guidance_distilled")
        let classesRaw = m.raw("classes")
        let classes = (classesRaw as? [Any])?.compactMap { ($0 as? String).flatMap { $0.isEmpty ? nil : $0 } } ?? []
        if classes.isEmpty || classes.count != (classesRaw as? [Any])?.count || classes.count > maxClasses ||
            Set(classes).count != classes.count {
            throw m.expected("classes", "a list of 1..\(maxClasses) distinct non-empty strings", classesRaw)
        }
        _ = try m.intIn("null_class", Int64(classes.count), Int64(classes.count))
        let latent = try m.obj("latent")
        let latentShape = [try latent.intIn("channels", 1, maxDim), try latent.intIn("height", 1, maxDim),
                           try latent.intIn("width", 1, maxDim)]
        let factor = Int64(try m.obj("codec").intIn("scale_factor", 8, 8))
        let image = try m.obj("image")
        let imageFormat = try image.choice("format", imageFormats)
        let imageHeight = try image.intIn("height", factor * Int64(latentShape[1]), factor * Int64(latentShape[1]))
        let imageWidth = try image.intIn("width", factor * Int64(latentShape[2]), factor * Int64(latentShape[2]))

        let sampling = try m.obj("sampling")
        let defaultSteps = try sampling.intIn("steps", 1, Int64(Schedule.maxSteps))
        let guidance = try sampling.numberIn("guidance", Schedule.guidanceMin, Schedule.guidanceMax)
        let shift = try sampling.numberIn("shift", 0, 1e6, openLo: true)
        let mode: Mode = try sampling.choice("mode", ["fused", "stepwise"]) == "fused" ? .fused : .stepwise
        let stored = try parseScheduler(try m.obj("scheduler"), shift: shift)

        let rng = try m.obj("rng")
        _ = try rng.choice("name", [PRNG.specName])
        _ = try rng.intIn("version", Int64(PRNG.specVersion), Int64(PRNG.specVersion))

        let files = try parseFiles(m)
        let graphObj = try m.obj("graphs")
        for required in [denoise, decoder] { _ = try graphObj.obj(required) }
        var graphs: [String: GraphSpec] = [:]
        for name in graphObj.keys { graphs[name] = try parseGraph(try graphObj.obj(name), name: name, files: files) }
        try GraphRoles.check(graphs, latentShape: latentShape, imageFormat: imageFormat, source: source)

        let golden = try m.has("golden") ? GoldenSpec.parse(try m.obj("golden"), classCount: classes.count, files: files) : nil
        return Manifest(schemaVersion: version, target: target, precision: precision, guidanceDistilled: distilled,
                        classes: classes, latentShape: latentShape, imageHeight: imageHeight, imageWidth: imageWidth,
                        imageFormat: imageFormat, defaultSteps: defaultSteps, defaultGuidance: Float(guidance),
                        defaultMode: mode, shift: shift, storedTimesteps: stored, graphs: graphs, files: files, golden: golden)
    }

    /// Type, shift and every listed timesteps list, bit-exact with this app's formula.
    static func parseScheduler(_ sched: JSONObj, shift: Double) throws -> [Int: [Float]] {
        _ = try sched.choice("type", [schedulerType])
        let s = try sched.numberIn("shift", 0, 1e6, openLo: true)
        if s != shift { throw sched.expected("shift", "\(shift) (= sampling.shift)", sched.raw("shift")) }
        let ts = try sched.obj("timesteps")
        var stored: [Int: [Float]] = [:]
        for key in ts.keys {
            guard key.allSatisfy({ ("0"..."9").contains($0) }), let n = Int(key), n >= 1, n <= Schedule.maxSteps else {
                throw ts.expected(key, "a key N in 1..\(Schedule.maxSteps)", key)
            }
            let raw = try ts.list(key)
            if raw.count != n + 1 || raw.contains(where: { JSONObj.number($0) == nil }) { throw ts.expected(key, "\(n + 1) numbers", raw) }
            let values = raw.map { Float(JSONObj.number($0)!.doubleValue) }
            let mine = try Schedule.timesteps(steps: n, shift: shift)
            for i in mine.indices where mine[i].bitPattern != values[i].bitPattern {
                throw ts.expected("\(key)[\(i)]", "\(mine[i]) (section 3 formula, shift \(shift))", raw[i])
            }
            stored[n] = values
        }
        return stored
    }

    static func parseFiles(_ m: JSONObj) throws -> [String: FileEntry] {
        let fileObj = try m.obj("files")
        if fileObj.keys.isEmpty { throw m.expected("files", "an object listing every bundle file", fileObj.dict) }
        var files: [String: FileEntry] = [:]
        for rel in fileObj.keys {
            _ = try safeRelPath(rel, fileObj, rel)
            let e = try fileObj.obj(rel)
            let size = try e.long("size")
            if size < 0 { throw e.expected("size", "int >= 0", e.raw("size")) }
            let sha = e.raw("sha256")
            guard let hex = sha as? String, hex.count == 64,
                  hex.allSatisfy({ ("0"..."9").contains($0) || ("a"..."f").contains($0) }) else {
                throw e.expected("sha256", "64 lowercase hex digits", sha)
            }
            files[rel] = FileEntry(path: rel, size: size, sha256: hex)
        }
        return files
    }

    static func parseGraph(_ g: JSONObj, name: String, files: [String: FileEntry]) throws -> GraphSpec {
        let file = try safeRelPath(try g.string("file"), g, "file")
        if files[file] == nil && !files.keys.contains(where: { $0.hasPrefix(file + "/") }) {
            throw g.fail("file", "'\(file)' is not listed in 'files', so its checksum cannot be verified; re-export the bundle")
        }
        let external = try g.has("external_data") ? g.stringList("external_data") : []
        for (i, rel) in external.enumerated() {
            _ = try safeRelPath(rel, g, "external_data[\(i)]")
            if files[rel] == nil { throw g.fail("external_data[\(i)]", "'\(rel)' is not listed in 'files'; re-export the bundle") }
        }
        var window: WindowSpec? = nil
        if g.has("window") {
            let w = try g.obj("window")
            let lo = try w.intIn("min", 1, nil)
            window = WindowSpec(min: lo, max: try w.has("max") ? w.intIn("max", Int64(lo), nil) : nil)
        }
        return GraphSpec(name: name, file: file, format: try g.nonEmptyString("format"),
                         inputs: try g.objList("inputs").map { try TensorSpec.parse($0) },
                         outputs: try g.objList("outputs").map { try TensorSpec.parse($0) },
                         window: window, externalData: external)
    }

    /// Bundle paths: relative, '/'-separated, non-empty parts, no '.'/'..', '\', ':' (BUNDLE.md 2.3).
    public static func safeRelPath(_ rel: String, _ whereObj: JSONObj, _ key: String?) throws -> String {
        let parts = rel.split(separator: "/", omittingEmptySubsequences: false)
        if parts.contains(where: { $0.isEmpty || $0 == "." || $0 == ".." }) || rel.contains("\\") || rel.contains(":") {
            throw whereObj.expected(key, "a relative path inside the bundle", rel)
        }
        return rel
    }
}
