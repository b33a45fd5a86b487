import Foundation

/// Checks this port against a bundle's own golden files (runtime/BUNDLE.md section 6): a mirror
/// of GoldenCheck.kt.
public enum GoldenCheck {
    public struct Report: CustomStringConvertible {
        public let ok: Bool
        public let lines: [String]
        public var description: String { lines.joined(separator: "\n") }
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

    /// Runs every check whose golden file the manifest lists; never throws for a mismatch.
    public static func run(_ manifest: Manifest, _ source: BundleSource) -> Report {
        guard let golden = manifest.golden else { return Report(ok: false, lines: ["manifest has no 'golden' section"]) }
        var lines: [String] = []
        var ok = true
        func record(_ name: String, _ check: () throws -> String) {
            do {
                lines.append("ok   \(name): \(try check())")
            } catch {
                ok = false
                lines.append("FAIL \(name): \(error)")
            }
        }
        if let path = golden.files["rng"] {
            record("rng") { try checkRNG(try source.readText(path), tol: golden.noiseMaxAbs, source: path) }
        }
        if let path = golden.files["timesteps"] {
            record("timesteps") { try checkTimesteps(try readF32(try source.readData(path)), steps: golden.steps, shift: manifest.shift) }
        }
        if let path = golden.files["noise"] {
            record("noise") {
                try checkNoise(try readF32(try source.readData(path)), seed: golden.seed, latentShape: manifest.latentShape, tol: golden.noiseMaxAbs)
            }
        }
        if lines.isEmpty { return Report(ok: false, lines: ["golden.files lists none of rng, timesteps, noise"]) }
        return Report(ok: ok, lines: lines)
    }

    static func hex64(_ s: String) throws -> UInt64 {
        let digits = s.hasPrefix("0x") ? String(s.dropFirst(2)) : s
        guard let v = UInt64(digits, radix: 16) else { throw LRFError.invalid("'\(s)' is not a 64-bit hex number") }
        return v
    }

    static func bits32(_ v: Any?) throws -> UInt32 {
        guard let n = v as? JSONNumber, let l = n.int64Value, l >= 0, l <= Int64(UInt32.max) else {
            throw LRFError.invalid("expected a uint32 bit pattern, got \(String(describing: v))")
        }
        return UInt32(l)
    }

    /// The golden RNG vectors (`source` names the file): words and uniforms bit-exact, normals within `tol`.
    public static func checkRNG(_ text: String, tol: Double, source: String = "rng.json") throws -> String {
        let vectors = try JSONObj.parse(text, source: source).objList("vectors")
        guard !vectors.isEmpty else { throw LRFError.invalid("\(source) has no vectors") }
        var normals = 0
        for v in vectors {
            let seedHex = try v.string("seed_hex")
            let seed = try hex64(seedHex)
            let words = try v.stringList("words_hex")
            let mine = PRNG.words(seed: seed, count: words.count)
            for i in words.indices {
                let want = try hex64(words[i])
                if mine[i] != want {
                    throw LRFError.invalid("seed \(seedHex) word \(i): got \(String(mine[i], radix: 16)), want \(words[i])")
                }
            }
            let ubits = try v.list("uniform_bits")
            let u = PRNG.uniform(seed: seed, count: ubits.count)
            for i in ubits.indices {
                let want = try bits32(ubits[i])
                if u[i].bitPattern != want {
                    throw LRFError.invalid("seed \(seedHex) uniform \(i): got \(u[i]), want \(Float(bitPattern: want))")
                }
            }
            let nbits = try v.list("normal_bits")
            let n = PRNG.normal(seed: seed, count: nbits.count)
            for i in nbits.indices {
                let want = Float(bitPattern: try bits32(nbits[i]))
                if Double(abs(n[i] - want)) > tol {
                    throw LRFError.invalid("seed \(seedHex) normal \(i): got \(n[i]), want \(want) (tolerance \(tol))")
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
