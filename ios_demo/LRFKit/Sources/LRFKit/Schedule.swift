import Foundation

/// The sampling schedule, the Euler update and how N steps split into denoise calls: a mirror
/// of Schedule.kt (runtime/BUNDLE.md sections 1 and 3):
/// u_i = 1 - i / N in float64, t_i = float32(s * u_i / (1 + (s - 1) * u_i)).
public enum Schedule {
    /// The most steps a runtime accepts (BUNDLE.md 2.4).
    public static let maxSteps = 1000
    /// Guidance must lie in this range after the cast to float32 (2.4).
    public static let guidanceMin = 0.0
    public static let guidanceMax = 20.0

    public static func checkSteps(_ steps: Int) throws -> Int {
        guard steps >= 1 && steps <= maxSteps else { throw LRFError.invalid("steps must be an integer in 1..\(maxSteps), got \(steps)") }
        return steps
    }

    /// `g` as float32, finite and in [guidanceMin, guidanceMax] (1e39 is infinite as float32).
    public static func checkGuidance(_ g: Double) throws -> Float {
        let f = Float(g)
        guard f.isFinite, Double(f) >= guidanceMin, Double(f) <= guidanceMax else {
            throw LRFError.invalid("guidance must be a finite number in [\(guidanceMin), \(guidanceMax)], got \(g)")
        }
        return f
    }

    /// The N+1 times from 1 (noise) down to 0 (data).
    public static func timesteps(steps: Int, shift: Double) throws -> [Float] {
        guard steps >= 1 else { throw LRFError.invalid("steps must be >= 1, got \(steps)") }
        guard shift.isFinite, shift > 0 else {
            throw LRFError.invalid("shift must be a finite number > 0, got \(shift)")
        }
        var out = [Float](repeating: 0, count: steps + 1)
        for i in 0...steps {
            let u = 1.0 - Double(i) / Double(steps)
            out[i] = Float(shift * u / (1.0 + (shift - 1.0) * u))
        }
        return out
    }

    /// One Euler step in place: z += (tNext - t) * v, all in float32 as the reference does.
    public static func eulerStep(_ z: inout [Float], _ v: [Float], t: Float, tNext: Float) throws {
        guard z.count == v.count else {
            throw LRFError.invalid("latent has \(z.count) values but velocity has \(v.count)")
        }
        let dt = tNext - t
        for k in 0..<z.count { z[k] = z[k] + dt * v[k] }
    }

    /// How `n` steps split into denoise calls: the end index i1 of each window (from 0). Each
    /// length must be allowed by `window`. Fused: windows as long as the graph allows; stepwise:
    /// windows of the smallest allowed K. A short last window the graph does not allow is refused
    /// with one line, as runtime/scheduler.py `windows` does (mirror of Schedule.kt).
    public static func windows(_ n: Int, _ window: WindowSpec, fused: Bool) throws -> [Int] {
        guard n >= 0 else { throw LRFError.invalid("steps must be >= 0, got \(n)") }
        if n == 0 { return [] }
        let k = fused ? Swift.min(window.max ?? n, n) : window.min
        var ends: [Int] = []
        var i = 0
        while i < n {
            let len = Swift.min(k, n - i)
            guard window.allows(len) else {
                throw LRFError.invalid("this bundle's denoise graph takes windows of \(window) steps, which cannot cover \(n) steps; " +
                    "use a multiple of \(window.min) steps or re-export the bundle")
            }
            i += len
            ends.append(i)
        }
        return ends
    }
}
