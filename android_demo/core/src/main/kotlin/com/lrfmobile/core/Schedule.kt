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
    /** The most steps a runtime accepts (runtime/BUNDLE.md 2.4). */
    const val MAX_STEPS = 1000
    /** Guidance must lie in this range after the cast to float32 (2.4). */
    const val GUIDANCE_MIN = 0.0
    const val GUIDANCE_MAX = 20.0

    fun checkSteps(steps: Int): Int {
        require(steps in 1..MAX_STEPS) { "steps must be an integer in 1..$MAX_STEPS, got $steps" }
        return steps
    }

    /** [g] as float32, finite and in [GUIDANCE_MIN, GUIDANCE_MAX] (1e39 is infinite as float32). */
    fun checkGuidance(g: Double): Float {
        val f = g.toFloat()
        require(!f.isNaN() && !f.isInfinite() && f >= GUIDANCE_MIN && f <= GUIDANCE_MAX) {
            "guidance must be a finite number in [$GUIDANCE_MIN, $GUIDANCE_MAX], got $g"
        }
        return f
    }

    /**
     * How [n] steps are split into denoise calls (runtime/BUNDLE.md 1.4): consecutive windows
     * [i0, i1] given as the list of their i1 (window k covers steps ends[k-1]..ends[k], from 0).
     * Each length K must be allowed by [window]. [fused]: windows as long as the graph allows (one
     * when it allows K = n); otherwise stepwise: windows of the smallest allowed K (1 for ONNX).
     * A shorter last window that the graph does not allow is refused with one line, as
     * runtime/scheduler.py `windows` does (no rebalancing: every runtime splits alike).
     */
    fun windows(n: Int, window: WindowSpec, fused: Boolean): IntArray {
        require(n >= 0) { "steps must be >= 0, got $n" }
        if (n == 0) return IntArray(0)
        val k = if (fused) (window.max ?: n).coerceAtMost(n) else window.min
        val ends = ArrayList<Int>()
        var i = 0
        while (i < n) {
            val len = Math.min(k, n - i)
            if (!window.allows(len)) throw IllegalArgumentException("this bundle's denoise graph takes windows of " +
                "$window steps, which cannot cover $n steps; use a multiple of ${window.min} steps or re-export the bundle")
            i += len
            ends.add(i)
        }
        return ends.toIntArray()
    }
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
