import Foundation

/// A listed bundle file: size in bytes and lower-case hex sha256.
public struct FileEntry {
    public let path: String
    public let size: Int64
    public let sha256: String
}

/// The fixed golden case of a bundle (`golden.case`) and its files by key (`golden.files`).
public struct GoldenSpec {
    public let seed: UInt64
    public let label: Int
    public let steps: Int
    public let guidance: Float
    public let files: [String: String]
    public let noiseMaxAbs: Double
    public let imagePsnrDb: Double?
}

/// A bundle's manifest.json, parsed and validated (runtime/BUNDLE.md, schema v1): a mirror of
/// Manifest.kt. Everything the app needs comes from here; nothing about files is hard-coded.
public struct Manifest {
    public static let schema = "lrf-bundle"
    public static let schemaVersion = 1
    public static let fileName = "manifest.json"
    /// Graph names fixed by the schema (BUNDLE.md section 2); files and tensors are not.
    public static let step = "step"
    public static let decoder = "decoder"
    public static let fusedPrefix = "generator_"
    public static let schedulerType = "rectified_flow_euler"

    public let schemaVersion: Int
    public let target: String
    public let precision: String
    public let classes: [String]
    /// Latent shape of one image: [C, h, w].
    public let latentShape: [Int]
    public let imageHeight: Int
    public let imageWidth: Int
    public let imageFormat: String
    public let defaultSteps: Int
    public let defaultGuidance: Float
    public let shift: Double
    public let storedTimesteps: [Int: [Float]]
    public let fusedSteps: [Int]
    public let graphs: [String: GraphSpec]
    public let files: [String: FileEntry]
    public let golden: GoldenSpec?

    /// The fused graph for N steps, or nil when N was not exported fused.
    public func fusedGraph(steps: Int) -> GraphSpec? {
        fusedSteps.contains(steps) ? graphs[Manifest.fusedPrefix + String(steps)] : nil
    }

    public func graph(_ name: String) throws -> GraphSpec {
        guard let g = graphs[name] else {
            throw LRFError.invalid("bundle has no graph '\(name)'; graphs: \(graphs.keys.sorted().joined(separator: ", "))")
        }
        return g
    }

    /// Parses and validates manifest text; `source` names the file in error messages.
    public static func parse(_ text: String, source: String = Manifest.fileName) throws -> Manifest {
        let m = try JSONObj.parse(text, source: source)
        let schemaValue = m.has("schema") ? (m.object.values["schema"] ?? nil) as? String : nil
        if schemaValue != schema {
            throw m.fail("schema", "expected \"\(schema)\", got \(schemaValue ?? "nothing"); is this an LRF bundle?")
        }
        let version = try m.int("schema_version")
        if version < 1 { throw m.fail("schema_version", "must be a positive integer, got \(version)") }
        if version > schemaVersion {
            throw m.fail("schema_version", "bundle schema version \(version) is newer than this app supports (\(schemaVersion)); " +
                "update the app or re-export the bundle with the matching lrf-export")
        }

        let classes = try m.stringList("classes")
        if classes.isEmpty { throw m.fail("classes", "must name at least one class") }
        let latent = try m.obj("latent")
        let latentShape = [try latent.int("channels"), try latent.int("height"), try latent.int("width")]
        if latentShape.contains(where: { $0 < 1 }) { throw m.fail("latent", "sizes must be >= 1, got \(latentShape)") }
        let image = try m.obj("image")
        let imageFormat = try image.string("format")
        if imageFormat != "uint8_nhwc" && imageFormat != "float_nchw" {
            throw image.fail("format", "'\(imageFormat)' is not one of uint8_nhwc, float_nchw")
        }

        let sampling = try m.obj("sampling")
        let defaultSteps = try sampling.int("steps")
        if defaultSteps < 1 { throw sampling.fail("steps", "must be >= 1, got \(defaultSteps)") }
        let guidance = try sampling.double("guidance")
        if !guidance.isFinite { throw sampling.fail("guidance", "must be finite") }

        let sched = try m.obj("scheduler")
        let type = try sched.string("type")
        if type != schedulerType { throw sched.fail("type", "'\(type)' is not '\(schedulerType)'; this app cannot run that scheduler") }
        let shift = try sched.has("shift") ? sched.double("shift") : sampling.double("shift")
        var stored: [Int: [Float]] = [:]
        if sched.has("timesteps") {
            let ts = try sched.obj("timesteps")
            for key in ts.keys {
                guard let n = Int(key) else { throw ts.fail(key, "keys must be step counts") }
                let values = try ts.doubleList(key).map { Float($0) }
                stored[n] = values
                try checkSchedule(n, shift, values, ts, key)
            }
        }

        let rng = try m.obj("rng")
        let rngName = try rng.string("name")
        let rngVersion = try rng.int("version")
        if rngName != PRNG.specName || rngVersion != PRNG.specVersion {
            throw m.fail("rng", "noise spec \(rngName) v\(rngVersion) is not the one this app implements " +
                "(\(PRNG.specName) v\(PRNG.specVersion))")
        }

        var files: [String: FileEntry] = [:]
        let fileObj = try m.obj("files")
        if fileObj.keys.isEmpty { throw m.fail("files", "must list every bundle file") }
        for rel in fileObj.keys {
            let e = try fileObj.obj(rel)
            let sha = try e.string("sha256")
            if sha.count != 64 || !sha.allSatisfy({ ("0"..."9").contains($0) || ("a"..."f").contains($0) }) {
                throw e.fail("sha256", "expected 64 lower-case hex digits")
            }
            let key = try safeRelPath(rel, fileObj)
            files[key] = FileEntry(path: rel, size: try e.long("size"), sha256: sha)
        }

        var graphs: [String: GraphSpec] = [:]
        let graphObj = try m.obj("graphs")
        for name in graphObj.keys {
            let g = try graphObj.obj(name)
            let file = try safeRelPath(g.string("file"), g)
            let prefix = (file.hasSuffix("/") ? String(file.dropLast()) : file) + "/"
            if files[file] == nil && !files.keys.contains(where: { $0.hasPrefix(prefix) }) {
                throw g.fail("file", "'\(file)' is not listed in 'files', so its checksum cannot be verified; re-export the bundle")
            }
            let steps: Int? = try g.has("steps") ? g.int("steps") : nil
            graphs[name] = GraphSpec(name: name, file: file, format: try g.string("format"),
                                     inputs: try g.objList("inputs").map { try TensorSpec.parse($0) },
                                     outputs: try g.objList("outputs").map { try TensorSpec.parse($0) },
                                     steps: steps)
        }
        for required in [step, decoder] where graphs[required] == nil {
            throw m.fail("graphs", "no '\(required)' graph; a bundle needs '\(step)' and '\(decoder)'")
        }
        let fused = try m.has("fused_steps") ? m.intList("fused_steps") : []
        for n in fused {
            guard let g = graphs[fusedPrefix + String(n)] else {
                throw m.fail("fused_steps", "lists \(n) but there is no graph '\(fusedPrefix)\(n)'")
            }
            if let s = g.steps, s != n { throw m.fail("graphs", "'\(fusedPrefix)\(n)' says steps=\(s)") }
        }
        try GraphRoles.check(graphs, latentShape: latentShape, fusedSteps: fused)

        let precision = try m.has("precision") ? m.string("precision") : "unknown"
        return Manifest(schemaVersion: version, target: try m.string("target"),
                        precision: precision,
                        classes: classes, latentShape: latentShape,
                        imageHeight: try image.int("height"), imageWidth: try image.int("width"), imageFormat: imageFormat,
                        defaultSteps: defaultSteps, defaultGuidance: Float(guidance), shift: shift,
                        storedTimesteps: stored, fusedSteps: fused, graphs: graphs, files: files,
                        golden: try parseGolden(m))
    }

    /// The schedule this app computes must be the one the exporter baked in, bit for bit.
    static func checkSchedule(_ n: Int, _ shift: Double, _ stored: [Float], _ whereObj: JSONObj, _ key: String) throws {
        let mine: [Float]
        do { mine = try Schedule.timesteps(steps: n, shift: shift) } catch let e as LRFError { throw whereObj.fail(key, e.message) }
        let same = mine.count == stored.count && mine.indices.allSatisfy { mine[$0].bitPattern == stored[$0].bitPattern }
        if !same {
            throw whereObj.fail(key, "the manifest's timesteps for N=\(n) differ from this app's scheduler " +
                "(shift \(shift)); the bundle and the app disagree on the schedule spec")
        }
    }

    static func parseGolden(_ m: JSONObj) throws -> GoldenSpec? {
        if !m.has("golden") { return nil }
        let g = try m.obj("golden")
        let c = try g.obj("case")
        var files: [String: String] = [:]
        let fo = try g.obj("files")
        for key in fo.keys {
            let file = try fo.obj(key).string("file")
            files[key] = try safeRelPath(file, fo)
        }
        let tol: JSONObj? = try g.has("tolerances") ? g.obj("tolerances") : nil
        var noiseMaxAbs = 1e-6
        var imagePsnrDb: Double? = nil
        if let t = tol {
            if t.has("noise_max_abs") { noiseMaxAbs = try t.double("noise_max_abs") }
            if t.has("image_psnr_db") { imagePsnrDb = try t.double("image_psnr_db") }
        }
        let seedText = try c.number("seed").text
        let seed: UInt64
        do { seed = try PRNG.parseSeed(seedText) } catch let e as LRFError { throw c.fail("seed", e.message) }
        return GoldenSpec(seed: seed, label: try c.int("label"), steps: try c.int("steps"),
                          guidance: Float(try c.double("guidance")), files: files,
                          noiseMaxAbs: noiseMaxAbs, imagePsnrDb: imagePsnrDb)
    }

    /// Bundle paths are relative and stay inside the bundle (no "..", no absolute paths).
    public static func safeRelPath(_ rel: String, _ whereObj: JSONObj) throws -> String {
        let parts = rel.replacingOccurrences(of: "\\", with: "/").split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        if rel.isEmpty || rel.hasPrefix("/") || parts.contains("..") || parts[0].contains(":") {
            throw whereObj.fail(nil, "file path '\(rel)' must be relative and inside the bundle")
        }
        return rel
    }
}
