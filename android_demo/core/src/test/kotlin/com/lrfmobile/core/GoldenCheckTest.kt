package com.lrfmobile.core

import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertTrue
import org.junit.Test
import java.io.ByteArrayInputStream
import java.io.FileNotFoundException
import java.io.InputStream
import java.nio.ByteBuffer
import java.nio.ByteOrder

/** GoldenCheck on golden files built from the Python-made fixture (not from this port). */
class GoldenCheckTest {
    private class MapSource(val files: Map<String, ByteArray>) : BundleSource {
        override val description = "memory"
        override fun open(relPath: String): InputStream =
            ByteArrayInputStream(files[relPath] ?: throw FileNotFoundException(relPath))
    }

    private fun f32(values: FloatArray): ByteArray {
        val bb = ByteBuffer.allocate(values.size * 4).order(ByteOrder.LITTLE_ENDIAN)
        for (v in values) bb.putFloat(v)
        return bb.array()
    }

    /** golden/rng.json in the bundle's format, from golden_vectors.json. */
    private fun rngJson(corruptWord: Boolean = false): ByteArray {
        val vectors = Golden.root.obj("prng").objList("cases").filter { it.int("n") >= 8 }.map { c ->
            val seed = java.lang.Long.parseUnsignedLong(c.string("seed"))
            val words = c.stringList("words").take(8).map { "0x$it" }.toMutableList()
            if (corruptWord) words[3] = "0x0000000000000001"
            linkedMapOf<String, Any?>(
                "seed" to JsonNumber(c.string("seed")), "seed_hex" to "0x" + java.lang.Long.toHexString(seed),
                "words_hex" to words,
                "uniform_bits" to c.stringList("uniform_bits").take(8).map { JsonNumber(java.lang.Long.parseLong(it, 16).toString()) },
                "normal_bits" to c.stringList("normal_bits").take(8).map { JsonNumber(java.lang.Long.parseLong(it, 16).toString()) })
        }
        return TestJson.write(linkedMapOf<String, Any?>("spec" to emptyMap<String, Any?>(), "vectors" to vectors)).toByteArray()
    }

    private fun manifestWithGolden(): Manifest {
        val m = TestJson.sample()
        val files = TestJson.obj(m, "golden", "files")
        files["rng"] = linkedMapOf<String, Any?>("file" to "golden/rng.json")
        return Manifest.parse(TestJson.write(m))
    }

    @Test
    fun passesOnPythonVectors() {
        val m = manifestWithGolden()
        val exact = FloatArray(9) { (8 - it) / 8f }            // N=8, shift 1: exactly k/8
        val report = GoldenCheck.run(m, MapSource(mapOf("golden/rng.json" to rngJson(), "golden/timesteps.f32" to f32(exact))))
        assertTrue(report.toString(), report.ok)
        assertEquals(2, report.lines.size)
    }

    @Test
    fun failsOnAWrongWordOrTime() {
        val m = manifestWithGolden()
        val wrong = FloatArray(9) { (8 - it) / 8f }.also { it[4] = 0.5000001f }
        val report = GoldenCheck.run(m, MapSource(mapOf("golden/rng.json" to rngJson(corruptWord = true), "golden/timesteps.f32" to f32(wrong))))
        assertFalse(report.ok)
        assertTrue(report.toString(), report.lines[0].startsWith("FAIL rng:") && report.lines[0].contains("word 3"))
        assertTrue(report.toString(), report.lines[1].startsWith("FAIL timesteps: t[4]"))
    }

    @Test
    fun noiseAgainstPythonNormals() {
        val c = Golden.root.obj("prng").objList("cases")[0]                 // seed 0, n = 16
        val golden = Golden.floatBits(c.stringList("normal_bits"))
        GoldenCheck.checkNoise(golden, Prng.parseSeed(c.string("seed")), intArrayOf(1, 4, 4), 1e-6)
        golden[5] += 1e-3f
        try {
            GoldenCheck.checkNoise(golden, 0L, intArrayOf(1, 4, 4), 1e-6); org.junit.Assert.fail()
        } catch (e: IllegalArgumentException) {
            assertTrue(e.message!!.contains("max |noise - golden|"))
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
