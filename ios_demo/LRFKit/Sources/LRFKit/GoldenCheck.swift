import Foundation

/// Checks this port against a bundle's own golden files without an engine (runtime/BUNDLE.md
/// section 6): the RNG vectors and every case's timesteps and noise, each against its file's
/// tolerance. A mirror of GoldenCheck.kt; `GoldenRun` does the checks that need the graphs.
public enum GoldenCheck {
    public struct Report: CustomStringConvertible, Sendable {
        public let ok: Bool
        public let lines: [String]
        public var description: String { lines.joined(separator: "\n") }
    }

    /// Collects "ok   ..." / "FAIL ..." lines; a check throwing is a FAIL line, never an error.
    struct Recorder {
        var lines: [String] = []
        var ok = true

        mutating func record(_ name: String, _ check: () throws -> String) {
            do {
                lines.append("ok   \(name): \(try check())")
            } catch {
                ok = false
                lines.append("FAIL \(name): \(error)")
            }
        }

        func report() -> Report { Report(ok: ok && !lines.isEmpty, lines: lines) }
    }

    /// Raw little-endian float32 array (the bundle's `.f32` files).
    public static func readF32(_ data: Data) throws -> [Float] {
        guard data.count % 4 == 0 else { throw LRFError.invalid("a .f32 file must hold a multiple of 4 bytes, got \(data.count)") }
        let bytes = [UInt8](data)
        var out = [Float](repeating: 0, count: bytes.count / 4)
        for k in 0..<out.count {
            var bits = UInt32(bytes[4 * k])
            bits |= UInt32(bytes[4 * k + 1]) << 8
            bits |= UInt32(bytes[4 * k + 2]) << 16
            bits |= UInt32(bytes[4 * k + 3]) << 24
            out[k] = Float(bitPattern: bits)
        }
        return out
    }

    /// A golden `.f32` file, its length checked against the entry's shape.
    public static func readF32(_ source: BundleSource, _ f: GoldenFile) throws -> [Float] {
        let v = try readF32(try source.readData(f.file))
        if let shape = f.shape, v.count != shape.reduce(1, *) {
            throw LRFError.invalid("\(f.file) holds \(v.count) values, its shape \(shape) needs \(shape.reduce(1, *))")
        }
        return v
    }

    /// Runs every engine-free check the golden files allow; never throws for a mismatch.
    public static func run(_ manifest: Manifest, _ source: BundleSource) -> Report {
        guard let golden = manifest.golden else { return Report(ok: false, lines: ["FAIL golden: the manifest has no 'golden' section"]) }
        var rec = Recorder()
        let noiseTol = golden.sortedFiles.first { $0.content == "noise" }?.tolerance?.bar ?? 1e-6
        for f in golden.sortedFiles {
            let c = f.caseID.flatMap { golden.cases[$0] }
            switch f.content {
            case "rng_vectors":
                rec.record("rng") { try checkRNG(try source.readText(f.file), tol: noiseTol, source: f.file) }
            case "timesteps":
                rec.record("timesteps \(f.caseID ?? "-")") {
                    try checkTimesteps(try readF32(source, f), steps: try need(c, f).steps, shift: manifest.shift)
                }
            case "noise":
                rec.record("noise \(f.caseID ?? "-")") {
                    try checkNoise(try readF32(source, f), seed: try need(c, f).seed, latentShape: manifest.latentShape,
                                   tol: f.tolerance?.bar ?? 1e-6)
                }
            default: break
            }
        }
        if rec.lines.isEmpty { return Report(ok: false, lines: ["FAIL golden: golden.files lists no rng_vectors, timesteps or noise"]) }
        return rec.report()
    }

    static func need(_ c: GoldenCase?, _ f: GoldenFile) throws -> GoldenCase {
        guard let c = c else { throw LRFError.invalid("golden.files.\(f.key): a \(f.content) file needs a case") }
        return c
    }

    static func hex64(_ s: String) throws -> UInt64 {
        let digits = s.hasPrefix("0x") ? String(s.dropFirst(2)) : s
        guard let v = UInt64(digits, radix: 16) else { throw LRFError.invalid("'\(s)' is not a 64-bit hex number") }
        return v
    }

    static func bits32(_ v: Any) throws -> UInt32 {
        guard let n = JSONObj.number(v), n.doubleValue >= 0, n.doubleValue <= Double(UInt32.max), n.doubleValue == n.doubleValue.rounded() else {
            throw LRFError.invalid("expected a uint32 bit pattern, got \(JSONObj.show(v))")
        }
        return UInt32(n.int64Value)
    }

    /// The golden RNG vectors (`source` names the file): words and uniforms bit-exact, normals within `tol`.
    public static func checkRNG(_ text: String, tol: Double, source: String = "rng.json") throws -> String {
        let vectors = try JSONObj.parse(text, source: source).objList("vectors")
        guard !vectors.isEmpty else { throw LRFError.invalid("\(source) has no vectors") }
        var normals = 0
        for v in vectors {
            let seedText = try v.string("seed")
            guard let seed = PRNG.parseSeedString(seedText) else { throw v.expected("seed", "a uint64 seed as a decimal string", seedText) }
            let words = try v.stringList("words_hex")
            let mine = PRNG.words(seed: seed, count: words.count)
            for i in words.indices {
                let want = try hex64(words[i])
                if mine[i] != want {
                    throw LRFError.invalid("seed \(seedText) word \(i): got 0x\(String(mine[i], radix: 16)), want \(words[i])")
                }
            }
            let ubits = try v.list("uniform_bits")
            let u = PRNG.uniform(seed: seed, count: ubits.count)
            for i in ubits.indices {
                let want = try bits32(ubits[i])
                if u[i].bitPattern != want {
                    throw LRFError.invalid("seed \(seedText) uniform \(i): got \(u[i]), want \(Float(bitPattern: want))")
                }
            }
            let nbits = try v.list("normal_bits")
            let n = PRNG.normal(seed: seed, count: nbits.count)
            for i in nbits.indices {
                let want = Float(bitPattern: try bits32(nbits[i]))
                if Double(abs(n[i] - want)) > tol {
                    throw LRFError.invalid("seed \(seedText) normal \(i): got \(n[i]), want \(want) (tolerance \(tol))")
                }
                normals += 1
            }
        }
        return "\(vectors.count) seeds: words and uniforms bit-exact, \(normals) normals within \(tol)"
    }

    public static func checkTimesteps(_ golden: [Float], steps: Int, shift: Double) throws -> String {
        let mine = try Schedule.timesteps(steps: steps, shift: shift)
        guard golden.count == mine.count else { throw LRFError.invalid("golden has \(golden.count) timesteps, N=\(steps) needs \(mine.count)") }
        for i in mine.indices where mine[i].bitPattern != golden[i].bitPattern {
            throw LRFError.invalid("t[\(i)] = \(mine[i]), golden \(golden[i]) (N=\(steps), shift \(shift))")
        }
        return "N=\(steps) shift \(shift) bit-exact"
    }

    public static func checkNoise(_ golden: [Float], seed: UInt64, latentShape: [Int], tol: Double) throws -> String {
        let mine = try PRNG.noise(seed: seed, shape: latentShape)
        guard golden.count == mine.count else {
            throw LRFError.invalid("golden noise has \(golden.count) values, latent \(latentShape) needs \(mine.count)")
        }
        var worst = 0.0
        for i in mine.indices { worst = max(worst, Double(abs(mine[i] - golden[i]))) }
        if worst > tol { throw LRFError.invalid("max |noise - golden| = \(worst) > \(tol) (seed \(seed))") }
        return "seed \(seed), \(mine.count) values, max abs error \(worst)"
    }

    /// `mine` against a golden tensor under `tol` (exact, max_abs, or rel_max_abs = max abs
    /// difference / max abs of the file); throws with the measured value when it fails.
    public static func compareTensor(_ mine: [Float], _ golden: [Float], _ tol: Tolerance) throws -> String {
        guard mine.count == golden.count else { throw LRFError.invalid("\(mine.count) values, the golden file has \(golden.count)") }
        var worst = 0.0, scale = 0.0, differ = 0
        for i in mine.indices {
            let d = abs(Double(mine[i]) - Double(golden[i]))
            if d.isNaN || d > worst { worst = d.isNaN ? .infinity : d }
            scale = max(scale, abs(Double(golden[i])))
            if mine[i].bitPattern != golden[i].bitPattern { differ += 1 }
        }
        let value: Double
        let pass: Bool
        switch tol.metric {
        case "exact": value = Double(differ); pass = differ == 0
        case "max_abs": value = worst; pass = worst <= tol.bar
        case "rel_max_abs": value = scale > 0 ? worst / scale : worst; pass = value <= tol.bar
        default: throw LRFError.invalid("metric \(tol.metric) does not compare tensors")
        }
        let text = tol.metric == "exact" ? "\(differ) of \(mine.count) values differ" : tol.metric + " " + String(format: "%.3g", value)
        guard pass else { throw LRFError.invalid("\(text), bar \(tol.bar)") }
        return "\(text) (bar \(tol.bar))"
    }

    /// PSNR in dB of two ARGB images (RGB channels), capped at 100 like the exporter's metric.
    public static func psnr(_ a: [UInt32], _ b: [UInt32]) throws -> Double {
        guard a.count == b.count else { throw LRFError.invalid("images differ in size: \(a.count) vs \(b.count) pixels") }
        var se = 0.0
        for i in a.indices {
            for shift: UInt32 in [16, 8, 0] {
                let d = Double(Int((a[i] >> shift) & 0xFF) - Int((b[i] >> shift) & 0xFF))
                se += d * d
            }
        }
        if se == 0 { return 100.0 }
        let mse = se / (3.0 * Double(a.count))
        return min(100.0, 10.0 * log10(255.0 * 255.0 / mse))
    }
}
