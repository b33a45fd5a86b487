package com.lrfmobile.core

import java.nio.ByteBuffer
import java.nio.ByteOrder

/**
 * Checks this port against a bundle's own golden files (runtime/BUNDLE.md section 6): the RNG
 * vectors, the timesteps and the noise of the golden case. The apps run it after loading a
 * bundle; the JVM tests run it on a bundle exported by the Python code.
 */
object GoldenCheck {
    class Report(val ok: Boolean, val lines: List<String>) {
        override fun toString(): String = lines.joinToString("\n")
    }

    /** Raw little-endian float32 array (the bundle's `.f32` files). */
    fun readF32(bytes: ByteArray): FloatArray {
        require(bytes.size % 4 == 0) { "a .f32 file must hold a multiple of 4 bytes, got ${bytes.size}" }
        val fb = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer()
        val out = FloatArray(fb.remaining())
        fb.get(out)
        return out
    }

    /** Runs every check whose golden file the manifest lists; never throws for a mismatch. */
    fun run(manifest: Manifest, source: BundleSource): Report {
        val golden = manifest.golden ?: return Report(false, listOf("manifest has no 'golden' section"))
        val lines = ArrayList<String>()
        var ok = true
        fun record(name: String, check: () -> String) {
            try {
                lines.add("ok   $name: ${check()}")
            } catch (e: Exception) {
                ok = false
                lines.add("FAIL $name: ${e.message}")
            }
        }
        golden.files["rng"]?.let { path -> record("rng") { checkRng(source.readText(path), golden.noiseMaxAbs, path) } }
        golden.files["timesteps"]?.let { path ->
            record("timesteps") { checkTimesteps(readF32(source.readBytes(path)), golden.steps, manifest.shift) }
        }
        golden.files["noise"]?.let { path ->
            record("noise") { checkNoise(readF32(source.readBytes(path)), golden.seed, manifest.latentShape, golden.noiseMaxAbs) }
        }
        if (lines.isEmpty()) return Report(false, listOf("golden.files lists none of rng, timesteps, noise"))
        return Report(ok, lines)
    }

    /** The golden RNG vectors ([source] names the file): words and uniforms bit-exact, normals within [tol]. */
    fun checkRng(text: String, tol: Double, source: String = "rng.json"): String {
        val vectors = JsonObj.parse(text, source).objList("vectors")
        require(vectors.isNotEmpty()) { "$source has no vectors" }
        var normals = 0
        for (v in vectors) {
            val seed = java.lang.Long.parseUnsignedLong(v.string("seed_hex").removePrefix("0x"), 16)
            val words = v.stringList("words_hex")
            val mine = Prng.words(seed, words.size)
            for (i in words.indices) {
                val want = java.lang.Long.parseUnsignedLong(words[i].removePrefix("0x"), 16)
                require(mine[i] == want) { "seed ${v.string("seed_hex")} word $i: got ${java.lang.Long.toHexString(mine[i])}, want ${words[i]}" }
            }
            val ubits = v.list("uniform_bits")
            val u = Prng.uniform(seed, ubits.size)
            for (i in ubits.indices) {
                val want = (ubits[i] as JsonNumber).toLongExact().toInt()
                require(java.lang.Float.floatToRawIntBits(u[i]) == want) { "seed ${v.string("seed_hex")} uniform $i: got ${u[i]}, want ${java.lang.Float.intBitsToFloat(want)}" }
            }
            val nbits = v.list("normal_bits")
            val n = Prng.normal(seed, nbits.size)
            for (i in nbits.indices) {
                val want = java.lang.Float.intBitsToFloat((nbits[i] as JsonNumber).toLongExact().toInt())
                require(Math.abs(n[i] - want) <= tol) { "seed ${v.string("seed_hex")} normal $i: got ${n[i]}, want $want (tolerance $tol)" }
                normals++
            }
        }
        return "${vectors.size} seeds: words and uniforms bit-exact, $normals normals within $tol"
    }

    fun checkTimesteps(golden: FloatArray, steps: Int, shift: Double): String {
        val mine = Schedule.timesteps(steps, shift)
        require(golden.size == mine.size) { "golden has ${golden.size} timesteps, N=$steps needs ${mine.size}" }
        for (i in mine.indices) require(java.lang.Float.floatToIntBits(mine[i]) == java.lang.Float.floatToIntBits(golden[i])) {
            "t[$i] = ${mine[i]}, golden ${golden[i]} (N=$steps, shift $shift)"
        }
        return "N=$steps shift $shift bit-exact"
    }

    fun checkNoise(golden: FloatArray, seed: Long, latentShape: IntArray, tol: Double): String {
        val mine = Prng.noise(seed, latentShape)
        require(golden.size == mine.size) { "golden noise has ${golden.size} values, latent ${latentShape.toList()} needs ${mine.size}" }
        var worst = 0.0
        for (i in mine.indices) worst = Math.max(worst, Math.abs((mine[i] - golden[i]).toDouble()))
        require(worst <= tol) { "max |noise - golden| = $worst > $tol (seed ${Prng.seedToString(seed)})" }
        return "seed ${Prng.seedToString(seed)}, ${mine.size} values, max abs error $worst"
    }

    /** PSNR in dB of two ARGB images (RGB channels), capped at 100 like the exporter's metric. */
    fun psnr(a: IntArray, b: IntArray): Double {
        require(a.size == b.size) { "images differ in size: ${a.size} vs ${b.size} pixels" }
        var se = 0.0
        for (i in a.indices) for (shift in intArrayOf(16, 8, 0)) {
            val d = ((a[i] ushr shift) and 0xFF) - ((b[i] ushr shift) and 0xFF)
            se += (d * d).toDouble()
        }
        if (se == 0.0) return 100.0
        val mse = se / (3.0 * a.size)
        return Math.min(100.0, 10.0 * Math.log10(255.0 * 255.0 / mse))
    }
}
