package com.lrfmobile.core

import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Test
import java.nio.ByteBuffer
import java.nio.ByteOrder

/** GoldenCheck on golden files built from the Python-made fixture (not from this port). */
class GoldenCheckTest {
    companion object {
        fun f32(values: FloatArray): ByteArray {
            val bb = ByteBuffer.allocate(values.size * 4).order(ByteOrder.LITTLE_ENDIAN)
            for (v in values) bb.putFloat(v)
            return bb.array()
        }

        /** A golden.files entry with all seven keys. */
        fun entry(file: String, format: String, case: String?, content: String, metric: String?, bar: String = "0",
                  shape: List<Int>? = null): MutableMap<String, Any?> = linkedMapOf(
            "file" to file, "format" to format, "dtype" to (if (format == "f32") "float32" else null),
            "shape" to shape?.map { TestJson.num("$it") }, "case" to case, "content" to content,
            "tolerance" to metric?.let { linkedMapOf<String, Any?>("metric" to it, "bar" to TestJson.num(bar)) })
    }

    /** golden/rng.json in the bundle's v2 format (seeds as strings, 9 normals), from golden_vectors.json. */
    private fun rngJson(corruptWord: Boolean = false): ByteArray {
        val vectors = Golden.root.obj("prng").objList("cases").filter { it.int("n") >= 9 }.map { c ->
            val words = c.stringList("words").take(8).map { "0x$it" }.toMutableList()
            if (corruptWord) words[3] = "0x0000000000000001"
            linkedMapOf<String, Any?>(
                "seed" to c.string("seed"), "words_hex" to words,
                "uniform_bits" to c.stringList("uniform_bits").take(8).map { JsonNumber(java.lang.Long.parseLong(it, 16).toString()) },
                "normal_bits" to c.stringList("normal_bits").take(9).map { JsonNumber(java.lang.Long.parseLong(it, 16).toString()) })
        }
        return TestJson.write(linkedMapOf<String, Any?>("spec" to emptyMap<String, Any?>(), "vectors" to vectors)).toByteArray()
    }

    /** The sample manifest with rng, timesteps and noise golden files for case generate_fused_8. */
    private fun manifestWithGolden(): Manifest {
        val m = TestJson.sample()
        val files = TestJson.obj(m, "golden", "files")
        files["rng"] = entry("golden/rng.json", "json", null, "rng_vectors", "exact")
        files["noise_generate_fused_8"] = entry("golden/noise.f32", "f32", "generate_fused_8", "noise", "max_abs", "1e-6", listOf(1, 4, 4, 4))
        val listed = TestJson.obj(m, "files")
        for (f in listOf("golden/rng.json", "golden/noise.f32")) listed[f] = linkedMapOf<String, Any?>("size" to TestJson.num("1"), "sha256" to "0".repeat(64))
        return Manifest.parse(TestJson.write(m))
    }

    private val exact = FloatArray(9) { (8 - it) / 8f }            // N=8, shift 1: exactly k/8
    private fun noiseFile() = f32(Prng.noise(-1L, intArrayOf(4, 4, 4)))

    @Test
    fun passesOnPythonVectors() {
        val report = GoldenCheck.run(manifestWithGolden(), MemorySource(mapOf("golden/rng.json" to rngJson(),
            "golden/timesteps_generate_fused_8.f32" to f32(exact), "golden/noise.f32" to noiseFile())))
        assertTrue(report.toString(), report.ok)
        assertEquals(listOf("ok   timesteps generate_fused_8", "ok   rng", "ok   noise generate_fused_8"), report.lines.map { it.substringBefore(":") })
        assertTrue(report.toString(), report.lines[1].contains("5 seeds: words and uniforms bit-exact, 45 normals within 1.0E-6"))
    }

    @Test
    fun failsOnAWrongWordTimeOrNoise() {
        val wrong = exact.copyOf().also { it[4] = 0.5000001f }
        val noise = Prng.noise(-1L, intArrayOf(4, 4, 4)).also { it[7] += 1e-5f }
        val report = GoldenCheck.run(manifestWithGolden(), MemorySource(mapOf("golden/rng.json" to rngJson(corruptWord = true),
            "golden/timesteps_generate_fused_8.f32" to f32(wrong), "golden/noise.f32" to f32(noise))))
        assertFalse(report.ok)
        assertTrue(report.toString(), report.lines[0].startsWith("FAIL timesteps generate_fused_8: t[4]"))
        assertTrue(report.toString(), report.lines[1].startsWith("FAIL rng: seed 0 word 3"))
        assertTrue(report.toString(), report.lines[2].startsWith("FAIL noise generate_fused_8: max |noise - golden|"))
    }

    @Test
    fun aFileOfTheWrongLengthFails() {
        val report = GoldenCheck.run(manifestWithGolden(), MemorySource(mapOf("golden/rng.json" to rngJson(),
            "golden/timesteps_generate_fused_8.f32" to f32(exact), "golden/noise.f32" to f32(FloatArray(3)))))
        assertFalse(report.ok)
        assertEquals("FAIL noise generate_fused_8: golden/noise.f32 holds 3 values, its shape [1, 4, 4, 4] needs 64", report.lines[2])
    }

    @Test
    fun compareTensorByMetric() {
        val a = floatArrayOf(1f, -2f, 4f)
        assertEquals("0 of 3 values differ (bar 0.0)", GoldenCheck.compareTensor(a, a.copyOf(), Tolerance("exact", 0.0)))
        val b = floatArrayOf(1f, -2f, 4.002f)
        assertTrue(GoldenCheck.compareTensor(a, b, Tolerance("rel_max_abs", 1e-3)).startsWith("rel_max_abs 0.000500"))
        try { GoldenCheck.compareTensor(a, b, Tolerance("rel_max_abs", 1e-4)); fail() } catch (e: IllegalArgumentException) {
            assertEquals("rel_max_abs 0.000500, bar 1.0E-4", e.message)
        }
        try { GoldenCheck.compareTensor(a, b, Tolerance("exact", 0.0)); fail() } catch (e: IllegalArgumentException) {
            assertEquals("1 of 3 values differ, bar 0.0", e.message)
        }
        try { GoldenCheck.compareTensor(floatArrayOf(Float.NaN, 0f, 0f), a, Tolerance("max_abs", 1.0)); fail() } catch (e: IllegalArgumentException) {
            assertTrue(e.message!!, e.message!!.startsWith("max_abs Infinity"))
        }
    }

    @Test
    fun psnr() {
        val a = IntArray(4) { 0xFF808080.toInt() }
        assertEquals(100.0, GoldenCheck.psnr(a, a.copyOf()), 0.0)
        val b = a.copyOf().also { it[0] = 0xFF818080.toInt() }           // one channel off by 1 in 12 values
        assertEquals(10 * Math.log10(255.0 * 255.0 * 12), GoldenCheck.psnr(a, b), 1e-9)
    }
}
