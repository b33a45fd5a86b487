package com.lrfmobile.core

import org.junit.Assert.assertEquals
import org.junit.Assert.assertNotEquals
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Test

class PrngTest {
    private val cases = Golden.root.obj("prng").objList("cases")

    @Test
    fun specMatchesGolden() {
        val prng = Golden.root.obj("prng")
        assertEquals(Prng.SPEC_NAME, prng.string("name"))
        assertEquals(Prng.SPEC_VERSION, prng.int("version"))
        assertTrue("need the golden seeds 0, 1, 42, 2^63+5", cases.size >= 4)
    }

    @Test
    fun wordsAreBitExact() {
        for (c in cases) {
            val seed = Prng.parseSeed(c.string("seed"))
            val got = Prng.words(seed, c.int("n")).map { String.format("%016x", it) }
            assertEquals("words for seed ${c.string("seed")}", c.stringList("words"), got)
        }
    }

    @Test
    fun uniformsAreBitExact() {
        for (c in cases) {
            val seed = Prng.parseSeed(c.string("seed"))
            val got = Golden.bitsOf(Prng.uniform(seed, c.int("n")))
            assertEquals("uniform bits for seed ${c.string("seed")}", c.stringList("uniform_bits"), got)
        }
    }

    @Test
    fun normalsWithin1e6() {
        var exact = 0
        var total = 0
        for (c in cases) {
            val seed = Prng.parseSeed(c.string("seed"))
            val want = Golden.floatBits(c.stringList("normal_bits"))
            val got = Prng.normal(seed, c.int("n"))
            assertEquals(want.size, got.size)
            for (i in want.indices) {
                val err = Math.abs(want[i] - got[i])
                assertTrue("normal $i of seed ${c.string("seed")}: ${got[i]} vs ${want[i]}", err <= 1e-6f)
                if (java.lang.Float.floatToRawIntBits(want[i]) == java.lang.Float.floatToRawIntBits(got[i])) exact++
                total++
            }
        }
        println("PrngTest: $exact of $total normals bit-exact with numpy, all within 1e-6")
    }

    @Test
    fun noiseIsRowMajorNormalStream() {
        val shape = intArrayOf(4, 4, 4)
        val n = Prng.noise(42L, shape)
        assertEquals(64, n.size)
        assertEquals(Golden.bitsOf(Prng.normal(42L, 64)), Golden.bitsOf(n))
        assertNotEquals(Golden.bitsOf(n), Golden.bitsOf(Prng.noise(43L, shape)))
    }

    @Test
    fun seedParsingCoversTheUnsignedRange() {
        assertEquals(0L, Prng.parseSeed("0"))
        assertEquals(-1L, Prng.parseSeed("18446744073709551615"))
        assertEquals("9223372036854775813", Prng.seedToString(Prng.parseSeed("9223372036854775813")))
        for (bad in listOf("", "-1", "18446744073709551616", "1.5", "abc", "0x10")) {
            try {
                Prng.parseSeed(bad)
                fail("seed '$bad' should be rejected")
            } catch (e: IllegalArgumentException) {
                assertTrue(e.message!!.contains("2^64"))
            }
        }
    }
}
