import Foundation

/// Portable noise: a line-by-line mirror of lrf/prng.py and android_demo/core Prng.kt
/// (runtime/BUNDLE.md section 4). Words and uniforms are bit-exact with Python; normals agree to
/// within 1e-6 (platform libm `log`/`cos`/`sin` may differ in the last float64 bit).
public enum PRNG {
    public static let gamma: UInt64 = 0x9E37_79B9_7F4A_7C15
    static let m1: UInt64 = 0xBF58_476D_1CE4_E5B9
    static let m2: UInt64 = 0x94D0_49BB_1331_11EB
    static let twoPowMinus24: Float = 1.0 / 16_777_216.0

    /// Spec name and version this implementation follows; the bundle's RNG spec must match.
    public static let specName = "splitmix64-boxmuller"
    public static let specVersion = 1

    /// The SplitMix64 finaliser.
    public static func mix(_ z0: UInt64) -> UInt64 {
        var z = z0
        z = (z ^ (z >> 30)) &* m1
        z = (z ^ (z >> 27)) &* m2
        return z ^ (z >> 31)
    }

    /// Word i of the stream for `seed` (counter form: no state, any i is O(1)).
    public static func word(seed: UInt64, index i: UInt64) -> UInt64 {
        mix(seed &+ (i &+ 1) &* gamma)
    }

    /// The first `n` words for `seed`.
    public static func words(seed: UInt64, count n: Int) -> [UInt64] {
        (0..<n).map { word(seed: seed, index: UInt64($0)) }
    }

    /// Uniform i in (0, 1]: the top 24 bits plus one, times 2^-24 (exact in float32).
    public static func uniformAt(seed: UInt64, index i: UInt64) -> Float {
        Float((word(seed: seed, index: i) >> 40) + 1) * twoPowMinus24
    }

    /// The first `n` uniforms for `seed`.
    public static func uniform(seed: UInt64, count n: Int) -> [Float] {
        (0..<n).map { uniformAt(seed: seed, index: UInt64($0)) }
    }

    /// The first `n` standard normals for `seed`: Box-Muller on uniform pairs (2j, 2j+1).
    public static func normal(seed: UInt64, count n: Int) -> [Float] {
        var out = [Float](repeating: 0, count: n)
        var j = 0
        while 2 * j < n {
            let u1 = Double(uniformAt(seed: seed, index: UInt64(2 * j)))
            let u2 = Double(uniformAt(seed: seed, index: UInt64(2 * j + 1)))
            let r = (-2.0 * log(u1)).squareRoot()
            let theta = 2.0 * Double.pi * u2
            out[2 * j] = Float(r * cos(theta))
            // an odd n drops the last sine, exactly as Python draws n+1 and truncates
            if 2 * j + 1 < n { out[2 * j + 1] = Float(r * sin(theta)) }
            j += 1
        }
        return out
    }

    /// One image's latent noise, row-major over `shape` (e.g. [C, H, W]).
    public static func noise(seed: UInt64, shape: [Int]) throws -> [Float] {
        guard shape.allSatisfy({ $0 > 0 }) else {
            throw LRFError.invalid("noise shape must be positive, got \(shape)")
        }
        return normal(seed: seed, count: shape.reduce(1, *))
    }

    /// Parses a user-typed seed: a decimal integer in [0, 2^64).
    public static func parseSeed(_ text: String) throws -> UInt64 {
        let s = text.trimmingCharacters(in: .whitespaces)
        guard !s.isEmpty, s.allSatisfy({ $0 >= "0" && $0 <= "9" }) else {
            throw LRFError.invalid("seed must be a decimal integer in [0, 2^64), got '\(text)'")
        }
        guard let v = UInt64(s) else {
            throw LRFError.invalid("seed must be below 2^64 = 18446744073709551616, got '\(text)'")
        }
        return v
    }
}

extension PRNG {
    /// A seed as a bundle writes it (runtime/BUNDLE.md: a JSON string, digits only, no sign, no
    /// leading zero except "0", below 2^64); nil for anything else.
    public static func parseSeedString(_ text: String) -> UInt64? {
        guard !text.isEmpty, text.count <= 20, text.allSatisfy({ ("0"..."9").contains($0) }),
              text.count == 1 || !text.hasPrefix("0") else { return nil }
        return UInt64(text)
    }
}

/// Errors with an actionable message (what, where, what to do), as in the Kotlin core.
public enum LRFError: Error, CustomStringConvertible, Equatable, Sendable {
    /// Bad input or a bundle the app cannot use (Kotlin: IllegalArgumentException).
    case invalid(String)
    /// A file is missing (Kotlin: FileNotFoundException).
    case notFound(String)
    /// The progress callback returned false; no image was produced.
    case cancelled(String)
    /// Misuse of an object's life cycle, e.g. a closed generator (Kotlin: IllegalStateException).
    case state(String)

    public var message: String {
        switch self {
        case .invalid(let m), .notFound(let m), .cancelled(let m), .state(let m): return m
        }
    }

    public var description: String { message }
}
