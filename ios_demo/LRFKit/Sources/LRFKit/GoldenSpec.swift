import Foundation

/// How close a reader's result must be to a golden file (`golden.files.*.tolerance`).
public struct Tolerance: Sendable {
    public let metric: String
    public let bar: Double
}

/// One golden case (`golden.cases.<id>`): what to generate or edit, and how.
public struct GoldenCase: Sendable {
    public let id: String
    /// "generate", "img2img" or "inpaint".
    public let kind: String
    /// The case's mode; .auto (the bundle's sampling.mode) when the case names none.
    public let mode: Mode
    public let seed: UInt64
    public let label: Int
    public let steps: Int
    public let guidance: Float
    /// Editing cases only.
    public let strength: Double?
}

/// One golden file (`golden.files.<key>`); every entry has all seven fields (null where n/a).
public struct GoldenFile: Sendable {
    public let key: String
    public let file: String
    public let format: String
    public let dtype: String?
    public let shape: [Int]?
    public let caseID: String?
    /// The content without a mode suffix ("image", not "image_fused").
    public let content: String
    /// Nil for inputs (input_image, mask), which are not compared.
    public let tolerance: Tolerance?
    /// The mode a `latent_final_<mode>` / `image_<mode>` file was made in; nil: the case's mode.
    public let mode: Mode?
}

/// The `golden` section (runtime/BUNDLE.md section 6); mirror of GoldenSpec.kt.
public struct GoldenSpec: Sendable {
    public let runtime: [String: String]
    public let cases: [String: GoldenCase]
    public let files: [String: GoldenFile]

    static let kinds = ["generate", "img2img", "inpaint"]
    static let formats = ["json", "f32", "u8", "png"]
    static let contents = ["rng_vectors", "timesteps", "noise", "denoise_first", "latent_final", "image",
                           "reference_latent_final", "reference_image", "input_image", "mask"]
    /// Contents a writer may also suffix with the mode they were made in (`image_fused`):
    /// runtime/BUNDLE.md names the mode in the case, exporter/golden.py in the content; both are read.
    static let modeContents = ["latent_final", "image"]
    static let metrics = ["exact", "max_abs", "rel_max_abs", "psnr_db"]
    static let fileKeys = ["file", "format", "dtype", "shape", "case", "content", "tolerance"]

    /// The case ids in sorted order (JSON objects keep no order here).
    public var caseIDs: [String] { cases.keys.sorted() }

    /// Files sorted by key.
    public var sortedFiles: [GoldenFile] { files.keys.sorted().map { files[$0]! } }

    /// The file of `content` for case `caseID` (nil: the bundle-wide files such as rng).
    public func file(_ caseID: String?, _ content: String) -> GoldenFile? {
        sortedFiles.first { $0.caseID == caseID && $0.content == content }
    }

    static func parse(_ g: JSONObj, classCount: Int, files: [String: FileEntry]) throws -> GoldenSpec {
        var runtime: [String: String] = [:]
        if g.has("runtime") { for (k, v) in try g.obj("runtime").dict { runtime[k] = "\(v)" } }
        var cases: [String: GoldenCase] = [:]
        let co = try g.obj("cases")
        for id in co.keys { cases[id] = try parseCase(try co.obj(id), id: id, classCount: classCount) }
        var out: [String: GoldenFile] = [:]
        let fo = try g.obj("files")
        for key in fo.keys {
            let f = try fo.obj(key)
            for k in fileKeys where !f.contains(k) {
                throw f.fail(k, "missing (every golden.files entry has \(fileKeys.joined(separator: ", ")))")
            }
            let file = try Manifest.safeRelPath(try f.string("file"), f, "file")
            if files[file] == nil { throw f.fail("file", "'\(file)' is not listed in 'files'; re-export the bundle") }
            let caseID: String? = try f.has("case") ? f.string("case") : nil
            if let c = caseID, cases[c] == nil { throw f.expected("case", "one of the golden.cases ids \(cases.keys.sorted())", c) }
            var tol: Tolerance? = nil
            if f.has("tolerance") {
                let t = try f.obj("tolerance")
                tol = Tolerance(metric: try t.choice("metric", metrics), bar: try t.numberIn("bar", 0, 1e6))
            }
            let content = try f.choice("content", contents + modeContents.flatMap { ["\($0)_fused", "\($0)_stepwise"] })
            let base = modeContents.first { content.hasPrefix($0 + "_") }
            out[key] = GoldenFile(key: key, file: file, format: try f.choice("format", formats),
                                  dtype: try f.has("dtype") ? f.choice("dtype", ["float32", "uint8"]) : nil,
                                  shape: try f.has("shape") ? f.intList("shape") : nil,
                                  caseID: caseID, content: base ?? content, tolerance: tol,
                                  mode: base.map { modeOf(String(content.dropFirst($0.count + 1))) })
        }
        return GoldenSpec(runtime: runtime, cases: cases, files: out)
    }

    static func modeOf(_ name: String) -> Mode { name == "fused" ? .fused : .stepwise }

    static func parseCase(_ c: JSONObj, id: String, classCount: Int) throws -> GoldenCase {
        let kind = try c.choice("kind", kinds)
        // BUNDLE.md: "mode"; exporter/golden.py: "modes" (the modes it has files for)
        var mode = Mode.auto
        if c.has("mode") {
            mode = modeOf(try c.choice("mode", ["fused", "stepwise"]))
        } else if c.has("modes"), let first = try c.stringList("modes").first {
            guard first == "fused" || first == "stepwise" else { throw c.expected("modes", "a list of \"fused\" / \"stepwise\"", c.raw("modes")) }
            mode = modeOf(first)
        }
        let seedRaw = c.raw("seed")
        guard let seedText = seedRaw as? String, let seed = PRNG.parseSeedString(seedText) else {
            throw c.expected("seed", "a uint64 seed as a decimal string", seedRaw)
        }
        let strength: Double? = try kind == "generate" ? nil : c.numberIn("strength", 0, 1)
        return GoldenCase(id: id, kind: kind, mode: mode, seed: seed, label: try c.intIn("label", 0, Int64(classCount - 1)),
                          steps: try c.intIn("steps", 1, Int64(Schedule.maxSteps)),
                          guidance: Float(try c.numberIn("guidance", Schedule.guidanceMin, Schedule.guidanceMax)),
                          strength: strength)
    }
}
