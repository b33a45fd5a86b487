import Foundation

/// The sampling schedule and the Euler update: a mirror of Schedule.kt (runtime/BUNDLE.md
/// section 3): u_i = 1 - i / N in float64, t_i = float32(s * u_i / (1 + (s - 1) * u_i)).
public enum Schedule {
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
}
