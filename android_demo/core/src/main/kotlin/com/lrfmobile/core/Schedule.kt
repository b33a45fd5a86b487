package com.lrfmobile.core

/**
 * The sampling schedule and the Euler update: a mirror of models/flow.py `timesteps` and
 * `euler_sample`.
 *
 * Spec (runtime/BUNDLE.md section 3): u_i = 1 - i / N in float64, i = 0..N;
 * t_i = float32(s * u_i / (1 + (s - 1) * u_i)) (SD3 shift s; s = 1 is the plain linspace 1 -> 0).
 * The PyTorch reference computes u with torch.linspace; after the float32 cast both give the
 * same bits (checked for every N <= 1000 by tests/test_cross_language.py, and pinned here by the
 * golden vectors, which include N = 49 where a naive 1 + i * (-1 / N) differs).
 */
object Schedule {
    /** The N+1 times from 1 (noise) down to 0 (data). */
    fun timesteps(steps: Int, shift: Double): FloatArray {
        require(steps >= 1) { "steps must be >= 1, got $steps" }
        require(!shift.isNaN() && !shift.isInfinite() && shift > 0.0) {
            "shift must be a finite number > 0, got $shift"
        }
        val out = FloatArray(steps + 1)
        for (i in 0..steps) {
            val u = 1.0 - i.toDouble() / steps
            out[i] = (shift * u / (1.0 + (shift - 1.0) * u)).toFloat()
        }
        return out
    }

    /**
     * One Euler step in place: z += (tNext - t) * v, all in float32 as the reference does
     * (dt is the float32 difference of the two float32 times).
     */
    fun eulerStep(z: FloatArray, v: FloatArray, t: Float, tNext: Float) {
        require(z.size == v.size) { "latent has ${z.size} values but velocity has ${v.size}" }
        val dt = tNext - t
        for (k in z.indices) z[k] = z[k] + dt * v[k]
    }
}
