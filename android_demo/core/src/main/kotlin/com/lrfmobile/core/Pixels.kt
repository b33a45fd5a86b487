package com.lrfmobile.core

/**
 * Image tensors -> ARGB_8888 pixels (the int layout of android.graphics.Bitmap and of a
 * CGImage with premultipliedFirst/byteOrder32Little), with no platform imports.
 */
object Pixels {
    private const val OPAQUE = -0x1000000 // 0xFF000000

    /** One value in [-1, 1] -> 0..255: floor((clamp(x) + 1) * 127.5 + 0.5) in float32, as
     *  models/reference.py `to_uint8` rounds (half up). NaN maps to 0. */
    fun toByteValue(x: Float): Int {
        if (x.isNaN()) return 0
        val c = if (x < -1f) -1f else if (x > 1f) 1f else x
        val v = Math.floor(((c + 1f) * 127.5f + 0.5f).toDouble()).toInt()
        return if (v < 0) 0 else if (v > 255) 255 else v
    }

    /** uint8 NHWC image ([height, width, 3], one image of a batch) -> ARGB ints, row-major. */
    fun argbFromRgbBytes(rgb: ByteArray, height: Int, width: Int, offset: Int = 0): IntArray {
        checkSize(rgb.size - offset, height, width, "uint8 [H,W,3] image")
        val out = IntArray(height * width)
        for (p in out.indices) {
            val base = offset + 3 * p
            val r = rgb[base].toInt() and 0xFF
            val g = rgb[base + 1].toInt() and 0xFF
            val b = rgb[base + 2].toInt() and 0xFF
            out[p] = OPAQUE or (r shl 16) or (g shl 8) or b
        }
        return out
    }

    /** float32 NCHW image ([3, height, width] in [-1, 1], one image) -> ARGB ints, row-major. */
    fun argbFromFloatChw(x: FloatArray, height: Int, width: Int, offset: Int = 0): IntArray {
        checkSize(x.size - offset, height, width, "float [3,H,W] image")
        val plane = height * width
        val out = IntArray(plane)
        for (p in 0 until plane) {
            val r = toByteValue(x[offset + p])
            val g = toByteValue(x[offset + plane + p])
            val b = toByteValue(x[offset + 2 * plane + p])
            out[p] = OPAQUE or (r shl 16) or (g shl 8) or b
        }
        return out
    }

    private fun checkSize(available: Int, height: Int, width: Int, what: String) {
        require(height > 0 && width > 0) { "image size must be positive, got ${height}x$width" }
        require(available >= 3 * height * width) {
            "$what of ${height}x$width needs ${3 * height * width} values, got $available"
        }
    }
}
