package com.lrfmobile.core

import java.nio.ByteBuffer
import java.nio.ByteOrder

/**
 * Checks this port against a bundle's own golden files without an engine (runtime/BUNDLE.md
 * section 6): the RNG vectors, and every case's timesteps and noise, each against its file's
 * tolerance. The apps run it after loading a bundle; the JVM tests run it on exported bundles.
 * [GoldenRun] does the checks that need the graphs.
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

    /** A golden `.f32` file, its length checked against the entry's shape. */
    fun readF32(source: BundleSource, f: GoldenFile): FloatArray {
        val v = readF32(source.readBytes(f.file))
        val shape = f.shape
        if (shape != null) {
            val count = shape.fold(1L) { a, b -> a * b }
            require(v.size.toLong() == count) { "${f.file} holds ${v.size} values, its shape ${shape.toList()} needs $count" }
        }
        return v
    }

    /** Collects "ok   ..." / "FAIL ..." lines; a check throwing is a FAIL line, never an exception. */
    class Recorder {
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

        fun report(): Report = Report(ok && lines.isNotEmpty(), lines)
    }

    /** Runs every engine-free check the golden files allow; never throws for a mismatch. */
    fun run(manifest: Manifest, source: BundleSource): Report {
        val golden = manifest.golden ?: return Report(false, listOf("FAIL golden: the manifest has no 'golden' section"))
        val rec = Recorder()
        val noiseTol = golden.files.values.firstOrNull { it.content == "noise" }?.tolerance?.bar ?: 1e-6
        for (f in golden.files.values) {
            val case = f.case?.let { golden.cases.getValue(it) }
            when (f.content) {
                "rng_vectors" -> rec.record("rng") { checkRng(source.readText(f.file), noiseTol, f.file) }
                "timesteps" -> rec.record("timesteps ${f.case}") {
                    checkTimesteps(readF32(source, f), need(case, f).steps, manifest.shift)
                }
                "noise" -> rec.record("noise ${f.case}") {
                    checkNoise(readF32(source, f), need(case, f).seed, manifest.latentShape, f.tolerance?.bar ?: 1e-6)
                }
            }
        }
        if (rec.lines.isEmpty()) return Report(false, listOf("FAIL golden: golden.files lists no rng_vectors, timesteps or noise"))
        return rec.report()
    }

    private fun need(case: GoldenCase?, f: GoldenFile): GoldenCase =
        case ?: throw IllegalArgumentException("golden.files.${f.key}: a ${f.content} file needs a case")

    /** The golden RNG vectors ([source] names the file): words and uniforms bit-exact, normals within [tol]. */
    fun checkRng(text: String, tol: Double, source: String = "rng.json"): String {
        val vectors = JsonObj.parse(text, source).objList("vectors")
        require(vectors.isNotEmpty()) { "$source has no vectors" }
        var normals = 0
        for (v in vectors) {
            val seedText = v.string("seed")
            val seed = Prng.parseSeedString(seedText) ?: v.expected("seed", "a uint64 seed as a decimal string", seedText)
            val words = v.stringList("words_hex")
            val mine = Prng.words(seed, words.size)
            for (i in words.indices) {
                val want = java.lang.Long.parseUnsignedLong(words[i].removePrefix("0x"), 16)
                require(mine[i] == want) { "seed $seedText word $i: got 0x${java.lang.Long.toHexString(mine[i])}, want ${words[i]}" }
            }
            val ubits = v.list("uniform_bits")
            val u = Prng.uniform(seed, ubits.size)
            for (i in ubits.indices) {
                val want = (ubits[i] as JsonNumber).toLongExact().toInt()
                require(java.lang.Float.floatToRawIntBits(u[i]) == want) { "seed $seedText uniform $i: got ${u[i]}, want ${java.lang.Float.intBitsToFloat(want)}" }
            }
            val nbits = v.list("normal_bits")
            val n = Prng.normal(seed, nbits.size)
            for (i in nbits.indices) {
                val want = java.lang.Float.intBitsToFloat((nbits[i] as JsonNumber).toLongExact().toInt())
                require(Math.abs(n[i] - want) <= tol) { "seed $seedText normal $i: got ${n[i]}, want $want (tolerance $tol)" }
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

    /**
     * [mine] against a golden tensor under [tol] (metric exact, max_abs or rel_max_abs = max abs
     * difference / max abs of the file); throws with the measured value when it fails.
     */
    fun compareTensor(mine: FloatArray, golden: FloatArray, tol: Tolerance): String {
        require(mine.size == golden.size) { "${mine.size} values, the golden file has ${golden.size}" }
        var worst = 0.0
        var scale = 0.0
        var differ = 0
        for (i in mine.indices) {
            val d = Math.abs(mine[i].toDouble() - golden[i].toDouble())
            if (d.isNaN() || d > worst) worst = if (d.isNaN()) Double.POSITIVE_INFINITY else d
            scale = Math.max(scale, Math.abs(golden[i].toDouble()))
            if (java.lang.Float.floatToIntBits(mine[i]) != java.lang.Float.floatToIntBits(golden[i])) differ++
        }
        val (value, pass) = when (tol.metric) {
            "exact" -> Pair(differ.toDouble(), differ == 0)
            "max_abs" -> Pair(worst, worst <= tol.bar)
            "rel_max_abs" -> (if (scale > 0) worst / scale else worst).let { Pair(it, it <= tol.bar) }
            else -> throw IllegalArgumentException("metric ${tol.metric} does not compare tensors")
        }
        val text = if (tol.metric == "exact") "$differ of ${mine.size} values differ" else String.format("%s %.3g", tol.metric, value)
        require(pass) { "$text, bar ${tol.bar}" }
        return "$text (bar ${tol.bar})"
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
