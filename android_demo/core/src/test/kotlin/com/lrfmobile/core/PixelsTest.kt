package com.lrfmobile.core

import org.junit.Assert.assertEquals
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.Test

class PixelsTest {
    @Test
    fun floatChwMatchesPythonRounding() {
        val p = Golden.root.obj("pixels")
        val h = p.int("height")
        val w = p.int("width")
        val x = Golden.floatBits(p.stringList("float_chw_bits"))
        val rgb = p.intList("rgb_hwc")
        val argb = Pixels.argbFromFloatChw(x, h, w)
        for (i in 0 until h * w) {
            val want = (0xFF shl 24) or (rgb[3 * i] shl 16) or (rgb[3 * i + 1] shl 8) or rgb[3 * i + 2]
            assertEquals("pixel $i", want, argb[i])
        }
    }

    @Test
    fun rgbBytesPackIntoArgb() {
        val bytes = byteArrayOf(0, 0, 0, 255.toByte(), 128.toByte(), 1, 10, 20, 30, 255.toByte(), 255.toByte(), 255.toByte())
        val argb = Pixels.argbFromRgbBytes(bytes, 2, 2)
        assertEquals(listOf(0xFF000000.toInt(), 0xFFFF8001.toInt(), 0xFF0A141E.toInt(), -1), argb.toList())
        // second image of a batch: offset by H*W*3
        val two = bytes + byteArrayOf(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12)
        assertEquals(0xFF010203.toInt(), Pixels.argbFromRgbBytes(two, 2, 2, offset = 12)[0])
    }

    @Test
    fun edgeValues() {
        assertEquals(0, Pixels.toByteValue(-1f))
        assertEquals(128, Pixels.toByteValue(0f))
        assertEquals(255, Pixels.toByteValue(1f))
        assertEquals(255, Pixels.toByteValue(9f))
        assertEquals(0, Pixels.toByteValue(Float.NaN))
    }

    @Test
    fun shortBufferIsRejected() {
        try { Pixels.argbFromFloatChw(FloatArray(11), 2, 2); fail() } catch (e: IllegalArgumentException) {
            assertTrue(e.message!!.contains("needs 12 values, got 11"))
        }
    }
}
