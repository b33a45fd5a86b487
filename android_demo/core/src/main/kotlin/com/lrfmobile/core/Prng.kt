package com.lrfmobile.core

/**
 * Portable noise: a line-by-line mirror of lrf/prng.py (its docstring is the spec).
 *
 * Seeds and words are unsigned 64-bit values carried in a [Long] (two's complement): the
 * arithmetic wraps exactly like uint64, and shifts use `ushr`. Words and uniforms are bit-exact
 * with Python; normals use [StrictMath] (fdlibm, identical on every JVM and on Android) and agree
 * with numpy to within 1e-6 (usually bit-exact after the float32 cast).
 */
object Prng {
    /** SplitMix64 increment 0x9E3779B97F4A7C15 (parsed, since the literal exceeds Long.MAX_VALUE). */
    val GAMMA: Long = java.lang.Long.parseUnsignedLong("9E3779B97F4A7C15", 16)
    private val M1: Long = java.lang.Long.parseUnsignedLong("BF58476D1CE4E5B9", 16)
    private val M2: Long = java.lang.Long.parseUnsignedLong("94D049BB133111EB", 16)
    private const val TWO_POW_MINUS_24 = 1.0f / 16777216.0f

    /** Spec name and version this implementation follows; the bundle's RNG spec must match. */
    const val SPEC_NAME = "splitmix64-boxmuller"
    const val SPEC_VERSION = 1

    /** The SplitMix64 finaliser. */
    fun mix(z0: Long): Long {
        var z = z0
        z = (z xor (z ushr 30)) * M1
        z = (z xor (z ushr 27)) * M2
        return z xor (z ushr 31)
    }

    /** Word i of the stream for [seed] (counter form: no state, any i is O(1)). */
    fun word(seed: Long, i: Long): Long = mix(seed + (i + 1) * GAMMA)

    /** The first [n] words for [seed]. */
    fun words(seed: Long, n: Int): LongArray {
        requireCount(n)
        val out = LongArray(n)
        for (i in 0 until n) out[i] = word(seed, i.toLong())
        return out
    }

    /** Uniform i in (0, 1]: the top 24 bits plus one, times 2^-24 (exact in float32). */
    fun uniformAt(seed: Long, i: Long): Float =
        ((word(seed, i) ushr 40) + 1L).toFloat() * TWO_POW_MINUS_24

    /** The first [n] uniforms for [seed]. */
    fun uniform(seed: Long, n: Int): FloatArray {
        requireCount(n)
        val out = FloatArray(n)
        for (i in 0 until n) out[i] = uniformAt(seed, i.toLong())
        return out
    }

    /** The first [n] standard normals for [seed]: Box-Muller on uniform pairs (2j, 2j+1). */
    fun normal(seed: Long, n: Int): FloatArray {
        requireCount(n)
        val out = FloatArray(n)
        var j = 0
        while (2 * j < n) {
            val u1 = uniformAt(seed, 2L * j).toDouble()
            val u2 = uniformAt(seed, 2L * j + 1).toDouble()
            val r = StrictMath.sqrt(-2.0 * StrictMath.log(u1))
            val theta = 2.0 * Math.PI * u2
            out[2 * j] = (r * StrictMath.cos(theta)).toFloat()
            // an odd n drops the last sine, exactly as Python draws n+1 and truncates
            if (2 * j + 1 < n) out[2 * j + 1] = (r * StrictMath.sin(theta)).toFloat()
            j++
        }
        return out
    }

    /** One image's latent noise, row-major over [shape] (e.g. [C, H, W]). */
    fun noise(seed: Long, shape: IntArray): FloatArray {
        var count = 1L
        for (d in shape) {
            require(d > 0) { "noise shape must be positive, got ${shape.joinToString()}" }
            count *= d
        }
        require(count <= Int.MAX_VALUE) { "noise shape ${shape.joinToString()} is too large" }
        return normal(seed, count.toInt())
    }

    /**
     * Parses a user-typed seed: a decimal integer in [0, 2^64). Throws [IllegalArgumentException]
     * with the accepted range otherwise.
     */
    fun parseSeed(text: String): Long {
        val s = text.trim()
        if (s.length == 0 || !s.all { it in '0'..'9' }) {
            throw IllegalArgumentException("seed must be a decimal integer in [0, 2^64), got '$text'")
        }
        try {
            return java.lang.Long.parseUnsignedLong(s)
        } catch (e: NumberFormatException) {
            throw IllegalArgumentException("seed must be below 2^64 = 18446744073709551616, got '$text'")
        }
    }

    /**
     * A seed as a bundle writes it (runtime/BUNDLE.md: a JSON string, digits only, no sign, no
     * leading zero except "0", below 2^64); null for anything else.
     */
    fun parseSeedString(text: String): Long? {
        if (text.isEmpty() || text.length > 20 || !text.all { it in '0'..'9' } || (text.length > 1 && text[0] == '0')) return null
        return try { java.lang.Long.parseUnsignedLong(text) } catch (e: NumberFormatException) { null }
    }

    /** The unsigned decimal text of a seed (inverse of [parseSeed]). */
    fun seedToString(seed: Long): String = java.lang.Long.toUnsignedString(seed)

    private fun requireCount(n: Int) {
        require(n >= 0) { "count must be >= 0, got $n" }
    }
}
