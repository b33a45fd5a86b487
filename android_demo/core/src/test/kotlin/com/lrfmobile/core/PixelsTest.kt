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

    @Test
    fun argbToRgbAndGray() {
        val argb = intArrayOf(0xFF0A141E.toInt(), 0x80FF8001.toInt())
        assertEquals(listOf(10, 20, 30, 255, 128, 1), Pixels.rgbBytesFromArgb(argb).map { it.toInt() and 0xFF })
        assertEquals(listOf(20, 128), Pixels.grayFromArgb(argb).map { it.toInt() and 0xFF })
        // RGB bytes -> ARGB -> RGB bytes is the identity
        val rgb = ByteArray(12) { (it * 23).toByte() }
        assertEquals(rgb.toList(), Pixels.rgbBytesFromArgb(Pixels.argbFromRgbBytes(rgb, 2, 2)).toList())
    }

    @Test
    fun floatChwForFloatBundlesEncoders() {
        val rgb = byteArrayOf(0, 127, 255.toByte(), 10, 20, 30)                  // 1x2 pixels
        val x = Pixels.floatChwFromRgbBytes(rgb, 1, 2)
        assertEquals(listOf(-1f, 10 / 127.5f - 1f, 127 / 127.5f - 1f, 20 / 127.5f - 1f, 1f, 30 / 127.5f - 1f), x.toList())
        // and back through the decoder's uint8 rule: the identity on every byte value
        val all = ByteArray(256 * 3) { (it / 3).toByte() }
        val back = Pixels.argbFromFloatChw(Pixels.floatChwFromRgbBytes(all, 1, 256), 1, 256)
        assertEquals(all.toList(), Pixels.rgbBytesFromArgb(back).toList())
    }

    @Test
    fun centerCropKeepsTheTargetAspect() {
        assertEquals(listOf(280, 0, 720, 720), Pixels.centerCrop(1280, 720, 32, 32).toList())    // landscape
        assertEquals(listOf(0, 280, 720, 720), Pixels.centerCrop(720, 1280, 32, 32).toList())    // portrait
        assertEquals(listOf(0, 0, 64, 64), Pixels.centerCrop(64, 64, 32, 32).toList())
        assertEquals(listOf(0, 25, 100, 50), Pixels.centerCrop(100, 100, 64, 32).toList())
        assertEquals(listOf(0, 0, 1, 1), Pixels.centerCrop(1, 1, 32, 32).toList())
    }
}
